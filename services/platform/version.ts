// The deltamesh version (package.json), found from this module both in a
// checkout (services/platform/) and in a build (dist/services/platform/).
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

export const VERSION: string = (() => {
  for (const rel of ["../../package.json", "../../../package.json"]) {
    const file = fileURLToPath(new URL(rel, import.meta.url));
    if (!existsSync(file)) continue;
    const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
    if (pkg.name === "deltamesh" && typeof pkg.version === "string") return pkg.version;
  }
  return "unknown";
})();
