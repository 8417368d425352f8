// `npm run bench -- writes`: write throughput through the API against raw pg
// doing the same row work, all on this machine in one run, with fsync on.
//   (a) single-mutation WriteRecords RPCs, 64 concurrent callers
//   (b) WriteRecords RPCs of 100 mutations, 8 concurrent callers
//   (c) raw pg: one upsert + one log insert per transaction, 64 connections
//   (d) raw pg: the same rows, 100 per transaction, 8 connections
//   (e) as (b), but 10% of the mutations are stale edits that conflict and
//       are decided by their field's policy (lww, source_priority, keep_original)
// The load client shares the two cores with the server and PostgreSQL, so it
// is kept cheap: requests are encoded once as byte templates whose fixed-width
// counter is patched per call, sent as plain gRPC over node:http2
// (./h2-client.ts: ~180 µs of client CPU a call where @grpc/grpc-js took
// ~350), and the acknowledgement is the OK status and the response message
// (the server answers only after COMMIT).
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import pg from "pg";
import { MutationSchema, type Mutation, type ValueSchema } from "../../gen/deltamesh/v1/types_pb.js";
import type { BenchContext } from "./run.js";
import { treeCpuMs } from "./cpu.js";
import { H2GrpcClient } from "./h2-client.js";
import { closedLoop, formatRate, percentile, startBenchServer, WRITE_PATH, type LoopResult } from "./support.js";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const RECORDS = 20_000;
const COUNTER_WIDTH = 10;
const COUNTER_PLACEHOLDER = "#".repeat(COUNTER_WIDTH);

type ValueInit = MessageInitShape<typeof ValueSchema>;
const str = (value: string): ValueInit => ({ kind: { case: "stringValue", value } });

/** One mutation as `mutations` field bytes (tag, length, body) and where its counter digits sit. */
interface MutationTemplate {
  bytes: Buffer;
  counterAt: number[];
}

function template(m: Mutation): MutationTemplate {
  const body = Buffer.from(toBinary(MutationSchema, m));
  // field 1, wire type 2 (length-delimited), then the length as a varint
  const header: number[] = [0x0a];
  for (let n = body.length; ; n >>>= 7) {
    if (n < 0x80) {
      header.push(n);
      break;
    }
    header.push((n & 0x7f) | 0x80);
  }
  const bytes = Buffer.concat([Buffer.from(header), body]);
  const counterAt: number[] = [];
  for (let at = bytes.indexOf(COUNTER_PLACEHOLDER); at >= 0; at = bytes.indexOf(COUNTER_PLACEHOLDER, at + 1)) counterAt.push(at);
  return { bytes, counterAt };
}

/** A plain upsert of record `id`: new name and notes each time. */
function plainMutation(id: string): Mutation {
  return create(MutationSchema, {
    ref: { collection: "customers", target: { case: "id", value: id } },
    set: {
      name: str(`Customer ${COUNTER_PLACEHOLDER}`),
      notes: str(`visit ${COUNTER_PLACEHOLDER}`),
      region: { kind: { case: "enumValue", value: "east_china" } },
    },
    source: "crm-desktop",
    device: "bench",
  });
}

/**
 * A stale edit (base version 1) of a field every plain write changes, so it
 * is a concurrent edit the merge must decide: lww (notes), source_priority
 * (credit_limit, from a lower-ranked source) or keep_original (contract_no).
 */
function conflictingMutation(id: string, k: number): Mutation {
  const set: Record<string, ValueInit> =
    k % 3 === 0
      ? { notes: str(`stale ${COUNTER_PLACEHOLDER}`) }
      : k % 3 === 1
        ? { credit_limit: { kind: { case: "decimalValue" as const, value: `1${COUNTER_PLACEHOLDER.replace(/#/g, "0")}` } }, notes: str(`n ${COUNTER_PLACEHOLDER}`) }
        : { contract_no: str(`HT-${COUNTER_PLACEHOLDER}`) };
  return create(MutationSchema, {
    ref: { collection: "customers", target: { case: "id", value: id } },
    set,
    baseVersion: 1n,
    source: "sales-app",
    device: "bench",
  });
}

/** Request byte builders: each call gets the next slice of ids and a fresh counter value. */
class RequestFactory {
  private next = 0;
  private counter = 0;
  constructor(
    private readonly templates: MutationTemplate[],
    private readonly batch: number,
  ) {}

