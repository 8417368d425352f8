// The schema package: the model, loading from config documents, normalizers
// and the wire <-> stored value codec.
export * from "./types.js";
export * from "./load.js";
export * from "./normalize.js";
export * from "./values.js";
