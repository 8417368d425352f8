// `npm run bench -- import`: `deltamesh import` of a generated customer CSV
// (1,000,000 rows by default; BENCH_IMPORT_ROWS to change) into a server in
// its own process on an fsync-on PostgreSQL, beside raw pg loading the same
// rows in the same run: 500 rows per transaction, each an upsert plus a log
// row (the least row work the API does for a write), 4 connections.
// Prints rows/s and CPU per row of the import client, the server and
// PostgreSQL, to show where the time goes.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { runImport } from "../../services/cli/import/command.js";
import { openRows, type RowValues } from "../../services/cli/import/rows.js";
import { writeCustomerCsv } from "../support/import-data.js";
import { treeCpuMs } from "./cpu.js";
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

async function rawPg(url: string, file: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  await pool.query(`CREATE TABLE bench_customers (erp_id text PRIMARY KEY, version bigint NOT NULL, fields jsonb NOT NULL);
                    CREATE TABLE bench_customer_log (seq bigserial PRIMARY KEY, erp_id text NOT NULL, version bigint NOT NULL, delta jsonb NOT NULL)`);
  const write = async (batch: RowValues[]) => {
    const ids = batch.map((r) => String(r.erp_id));
    const fields = batch.map((r) => JSON.stringify(r));
    const client = await pool.connect();
    try {
      await client.query("BEGIN");
      await client.query(
        `INSERT INTO bench_customers (erp_id, version, fields) SELECT id, 1, f FROM unnest($1::text[], $2::jsonb[]) AS u(id, f)
         ON CONFLICT (erp_id) DO UPDATE SET version = bench_customers.version + 1, fields = bench_customers.fields || EXCLUDED.fields`,
        [ids, fields],
      );
      await client.query("INSERT INTO bench_customer_log (erp_id, version, delta) SELECT id, 1, f FROM unnest($1::text[], $2::jsonb[]) AS u(id, f)", [ids, fields]);
      await client.query("COMMIT");
    } finally {
      client.release();
    }
  };
  const inflight = new Set<Promise<void>>();
  let batch: RowValues[] = [];
  const send = async () => {
    while (inflight.size >= 4) await Promise.race(inflight);
    const p: Promise<void> = write(batch).finally(() => inflight.delete(p));
    inflight.add(p);
    batch = [];
  };
  for await (const row of openRows(file, "csv").rows) {
    if ("error" in row) continue;
    batch.push(row.values);
    if (batch.length === 500) await send();
  }
  if (batch.length > 0) await send();
  await Promise.all(inflight);
  await pool.end();
}

export async function importBench(ctx: BenchContext): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "deltamesh-bench-import-"));
  const file = path.join(dir, "customers.csv");
  ctx.log(`generating ${formatRate(ROWS)} customer rows (BENCH_IMPORT_ROWS to change)`);
  await writeCustomerCsv(file, { rows: ROWS, defects: false });
  const server = await startBenchServer(ctx);
  try {
    ctx.log("raw pg baseline ...");
    const raw = await measure(server, ROWS, () => rawPg(server.databaseUrl, file));
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
    ctx.print(`a/b = ${(imp.rowsPerSecond / raw.rowsPerSecond).toFixed(2)}   a = ${formatRate(imp.rowsPerSecond)} rows/s (goal >= ${formatRate(GOAL)})`);
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}