  build(): Buffer {
    const parts = Array.from({ length: this.batch }, () => this.templates[this.next++ % this.templates.length]!);
    const out = Buffer.concat(parts.map((p) => p.bytes));
    const digits = String(++this.counter % 10 ** COUNTER_WIDTH).padStart(COUNTER_WIDTH, "0");
    let offset = 0;
    for (const p of parts) {
      for (const at of p.counterAt) out.write(digits, offset + at, "latin1");
      offset += p.bytes.length;
    }
    return out;
  }
}

function plainTemplates(prefix: string): MutationTemplate[] {
  return Array.from({ length: RECORDS }, (_, i) => template(plainMutation(`${prefix}-${i}`)));
}

/** 90% plain writes, 10% conflicting ones, interleaved so every batch holds both. */
function mixedTemplates(prefix: string): MutationTemplate[] {
  return Array.from({ length: RECORDS }, (_, i) =>
    template(i % 10 === 9 ? conflictingMutation(`${prefix}-${i - 1}`, i) : plainMutation(`${prefix}-${i}`)),
  );
}

interface ApiResult extends LoopResult {
  /** Server process CPU time per acknowledged mutation: less sensitive to a busy machine than the rate. */
  serverCpuUsPerMutation: number;
  /** PostgreSQL's CPU time (all backends) per acknowledged mutation. */
  postgresCpuUsPerMutation: number;
  /** This (client) process's CPU time per acknowledged mutation, and how busy its main thread was. */
  clientCpuUsPerMutation: number;
  clientBusy: number;
  /** Write-ahead log PostgreSQL wrote per acknowledged mutation, and checkpoints that began during the run. */
  walBytesPerMutation: number;
  checkpoints: number;
}

/**
 * The WAL PostgreSQL writes and the checkpoints it begins between `start()`
 * and the `since` it returns (checkpoints are counted in pg_stat_checkpointer
 * since PostgreSQL 17, in pg_stat_bgwriter before).
 */
