// Python stubs for the interop tests, generated from the same .proto files
// the server is built from, with Debian's protoc and grpc_python_plugin, into
// test/interop/python/gen/ (gitignored: made by the test setup, never committed).
import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);
const require = createRequire(import.meta.url);

export const PYTHON_DIR = fileURLToPath(new URL(".", import.meta.url));
export const PYTHON_GEN_DIR = path.join(PYTHON_DIR, "gen");
const REPO = fileURLToPath(new URL("../../../", import.meta.url));

/** Debian's interpreter: the first `python3` on PATH may be one without grpc (pyenv). */
export const SYSTEM_PYTHON = "/usr/bin/python3";

const packageDir = (name: string): string => path.dirname(require.resolve(`${name}/package.json`));

/**
 * Installs the Debian packages the Python client needs when missing (the
 * suite's own idempotent script), then regenerates the stubs.
 */
export async function generatePythonStubs(): Promise<string> {
  await run("bash", [path.join(REPO, "scripts/install-system-deps.sh")], { cwd: REPO });
  await rm(PYTHON_GEN_DIR, { recursive: true, force: true });
  await mkdir(PYTHON_GEN_DIR, { recursive: true });
  // The reflection proto is compiled from its own folder so its module is
  // `reflection_pb2`: under `grpc/reflection/v1/` it would hide behind the
  // installed `grpc` package, which Python resolves first.
  const reflectionDir = path.join(packageDir("@grpc/reflection"), "build/proto/grpc/reflection/v1");
  const includes = [
    path.join(REPO, "proto"),
    packageDir("google-proto-files"),
    path.join(packageDir("grpc-health-check"), "proto"),
    reflectionDir,
  ];
  const files = [
    "deltamesh/v1/types.proto",
    "deltamesh/v1/records.proto",
    "deltamesh/v1/conflicts.proto",
    "deltamesh/v1/changes.proto",
    // grpc-status-details-bin holds a google.rpc.Status with these details.
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
    "health/v1/health.proto",
    "reflection.proto",
  ];
  await run(
    "protoc",
    [
      ...includes.map((i) => `-I${i}`),
      `--python_out=${PYTHON_GEN_DIR}`,
      `--grpc_python_out=${PYTHON_GEN_DIR}`,
      "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
      ...files,
    ],
    { cwd: REPO },
  );
  return PYTHON_GEN_DIR;
}
