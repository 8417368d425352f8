// `npm run bench -- writes`: write throughput through the API against raw pg
// doing the same row work, all on this machine in one run, with fsync on.
//   (a) single-mutation WriteRecords RPCs, 64 concurrent callers
//   (b) WriteRecords RPCs of 100 mutations, 8 concurrent callers
//   (c) raw pg: one upsert + one log insert per transaction, 64 connections
//   (d) raw pg: the same rows, 100 per transaction, 8 connections
import { create } from "@bufbuild/protobuf";
import pg from "pg";
import { WriteRecordsRequestSchema, type WriteRecordsRequest } from "../../gen/deltamesh/v1/records_pb.js";
import type { BenchContext } from "./run.js";
import { closedLoop, formatRate, percentile, startBenchServer, type LoopResult } from "./support.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);

function mutationRequest(prefix: string, i: number, batch: number): WriteRecordsRequest {
  return create(WriteRecordsRequestSchema, {
    mutations: Array.from({ length: batch }, (_, j) => ({
      ref: { collection: "customers", target: { case: "id" as const, value: `${prefix}-${(i * batch + j) % 20_000}` } },
      set: {
        name: { kind: { case: "stringValue" as const, value: `Customer ${i}-${j}` } },
        visits: { kind: { case: "intValue" as const, value: BigInt(i) } },
        region: { kind: { case: "enumValue" as const, value: "east_china" } },
      },
      source: "bench",
      device: "bench",
    })),
  });
}

async function rawPg(url: string, connections: number, rowsPerTx: number): Promise<LoopResult> {
  const pool = new pg.Pool({ connectionString: url, max: connections });
  await pool.query(`CREATE TABLE IF NOT EXISTS bench_records (id text PRIMARY KEY, version bigint NOT NULL, fields jsonb NOT NULL);
                    CREATE TABLE IF NOT EXISTS bench_log (seq bigserial PRIMARY KEY, id text NOT NULL, version bigint NOT NULL, delta jsonb NOT NULL)`);
  let n = 0;
  const result = await closedLoop(connections, SECONDS, async () => {
    const client = await pool.connect();
    try {
      const i = n++;
      const ids = Array.from({ length: rowsPerTx }, (_, j) => `raw-${(i * rowsPerTx + j) % 20_000}`);
      const fields = ids.map((id) => JSON.stringify({ name: `Customer ${id}`, visits: i }));
      await client.query("BEGIN");
      await client.query(
        `INSERT INTO bench_records (id, version, fields) SELECT * FROM unnest($1::text[], $2::bigint[], $3::jsonb[])
         ON CONFLICT (id) DO UPDATE SET version = bench_records.version + 1, fields = EXCLUDED.fields`,
        [ids, ids.map(() => 1), fields],
      );
      await client.query(
        "INSERT INTO bench_log (id, version, delta) SELECT * FROM unnest($1::text[], $2::bigint[], $3::jsonb[])",
        [ids, ids.map(() => 1), fields],
      );
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    return rowsPerTx;
  });
  await pool.end();
  return result;
}

export async function writesBench(ctx: BenchContext): Promise<void> {
  const server = await startBenchServer(ctx);
  const client = server.recordClient();
  let i = 0;
  const api = async (batch: number, callers: number, prefix: string) =>
    closedLoop(callers, SECONDS, async () => {
      await client.writeRecords(mutationRequest(prefix, i++, batch));
      return batch;
    });

  ctx.log(`running each workload for ${SECONDS} s (BENCH_SECONDS to change)`);
  await api(1, 16, "warm"); // warm-up: JIT, connections, caches
  const a = await api(1, 64, "a");
  const b = await api(100, 8, "b");
  const c = await rawPg(server.databaseUrl, 64, 1);
  const d = await rawPg(server.databaseUrl, 8, 100);
  await server.stop();

  const row = (name: string, r: LoopResult) =>
    `${name.padEnd(52)} ${formatRate(r.unitsPerSecond).padStart(12)}/s   p50 ${percentile(r.latenciesMs, 50).toFixed(2)} ms   p99 ${percentile(r.latenciesMs, 99).toFixed(2)} ms`;
  ctx.print(row("(a) API, 1 mutation per RPC, 64 callers", a));
  ctx.print(row("(b) API, 100 mutations per RPC, 8 callers", b));
  ctx.print(row("(c) raw pg, 1 upsert + 1 log row per tx, 64 conns", c));
  ctx.print(row("(d) raw pg, 100 rows per tx, 8 conns", d));
  ctx.print(`a/c = ${(a.unitsPerSecond / c.unitsPerSecond).toFixed(2)}   (goal >= 1.0)`);
  ctx.print(`b/d = ${(b.unitsPerSecond / d.unitsPerSecond).toFixed(2)}   b = ${formatRate(b.unitsPerSecond)} updates/s (goal >= 20,000)`);
}