async function walMeter(pool: pg.Pool): Promise<{ start(): Promise<() => Promise<{ bytes: number; checkpoints: number }>> }> {
  const version = await pool.query<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  const checkpoints =
    Number(version.rows[0]!.v) >= 170000
      ? "(SELECT num_timed + num_requested FROM pg_stat_checkpointer)"
      : "(SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)";
  return {
    async start() {
      const at = await pool.query<{ lsn: string; n: string }>(`SELECT pg_current_wal_lsn()::text AS lsn, ${checkpoints}::text AS n`);
      const { lsn, n } = at.rows[0]!;
      return async () => {
        const r = await pool.query<{ bytes: string; n: string }>(
          `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes, ${checkpoints}::text AS n`,
          [lsn],
        );
        return { bytes: Number(r.rows[0]!.bytes), checkpoints: Number(r.rows[0]!.n) - Number(n) };
      };
    },
  };
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
      const ids = Array.from({ length: rowsPerTx }, (_, j) => `raw-${(i * rowsPerTx + j) % RECORDS}`);
      const fields = ids.map((id) => JSON.stringify({ name: `Customer ${id}`, visits: i }));
      await client.query("BEGIN");
      await client.query(
        `INSERT INTO bench_records (id, version, fields) SELECT * FROM unnest($1::text[], $2::bigint[], $3::jsonb[])
         ON CONFLICT (id) DO UPDATE SET version = bench_records.version + 1, fields = EXCLUDED.fields`,
        [ids, ids.map(() => 1), fields],
      );
      await client.query("INSERT INTO bench_log (id, version, delta) SELECT * FROM unnest($1::text[], $2::bigint[], $3::jsonb[])", [
        ids,
        ids.map(() => 1),
        fields,
      ]);
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
  const client = new H2GrpcClient(server.grpcAddress);
  const observer = new pg.Pool({ connectionString: server.databaseUrl, max: 1 });
  const wal = await walMeter(observer);
  const serverCpu = () => treeCpuMs(server.server.pid) / 1000;
  const postgresCpu = () => treeCpuMs(server.postgresPid) / 1000;
  const api = async (templates: MutationTemplate[], batch: number, callers: number, seconds = SECONDS): Promise<ApiResult> => {
    const requests = new RequestFactory(templates, batch);
    const walSince = await wal.start();
    const [cpuBefore, pgBefore, clientBefore] = [serverCpu(), postgresCpu(), process.cpuUsage()];
    const loopBefore = performance.eventLoopUtilization();
    const result = await closedLoop(callers, seconds, async () => {
      await client.call(WRITE_PATH, requests.build());
      return batch;
    });
    const mutations = result.unitsPerSecond * seconds;
    const clientCpu = process.cpuUsage(clientBefore);
    // Before the WAL query, whose own work is not the workload's.
    const postgresCpuUs = (postgresCpu() - pgBefore) * 1e6;
    const logged = await walSince();
    return {
      ...result,
      clientCpuUsPerMutation: (clientCpu.user + clientCpu.system) / mutations,
      clientBusy: performance.eventLoopUtilization(loopBefore).utilization,
      serverCpuUsPerMutation: ((serverCpu() - cpuBefore) / mutations) * 1e6,
      postgresCpuUsPerMutation: postgresCpuUs / mutations,
      walBytesPerMutation: logged.bytes / mutations,
      checkpoints: logged.checkpoints,
    };
  };

  ctx.log(`running each workload for ${SECONDS} s (BENCH_SECONDS to change)`);
  // Warm-up, which also creates every record the conflict workload edits (its
  // stale edits need records that moved past version 1).
  await api(plainTemplates("warm"), 100, 8, 3);
  await api(plainTemplates("e"), 100, 8, 3);
  // BENCH_ONLY=a,b,...: run only these workloads (profiling one of them).
  const only = new Set((process.env.BENCH_ONLY ?? "a,b,c,d,e").split(","));
  const skipped: LoopResult = { unitsPerSecond: NaN, latenciesMs: [] };
  const skippedApi: ApiResult = { ...skipped, serverCpuUsPerMutation: NaN, postgresCpuUsPerMutation: NaN, clientCpuUsPerMutation: NaN, clientBusy: NaN, walBytesPerMutation: NaN, checkpoints: NaN };
  const a = only.has("a") ? await api(plainTemplates("a"), 1, 64) : skippedApi;
  const b = only.has("b") ? await api(plainTemplates("b"), 100, 8) : skippedApi;
  const e = only.has("e") ? await api(mixedTemplates("e"), 100, 8) : skippedApi;
  const c = only.has("c") ? await rawPg(server.databaseUrl, 64, 1) : skipped;
  const d = only.has("d") ? await rawPg(server.databaseUrl, 8, 100) : skipped;
  client.close();
  await observer.end();
  const cpu = await server.stop();

  const row = (name: string, r: LoopResult | ApiResult) =>
    `${name.padEnd(52)} ${formatRate(r.unitsPerSecond).padStart(9)}/s   p50 ${percentile(r.latenciesMs, 50).toFixed(1).padStart(6)} ms   p99 ${percentile(r.latenciesMs, 99).toFixed(1).padStart(6)} ms` +
    ("serverCpuUsPerMutation" in r
      ? `   CPU per mutation: server ${r.serverCpuUsPerMutation.toFixed(0)} µs, PostgreSQL ${r.postgresCpuUsPerMutation.toFixed(0)} µs, client ${r.clientCpuUsPerMutation.toFixed(0)} µs (${(r.clientBusy * 100).toFixed(0)} % busy); WAL ${formatRate(r.walBytesPerMutation)} B, ${r.checkpoints} checkpoint(s)`
      : "");
  ctx.print(row("(a) API, 1 mutation per RPC, 64 callers", a));
  ctx.print(row("(b) API, 100 mutations per RPC, 8 callers", b));
  ctx.print(row("(e) API, as (b) with 10% conflicting stale edits", e));
  ctx.print(row("(c) raw pg, 1 upsert + 1 log row per tx, 64 conns", c));
  ctx.print(row("(d) raw pg, 100 rows per tx, 8 conns", d));
  ctx.print(`a/c = ${(a.unitsPerSecond / c.unitsPerSecond).toFixed(2)}   (goal >= 1.0)`);
  ctx.print(`b/d = ${(b.unitsPerSecond / d.unitsPerSecond).toFixed(2)}   b = ${formatRate(b.unitsPerSecond)} updates/s (goal >= 20,000)`);
  ctx.print(`e/b = ${(e.unitsPerSecond / b.unitsPerSecond).toFixed(2)}   (merge cost with 10% conflicts; goal >= 0.85)`);
  ctx.print(`server process CPU over the run: ${cpu.toFixed(1)} s`);
}
