// deltamesh's version, from the package.json above this module (the checkout
// runs sources, the image runs dist/; both ship package.json at the root).
import { readFileSync } from "node:fs";

function findVersion(): string {
  for (let dir = new URL("./", import.meta.url); ; dir = new URL("../", dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("package.json", dir), "utf8")) as { name?: unknown; version?: unknown };
      if (pkg.name === "deltamesh" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // not here: look one folder up
    }
    if (dir.pathname === "/") return "unknown";
  }
}

export const VERSION: string = findVersion();
