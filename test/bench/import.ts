// `npm run bench -- import`: `deltamesh import` of a generated customer CSV
// (1,000,000 rows by default; BENCH_IMPORT_ROWS to change) into a server in
// its own process on an fsync-on PostgreSQL, beside two raw pg baselines
// loading the same rows in the same run (./import-baselines.ts): an upsert
// plus a log row (the least row work the API does for a write), and the
// rows deltamesh itself stores for each customer, written with plain SQL.
// Prints rows/s and CPU per row of the import client, the server and
// PostgreSQL, to show where the time goes.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { runImport } from "../../services/cli/import/command.js";
import { writeCustomerCsv } from "../support/import-data.js";
import { treeCpuMs } from "./cpu.js";
import { storedRows, upsertAndLog } from "./import-baselines.js";
import type { BenchContext } from "./run.js";
import { formatRate, startBenchServer, type BenchServer } from "./support.js";

const ROWS = Number(process.env.BENCH_IMPORT_ROWS ?? 1_000_000);
const GOAL = 20_000;

interface Measured {
  rowsPerSecond: number;
  clientMs: number;
  serverMs: number;
  postgresMs: number;
}

/** Wall time and CPU of client (this process), server and PostgreSQL around `work`. */
async function measure(server: BenchServer, rows: number, work: () => Promise<void>): Promise<Measured> {
  const pgPid = server.postgresPid;
  const before = { client: process.cpuUsage(), server: treeCpuMs(server.server.pid), postgres: treeCpuMs(pgPid) };
  const start = performance.now();
  await work();
  const seconds = (performance.now() - start) / 1000;
  const client = process.cpuUsage(before.client);
  return {
    rowsPerSecond: rows / seconds,
    clientMs: (client.user + client.system) / 1000,
    serverMs: treeCpuMs(server.server.pid) - before.server,
    postgresMs: treeCpuMs(pgPid) - before.postgres,
  };
}

export async function importBench(ctx: BenchContext): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "deltamesh-bench-import-"));
  const file = path.join(dir, "customers.csv");
  ctx.log(`generating ${formatRate(ROWS)} customer rows (BENCH_IMPORT_ROWS to change)`);
  await writeCustomerCsv(file, { rows: ROWS, defects: false });
  const server = await startBenchServer(ctx);
  try {
    ctx.log("raw pg baselines ...");
    const raw = await measure(server, ROWS, () => upsertAndLog(server.databaseUrl, file));
    const stored = await measure(server, ROWS, () => storedRows(server.databaseUrl, file, "bench_stored_rows"));
    ctx.log("deltamesh import ...");
    const imp = await measure(server, ROWS, async () => {
      const summary = await runImport({
        file,
        collection: "customers",
        key: "erp_id",
        server: server.grpcAddress,
        batchSize: 500,
        concurrency: 4,
        source: "erp",
        progressInterval: 10,
      });
      if (summary.stopped || summary.counts.created !== ROWS) throw new Error(`import did not create every row: ${JSON.stringify(summary)}`);
    });
    const perRow = (ms: number) => `${((ms * 1000) / ROWS).toFixed(0).padStart(5)} µs`;
    const line = (name: string, m: Measured) =>
      `${name.padEnd(44)} ${formatRate(m.rowsPerSecond).padStart(9)} rows/s   CPU per row: client ${perRow(m.clientMs)}  server ${perRow(m.serverMs)}  postgres ${perRow(m.postgresMs)}`;
    ctx.print(`${formatRate(ROWS)} rows, fsync on`);
    ctx.print(line("(a) deltamesh import, 500/call, 4 in flight", imp));
    ctx.print(line("(b) raw pg, upsert + log row, 500/tx, 4 conns", raw));
    ctx.print(line("(c) raw pg, the rows deltamesh stores (idem)", stored));
    ctx.print(
      `a/b = ${(imp.rowsPerSecond / raw.rowsPerSecond).toFixed(2)}   a/c = ${(imp.rowsPerSecond / stored.rowsPerSecond).toFixed(2)}   a = ${formatRate(imp.rowsPerSecond)} rows/s (goal >= ${formatRate(GOAL)})`,
    );
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
