// The NODE_OPTIONS the container image runs the server with, read from the
// Dockerfile itself, so server processes in tests and benchmarks run (and are
// measured) with exactly the production V8 settings and cannot drift from them.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const DOCKERFILE = fileURLToPath(new URL("../../../deploy/docker/Dockerfile", import.meta.url));

let cached: string | undefined;

export function imageNodeOptions(): string {
  if (cached === undefined) {
    const m = /^\s*NODE_OPTIONS="([^"]*)"/m.exec(readFileSync(DOCKERFILE, "utf8"));
    if (!m) throw new Error(`${DOCKERFILE} sets no NODE_OPTIONS="..."`);
    cached = m[1]!;
  }
  return cached;
}
