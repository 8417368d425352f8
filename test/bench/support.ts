// Shared pieces of the benchmarks: a closed-loop load generator, percentiles,
// and a deltamesh server in its own process on an fsync-on PostgreSQL.
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { RecordService } from "../../gen/deltamesh/v1/records_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../services/config/file-source.js";
import { startEmbeddedPostgres } from "../../services/store/embedded-postgres.js";
import { createGrpcJsClient } from "../../services/platform/transport/grpc-client.js";
import { startServerProcess, type ServerProcess } from "../support/processes/deltamesh.js";
import type { BenchContext } from "./run.js";
import { treeCpuMs } from "./cpu.js";

/** The gRPC path of RecordService.WriteRecords, for the benches' raw callers. */
export const WRITE_PATH = `/${RecordService.typeName}/${RecordService.method.writeRecords.name}`;

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

export interface BenchServer {
  databaseUrl: string;
  /** The PostgreSQL server's process id (its backends are its children). */
  postgresPid: number;
  grpcAddress: string;
  server: ServerProcess;
  recordClient(): ReturnType<typeof createGrpcJsClient<typeof RecordService>>;
  /** Stops server and database; resolves with the server process's CPU seconds. */
  stop(): Promise<number>;
}

const REPO = fileURLToPath(new URL("../../", import.meta.url));
let built: string | undefined;

/**
 * The server as the container image runs it: JavaScript compiled by
 * scripts/build.mjs (as deploy/docker/Dockerfile builds it), not the sources
 * through tsx, whose transform alone cost ~5 % of the server's CPU in the
 * write benchmark. Built once per run, inside the checkout so that its
 * imports find node_modules.
 */
export function builtServer(ctx: BenchContext): string {
  if (built === undefined) {
    const out = path.join(REPO, ".bench", "dist");
    ctx.log("building the server (scripts/build.mjs) ...");
    const r = spawnSync(process.execPath, [path.join(REPO, "scripts/build.mjs"), out], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`scripts/build.mjs failed: ${r.stdout}${r.stderr}`);
    built = path.join(out, "services/cli/main.js");
  }
  return built;
}

/** PostgreSQL with fsync on (a real durability baseline) and a server process on it. */
export async function startBenchServer(ctx: BenchContext, extraArgs: string[] = [], env: Record<string, string> = {}): Promise<BenchServer> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "deltamesh-bench-"));
  const pg = await startEmbeddedPostgres({ dataDir: path.join(dataDir, "pg"), fsync: true });
  const server = await startServerProcess({
    entry: builtServer(ctx),
    databaseUrl: pg.url,
    args: ["--insecure-dev-auth", ...extraArgs],
    // BENCH_PROFILE_DIR=<dir>: write a V8 CPU profile of the server (open it in Chrome DevTools).
    nodeArgs: process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(process.env.BENCH_PROFILE_DIR)}`] : [],
    // The build has no config beside it (the image copies config/ next to dist/).
    env: { DELTAMESH_CONFIG: DEFAULT_CONFIG_PATH, ...env },
    onLog: (l) => ctx.log(`[server] ${l}`),
  });
  const clients: { close(): void }[] = [];
  return {
    databaseUrl: pg.url,
    postgresPid: pg.pid,
    grpcAddress: server.grpcAddress,
    server,
    recordClient() {
      const c = createGrpcJsClient(RecordService, server.grpcAddress);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      const cpu = treeCpuMs(server.pid) / 1000;
      await server.stop();
      await pg.stop();
      await rm(dataDir, { recursive: true, force: true });
      return cpu;
    },
  };
}

