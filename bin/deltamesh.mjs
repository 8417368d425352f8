#!/usr/bin/env node
// Runs the TypeScript CLI from the checkout through tsx; a built image that
// ships only dist/ runs the compiled JavaScript instead.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const source = new URL("../services/cli/main.ts", import.meta.url);
if (existsSync(fileURLToPath(source))) {
  const { register } = await import("tsx/esm/api");
  register();
  await import(source.href);
} else {
  await import(new URL("../dist/services/cli/main.js", import.meta.url).href);
}
