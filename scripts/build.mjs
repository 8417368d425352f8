#!/usr/bin/env node
// `npm run build [-- OUT_DIR]`: compiles services/ and gen/ to JavaScript in
// OUT_DIR (default dist/) and copies the files tsc does not (SQL migrations),
// so `node OUT_DIR/services/cli/main.js` runs without TypeScript tooling. The
// container image and the entrypoint test both build through here.
import { spawnSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const outDir = path.resolve(process.argv[2] ?? path.join(root, "dist"));

rmSync(outDir, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
const r = spawnSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.build.json"), "--outDir", outDir], { stdio: "inherit" });
if (r.status !== 0) process.exit(r.status ?? 1);
cpSync(path.join(root, "services"), path.join(outDir, "services"), {
  recursive: true,
  filter: (src) => !src.endsWith(".ts"),
});
process.stdout.write(`built ${path.relative(process.cwd(), outDir) || "."}\n`);
