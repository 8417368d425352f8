// Configuration: the ConfigSource interface, snapshots, and the file source.
export * from "./source.js";
export * from "./parse.js";
export * from "./file-source.js";
