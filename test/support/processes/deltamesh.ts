// A deltamesh server in its own process (`deltamesh serve`), for tests that
// kill nodes or read a server's own memory and CPU, and for benchmarks.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import type { GrpcJsClient } from "../../../services/platform/transport/grpc-client.js";
import { stopWithParent } from "../../../services/platform/stop-with-parent.js";
import { imageNodeOptions } from "./image-node-options.js";
import { grpcJsClientAs, type Identity } from "../node.js";
import { testJwks, TEST_AUDIENCE, TEST_ISSUER } from "../tokens.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

export interface ServerProcess {
  grpcAddress: string;
  process: ChildProcess;
  pid: number;
  /** Resident memory of the server process, bytes (from /proc). */
  rssBytes(): Promise<number>;
  /** CPU time the server process has used (user + system), ms (from /proc). */
  cpuMs(): Promise<number>;
  /** A grpc-js client calling as `id` (default: an administrator with a signed test token); closed when the process stops. */
  client<S extends DescService>(service: S, id?: Identity): GrpcJsClient<S>;
  /** SIGKILL, wait for exit. */
  kill(): Promise<void>;
  /** SIGTERM, wait for exit. */
  stop(): Promise<void>;
}

export interface ServerProcessOptions {
  databaseUrl: string;
  args?: string[];
  /** Options for node itself (before the script), e.g. --cpu-prof. */
  nodeArgs?: string[];
  /**
   * A compiled services/cli/main.js (a scripts/build.mjs build, as the
   * container image runs) to run instead of the sources through tsx.
   */
  entry?: string;
  env?: Record<string, string>;
  /** Server output (stderr lines). */
  onLog?: (line: string) => void;
}

const CLK_TCK = 100;

/** Like in-process test nodes, the server verifies the test issuer's signed tokens (../tokens.ts). */
const TEST_AUTH_ENV = {
  DELTAMESH_JWT_ISSUER: TEST_ISSUER,
  DELTAMESH_JWT_AUDIENCE: TEST_AUDIENCE,
  DELTAMESH_JWT_JWKS: JSON.stringify(testJwks),
  DELTAMESH_MASK_HASH_KEY: "test-mask-key",
};

export async function startServerProcess(opts: ServerProcessOptions): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    [
      ...(opts.nodeArgs ?? []),
      ...(opts.entry ? [opts.entry] : ["--import", "tsx", path.join(REPO, "services/cli/main.ts")]),
      ...["serve", "--database-url", opts.databaseUrl, "--port", "0", "--no-web", ...(opts.args ?? [])],
    ],
    {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
      // The image's V8 settings (NODE_OPTIONS in deploy/docker/Dockerfile): benchmarks measure what production runs.
      env: { ...process.env, ...TEST_AUTH_ENV, DELTAMESH_LOG_LEVEL: "warn", NODE_OPTIONS: [process.env.NODE_OPTIONS, imageNodeOptions()].filter(Boolean).join(" "), ...opts.env },
    },
  );
  stopWithParent(child, "SIGKILL");
  child.stderr!.on("data", (d: Buffer) => opts.onLog?.(d.toString().trimEnd()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /gRPC on :(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  const clients: { close(): void }[] = [];
  const signal = async (sig: NodeJS.Signals) => {
    for (const c of clients.splice(0)) c.close();
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  const stat = () => readFile(`/proc/${child.pid}/stat`, "utf8");
  return {
    grpcAddress: `127.0.0.1:${port}`,
    process: child,
    pid: child.pid!,
    async rssBytes() {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    async cpuMs() {
      // Fields after the command name: utime is the 14th, stime the 15th field overall.
      const text = await stat();
      const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
    },
    client(service, id) {
      const c = grpcJsClientAs(service, `127.0.0.1:${port}`, id);
      clients.push(c);
      return c;
    },
    kill: () => signal("SIGKILL"),
    stop: () => signal("SIGTERM"),
  };
}
