// Shared pieces of the benchmarks: a closed-loop load generator, percentiles,
// and a deltamesh server in its own process on an fsync-on PostgreSQL.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RecordService } from "../../gen/deltamesh/v1/records_pb.js";
import { startEmbeddedPostgres } from "../../services/store/embedded-postgres.js";
import { createGrpcJsClient } from "../../services/platform/transport/grpc-client.js";
import type { BenchContext } from "./run.js";
import { treeCpuMs } from "./cpu.js";

export interface LoopResult {
  unitsPerSecond: number;
  latenciesMs: number[];
}

/** `callers` concurrent loops each awaiting `op` (which returns units done) for `seconds`. */
export async function closedLoop(callers: number, seconds: number, op: () => Promise<number>): Promise<LoopResult> {
  const latencies: number[] = [];
  let units = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        // Not `units += await op()`: that reads `units` before the await and
        // drops every increment made by other callers meanwhile.
        const done = await op();
        units += done;
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { unitsPerSecond: units / ((performance.now() - start) / 1000), latenciesMs: latencies };
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function formatRate(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

const REPO = fileURLToPath(new URL("../../", import.meta.url));

export interface BenchServer {
  databaseUrl: string;
  /** The PostgreSQL server's process id (its backends are its children). */
  postgresPid: number;
  grpcAddress: string;
  process: ChildProcess;
  recordClient(): ReturnType<typeof createGrpcJsClient<typeof RecordService>>;
  /** Stops server and database; resolves with the server process's CPU seconds. */
  stop(): Promise<number>;
}

/** PostgreSQL with fsync on (a real durability baseline) and a server process on it. */
export async function startBenchServer(ctx: BenchContext, extraArgs: string[] = []): Promise<BenchServer> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "deltamesh-bench-"));
  const pg = await startEmbeddedPostgres({ dataDir: path.join(dataDir, "pg"), fsync: true });
  const child = spawn(
    process.execPath,
    [
      // BENCH_PROFILE_DIR=<dir>: write a V8 CPU profile of the server (open it in Chrome DevTools).
      ...(process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(process.env.BENCH_PROFILE_DIR)}`] : []),
      "--import", "tsx", path.join(REPO, "services/cli/main.ts"), "serve", "--database-url", pg.url, "--port", "0", "--no-web", "--insecure-dev-auth", ...extraArgs],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DELTAMESH_LOG_LEVEL: "warn" } },
  );
  child.stderr!.on("data", (d: Buffer) => ctx.log(`[server] ${d.toString().trimEnd()}`));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /gRPC on :(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  const grpcAddress = `127.0.0.1:${port}`;
  const clients: { close(): void }[] = [];
  return {
    databaseUrl: pg.url,
    postgresPid: pg.pid,
    grpcAddress,
    process: child,
    recordClient() {
      const c = createGrpcJsClient(RecordService, grpcAddress);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      const cpu = treeCpuMs(child.pid!) / 1000;
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
      await pg.stop();
      await rm(dataDir, { recursive: true, force: true });
      return cpu;
    },
  };
}

