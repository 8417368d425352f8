// `npm run bench -- stream`: change streams, three parts (BENCH_PART=latency|fanout|catchup to run one).
//   (1) latency: 500 writes/s over 10 groups of records, 200 subscribers each
//       filtered to one group (~20 receive each write); write-acknowledged ->
//       received p50/p99, beside etcd in the same run with the same shape
//       (puts under 10 prefixes, one prefix watch per subscriber).
//   (2) fan-out: subscribers on a node that only streams (writes go through
//       another node); server CPU per delivered delta from the streaming
//       process's own CPU accounting: 1 and 1,000 unfiltered subscribers, then
//       1,000 spread over 10 roles (row scopes, field lists, masks), whose
//       overhead over the unfiltered run is the access issue's figure.
//   (3) catch-up: one subscriber 1,000,000 changes behind, beside a raw
//       keyset read of the same rows through `pg`.
// The groups are `department` values: the example schema's `region` enum has 9 values, not 10.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Etcd3 } from "etcd3";
import pg from "pg";
import { SubscribeRequestSchema, SubscribeResponseSchema, type SubscribeRequest } from "../../gen/deltamesh/v1/changes_pb.js";
import { WriteRecordsRequestSchema, WriteRecordsResponseSchema } from "../../gen/deltamesh/v1/records_pb.js";
import { ClusterService } from "../../gen/deltamesh/v1/cluster_pb.js";
import { encodeCursor } from "../../services/changes/cursor.js";
import { createGrpcJsClient } from "../../services/platform/transport/grpc-client.js";
import { startEtcd } from "../support/processes/etcd.js";
import { startServerProcess, type ServerProcess } from "../support/processes/deltamesh.js";
import type { BenchContext } from "./run.js";
import { builtServer, formatRate, percentile, startBenchServer, WRITE_PATH, type BenchServer } from "./support.js";
import { H2GrpcClient } from "./h2-client.js";
import { WireReader } from "../../services/platform/wire/reader.js";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { DEFAULT_CONFIG_PATH } from "../../services/config/file-source.js";
import { unsignedToken } from "../support/tokens.js";
import { tmpdir } from "node:os";
import { treeCpuMs } from "./cpu.js";
import path from "node:path";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 15);
/** Latency: seconds of writes before measuring (JIT, connection windows, caches). */
const WARMUP_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? 5);
const GROUPS = 10;
const SUBSCRIPTION = "/deltamesh.v1.ChangeService/Subscribe";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Visits each `events` entry (field 1) of a SubscribeResponse: its kind's
 * field number and its bytes' range (bench clients parse only the few fields
 * they need).
 */
function visitEvents(buf: Buffer, visit: (kind: number, start: number, end: number) => void): void {
  const r = new WireReader(buf);
  while (r.pos < buf.length) {
    r.tag(); // `events` (field 1)
    const end = r.lengthEnd(buf.length);
    // Inside ChangeEvent: skip the cursor (field 1), then the kind's field number.
    let tag = r.tag();
    if (tag >>> 3 === 1) {
      r.pos = r.lengthEnd(end);
      tag = r.pos < end ? r.tag() : 0;
    }
    const kindEnd = r.pos < end ? r.lengthEnd(end) : r.pos;
    visit(tag >>> 3, r.pos, kindEnd);
    r.pos = end;
  }
}

/** Counts the events of a SubscribeResponse from its wire bytes, without decoding them (cheap clients). */
export function countEvents(buf: Buffer): { events: number; heartbeats: number } {
  let events = 0;
  let heartbeats = 0;
  visitEvents(buf, (kind) => (kind === 6 ? heartbeats++ : events++));
  return { events, heartbeats };
}

/** `id@version` of each upsert (ChangeEvent field 2: RecordUpsert id = 2, version = 3) in a SubscribeResponse. */
export function upsertVersions(buf: Buffer): string[] {
  const out: string[] = [];
  visitEvents(buf, (kind, start, end) => {
    if (kind !== 2) return;
    const u = new WireReader(buf, start);
    let id = "";
    let version = 0n;
    while (u.pos < end) {
      const tag = u.tag();
      const wire = tag & 7;
      if (wire === 0) {
        const v = u.uint64();
        if (tag >>> 3 === 3) version = v;
      } else if (wire === 2) {
        const valueEnd = u.lengthEnd(end);
        if (tag >>> 3 === 2) id = buf.toString("utf8", u.pos, valueEnd);
        u.pos = valueEnd;
      } else throw new Error(`unexpected wire type ${wire} in RecordUpsert`);
    }
    out.push(`${id}@${version}`);
  });
  return out;
}

/** A raw Subscribe call; without a token the (development-auth) node treats the caller as its administrator. */
function rawSubscribe(client: grpc.Client, req: SubscribeRequest, onMessage: (bytes: Buffer) => void, token?: string): grpc.ClientReadableStream<Buffer> {
  const metadata = new grpc.Metadata();
  if (token) metadata.set("authorization", `Bearer ${token}`);
  const call = client.makeServerStreamRequest<Buffer, Buffer>(
    SUBSCRIPTION,
    (b) => b,
    (b) => b,
    Buffer.from(toBinary(SubscribeRequestSchema, req)),
    metadata,
    {},
  );
  call.on("data", onMessage);
  call.on("error", (e) => {
    if ((e as grpc.ServiceError).code !== grpc.status.CANCELLED) console.error(`subscribe failed: ${e.message}`);
  });
  return call;
}

const channels = (address: string, n: number) => Array.from({ length: n }, () => new grpc.Client(address, grpc.credentials.createInsecure()));

const REGIONS = ["east_china", "north_china", "south_china", "central_china", "southwest_china"];
/** Records are spread over regions by id (the regions row scopes read). */
const regionOf = (id: string) => REGIONS[[...id].reduce((h, ch) => (h * 31 + ch.charCodeAt(0)) % 1009, 0) % REGIONS.length]!;

/** A phone per record (phone is an identity key: no two records share one); emails change with every write. */
const phoneOf = (id: string) => `+86138${String((id.startsWith("lat") ? 20_000_000 : 30_000_000) + Number(id.slice(4)))}`;

function writeRequest(ids: string[], dept: (id: string) => string, round: number) {
  return create(WriteRecordsRequestSchema, {
    mutations: ids.map((id) => ({
      ref: { collection: "customers", target: { case: "id" as const, value: id } },
      set: {
        name: { kind: { case: "stringValue" as const, value: `Customer ${id}` } },
        region: { kind: { case: "enumValue" as const, value: regionOf(id) } },
        phone: { kind: { case: "stringValue" as const, value: phoneOf(id) } },
        email: { kind: { case: "stringValue" as const, value: `c${round}@example.com` } },
        department: { kind: { case: "stringValue" as const, value: dept(id) } },
        visits: { kind: { case: "intValue" as const, value: BigInt(round) } },
      },
      source: "bench",
    })),
  });
}

/** The cheap reader must agree with a full decode (checked on the first messages of a run). */
function checkUpserts(bytes: Buffer, keys: string[]): void {
  const decoded = fromBinary(SubscribeResponseSchema, bytes).events.flatMap((e) => (e.kind.case === "upsert" ? [`${e.kind.value.id}@${e.kind.value.version}`] : []));
  if (decoded.join() !== keys.join()) throw new Error(`upsertVersions read ${keys.join()} where the message holds ${decoded.join()}`);
}

const ms = (v: number) => `${v.toFixed(2)} ms`;

/**
 * Matches writes' acknowledgements with their deliveries: latency is
 * received minus acknowledged (a delivery that beats its ack counts as 0).
 * Writes sent during the warm-up are delivered but not measured.
 */
class DeliveryClock {
  readonly latencies: number[] = [];
  /** Deliveries that arrived before their write's acknowledgement. */
  before = 0;
  /** Acknowledgement time by write key; null: a warm-up write. */
  private readonly acks = new Map<string, number | null>();
  private readonly early = new Map<string, number[]>();

  acked(key: string, measured: boolean): void {
    const at = performance.now();
    this.acks.set(key, measured ? at : null);
    const early = this.early.get(key);
    if (!early) return;
    this.early.delete(key);
    if (!measured) return;
    this.before += early.length;
    for (const t of early) this.latencies.push(Math.min(0, t - at));
  }

  delivered(key: string, at: number): void {
    const ack = this.acks.get(key);
    if (ack === undefined) this.early.set(key, [...(this.early.get(key) ?? []), at]);
    else if (ack !== null) this.latencies.push(at - ack);
  }

  percentile(p: number): number {
    return percentile(
      this.latencies.map((l) => Math.max(0, l)),
      p,
    );
  }
}

/** Calls `send` `rate` times a second: a warm-up (not measured), then `seconds` measured; resolves once every send settled. */
async function paced(
  rate: number,
  seconds: number,
  send: (n: number, measured: boolean) => Promise<void>,
  onMeasuring: () => void = () => undefined,
): Promise<{ sent: number; seconds: number }> {
  let n = 0;
  const inflight: Promise<void>[] = [];
  const run = async (secs: number, measured: boolean) => {
    const start = performance.now();
    let sent = 0;
    while (performance.now() - start < secs * 1000) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate);
      for (; sent < due; sent++) inflight.push(send(n++, measured));
      await sleep(2);
    }
    return { sent, seconds: (performance.now() - start) / 1000 };
  };
  await run(WARMUP_SECONDS, false);
  onMeasuring();
  const measured = await run(seconds, true);
  await Promise.all(inflight);
  return measured;
}

async function latency(ctx: BenchContext, server: BenchServer): Promise<{ p99: number; etcdP99: number }> {
  const SUBS = 200;
  const RATE = 500;
  const RECORDS = 2000;
  const dept = (id: string) => `group-${Number(id.slice(4)) % GROUPS}`;
  const pick = () => ids[Math.floor(Math.random() * RECORDS)]!;
  const recs = server.recordClient();
  // Create the records first, so the measured writes are updates of known versions.
  const ids = Array.from({ length: RECORDS }, (_, i) => `lat-${i}`);
  for (let i = 0; i < RECORDS; i += 500) await recs.writeRecords(writeRequest(ids.slice(i, i + 500), dept, 0));
  // The paced writes go through the cheap caller: the client shares the cores with the server.
  const writer = new H2GrpcClient(server.grpcAddress);

  const clock = new DeliveryClock();
  let checked = 0;
  // The subscribers share 4 connections and read through the cheap caller too:
  // @grpc/grpc-js's per-message work on 200 streams in this one process was
  // most of the measured p99 (~0.5-0.9 ms against ~0.2 ms).
  const pool = Array.from({ length: 4 }, () => new H2GrpcClient(server.grpcAddress));
  const calls = Array.from({ length: SUBS }, (_, s) =>
    pool[s % pool.length]!.stream(
      SUBSCRIPTION,
      Buffer.from(
        toBinary(
          SubscribeRequestSchema,
          create(SubscribeRequestSchema, {
            collections: [{ collection: "customers", filters: [{ field: "department", value: { kind: { case: "stringValue", value: `group-${s % GROUPS}` } } }] }],
            start: { case: "fromNow", value: {} },
          }),
        ),
      ),
      (bytes) => {
        const at = performance.now();
        const keys = upsertVersions(bytes);
        if (checked++ < 100) checkUpserts(bytes, keys);
        for (const key of keys) clock.delivered(key, at);
      },
    ),
  );
  for (const c of calls) c.done.catch((e: Error) => console.error(`subscribe failed: ${e.message}`));
  await sleep(2000); // all streams open and live
  let failed = 0;
  const cpuAt = () => ({ client: process.cpuUsage(), server: treeCpuMs(server.server.pid), pg: treeCpuMs(server.postgresPid), loop: performance.eventLoopUtilization() });
  let cpuBefore = cpuAt();
  const writes = await paced(
    RATE,
    SECONDS,
    (n, measured) => {
      const id = pick();
      return writer.call(WRITE_PATH, Buffer.from(toBinary(WriteRecordsRequestSchema, writeRequest([id], dept, n)))).then(
        (bytes) => clock.acked(`${id}@${fromBinary(WriteRecordsResponseSchema, bytes).results[0]!.version}`, measured),
        () => void failed++,
      );
    },
    () => (cpuBefore = cpuAt()),
  );
  await sleep(1000);
  // Where the machine's two cores went while measuring (client: this process).
  const busy = performance.eventLoopUtilization(cpuBefore.loop).utilization;
  const clientCpu = process.cpuUsage(cpuBefore.client);
  const cores = (ms: number) => (ms / 1000 / (writes.seconds + 1)).toFixed(2);
  const where = `CPU cores: client ${cores((clientCpu.user + clientCpu.system) / 1000)} (main thread ${(busy * 100).toFixed(0)} % busy), server ${cores(treeCpuMs(server.server.pid) - cpuBefore.server)}, PostgreSQL ${cores(treeCpuMs(server.postgresPid) - cpuBefore.pg)}`;
  for (const c of calls) c.cancel();
  for (const c of pool) c.close();
  writer.close();
  const p99 = clock.percentile(99);

  // etcd, same shape.
  const dir = await mkdtemp(path.join(tmpdir(), "deltamesh-bench-etcd-"));
  const etcd = await startEtcd({ dataDir: path.join(dir, "etcd") });
  const client = new Etcd3({ hosts: etcd.endpoint });
  const eClock = new DeliveryClock();
  const watchers = await Promise.all(
    Array.from({ length: SUBS }, (_, s) =>
      client
        .watch()
        .prefix(`/bench/group-${s % GROUPS}/`)
        .create()
        .then((w) => {
          w.on("put", (kv) => eClock.delivered(kv.value.toString(), performance.now()));
          return w;
        }),
    ),
  );
  await sleep(1000);
  const puts = await paced(RATE, SECONDS, (n, measured) => {
    const id = pick();
    return client
      .put(`/bench/${dept(id)}/${id}`)
      .value(`${n}`)
      .then(() => eClock.acked(`${n}`, measured));
  });
  await sleep(1000);
  await Promise.all(watchers.map((w) => w.cancel()));
  client.close();
  await etcd.stop();
  await rm(dir, { recursive: true, force: true });
  const etcdP99 = eClock.percentile(99);

  ctx.print(`(1) latency, ${SUBS} subscribers filtered to one of ${GROUPS} groups, ${RATE} writes/s: ${WARMUP_SECONDS} s warm-up, then ${SECONDS} s measured`);
  ctx.print(`    deltamesh: ${formatRate(writes.sent / writes.seconds)} writes/s (${failed} failed), ${clock.latencies.length} deliveries (${clock.before} before the write's ack)   p50 ${ms(clock.percentile(50))}   p99 ${ms(p99)}   p99.9 ${ms(clock.percentile(99.9))}`);
  ctx.print(`    ${where}`);
  ctx.print(`    etcd:      ${formatRate(puts.sent / puts.seconds)} puts/s, ${eClock.latencies.length} deliveries   p50 ${ms(eClock.percentile(50))}   p99 ${ms(etcdP99)}   p99.9 ${ms(eClock.percentile(99.9))}`);
  ctx.print(`    p99 deltamesh/etcd = ${(p99 / etcdP99).toFixed(2)}   (goal: p99 <= 50 ms and below etcd's)`);
  return { p99, etcdP99 };
}

/** Subscribers on `node` counting what they receive; the CPU the node spends while `writer` writes. */
async function fanoutRun(
  ctx: BenchContext,
  writer: BenchServer,
  node: ServerProcess,
  subs: number,
  changesPerSecond: number,
  label: string,
  tokenOf: (subscriber: number) => string | undefined = () => undefined,
) {
  let deltas = 0;
  const pool = channels(node.grpcAddress, Math.min(8, subs));
  const calls = Array.from({ length: subs }, (_, s) =>
    rawSubscribe(
      pool[s % pool.length]!,
      create(SubscribeRequestSchema, { collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } }),
      (bytes) => {
        deltas += countEvents(bytes).events;
      },
      tokenOf(s),
    ),
  );
  await sleep(3000);
  const recs = writer.recordClient();
  const BATCH = 50;
  let round = 0;
  let writing = true;
  const writes = (async () => {
    const start = performance.now();
    let done = 0;
    while (writing) {
      const due = ((performance.now() - start) / 1000) * changesPerSecond;
      if (done + BATCH > due) {
        await sleep(5);
        continue;
      }
      const ids = Array.from({ length: BATCH }, () => `fan-${Math.floor(Math.random() * 5000)}`);
      await recs.writeRecords(writeRequest([...new Set(ids)], () => "fan", round++)).catch((e: unknown) => ctx.log(`write failed: ${String(e)}`));
      done += BATCH;
    }
  })();
  await sleep(2000); // steady state
  const d0 = deltas;
  const c0 = await node.cpuMs();
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const cpu = (await node.cpuMs()) - c0;
  const got = deltas - d0;
  const secs = (performance.now() - t0) / 1000;
  writing = false;
  await writes;
  for (const c of calls) c.cancel();
  for (const c of pool) c.close();
  const perDeltaUs = (cpu * 1000) / Math.max(1, got);
  ctx.print(`    ${label.padEnd(16)} ${formatRate(got / secs).padStart(9)} deltas/s received   server CPU ${(cpu / secs / 10).toFixed(0)}% of a core   ${perDeltaUs.toFixed(2)} µs per delivered delta`);
  await sleep(1000);
  return perDeltaUs;
}

/**
 * Ten roles for the filtered run: row scopes by region (several regions, one,
 * none), field lists and masks differing by role and device class, as a CRM's
 * teams would have them. Principals of a role share its regions and device,
 * so each role is one view (encoded once for all its subscribers).
 */
const BENCH_ROLES = (() => {
  const everything = { collections: ["customers"], actions: ["read"] };
  const contact = ["name", "phone", "email", "region", "department", "level", "tags", "notes", "vip", "visits", "status"];
  const role = (grant: Record<string, unknown>) => ({ grants: [{ ...everything, ...grant }] });
  return {
    admin: { grants: [{ collections: ["*"], actions: ["read", "write", "delete", "export", "resolve_conflicts", "admin"], write_fields: ["*"], masks: { "*": "none" } }] },
    east_sales: role({ scope: "record.region in principal.regions", read_fields: contact }),
    north_sales: role({ scope: "record.region in principal.regions", read_fields: contact, masks: { email: "email" } }),
    south_sales: role({ scope: "record.region in principal.regions", read_fields: contact, masks: { phone: "phone" } }),
    central_sales: role({ scope: "record.region in principal.regions", read_fields: ["name", "region", "visits"] }),
    managers: role({ scope: "record.region in principal.regions", read_fields: contact, device_masks: { mobile: { phone: "phone", email: "email" } } }),
    service: role({ read_fields: ["name", "phone", "region", "visits", "status"], masks: { phone: "phone" } }),
    finance: role({ read_fields: ["name", "region", "credit_limit", "visits"] }),
    audit: role({ read_fields: ["name", "phone", "email", "region", "visits"], masks: { phone: "hash", email: "redact" } }),
    analytics: role({ read_fields: ["region", "department", "visits", "level"] }),
  };
})();
const BENCH_PRINCIPALS: { role: keyof typeof BENCH_ROLES; regions: string[]; device: string }[] = [
  { role: "east_sales", regions: ["east_china"], device: "mobile" },
  { role: "north_sales", regions: ["north_china"], device: "mobile" },
  { role: "south_sales", regions: ["south_china"], device: "desktop" },
  { role: "central_sales", regions: ["central_china", "southwest_china"], device: "mobile" },
  { role: "managers", regions: ["east_china", "north_china", "south_china"], device: "mobile" },
  { role: "service", regions: [], device: "console" },
  { role: "finance", regions: [], device: "desktop" },
  { role: "audit", regions: [], device: "desktop" },
  { role: "analytics", regions: [], device: "server" },
  { role: "admin", regions: [], device: "desktop" },
];

async function benchConfig(dir: string): Promise<string> {
  const doc = parseYaml(await readFile(DEFAULT_CONFIG_PATH, "utf8")) as Record<string, unknown>;
  doc.policies = { device_classes: ["desktop", "mobile", "console", "server"], roles: BENCH_ROLES };
  const file = path.join(dir, "stream-bench.yaml");
  await writeFile(file, stringifyYaml(doc));
  return file;
}

async function fanout(ctx: BenchContext, writer: BenchServer): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), "deltamesh-bench-stream-"));
  const node = await startServerProcess({
    entry: builtServer(ctx),
    databaseUrl: writer.databaseUrl,
    args: ["--insecure-dev-auth", "--config", await benchConfig(dir)],
    // BENCH_PROFILE_DIR=<dir>: a V8 CPU profile of the streaming node too.
    nodeArgs: process.env.BENCH_PROFILE_DIR ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(process.env.BENCH_PROFILE_DIR)}`] : [],
    onLog: (l) => ctx.log(`[stream node] ${l}`),
  });
  // 100 changes/s to 1,000 subscribers is 100,000 deltas/s: on this 2-core
  // machine the clients, the writing node and PostgreSQL share the cores with
  // the streaming node, and at 200/s the clients fall behind first.
  const rate = Number(process.env.BENCH_FANOUT_CHANGES ?? 100);
  ctx.print(`(2) fan-out: writes of ${rate} changes/s through another node; CPU of the streaming node only`);
  const one = await fanoutRun(ctx, writer, node, 1, rate, "1 subscriber");
  const many = await fanoutRun(ctx, writer, node, 1000, rate, "1,000 subscribers");
  // Development auth reads unsigned tokens: the principals of the ten roles.
  const tokens = BENCH_PRINCIPALS.map((p, i) =>
    unsignedToken({ sub: `bench-${i}`, roles: [p.role], attributes: { regions: p.regions, device_class: p.device } }),
  );
  const roles = await fanoutRun(ctx, writer, node, 1000, rate, "1,000 in 10 roles", (s) => tokens[s % tokens.length]);
  ctx.print(`    1,000 subscribers: ${many.toFixed(2)} µs per delta (goal <= 10); 1 subscriber: ${one.toFixed(2)} µs; ratio ${(many / one).toFixed(3)}`);
  ctx.print(`    filtered and masked over 10 roles: ${roles.toFixed(2)} µs per delta; over unfiltered ${(roles / many).toFixed(2)} (goal <= 1.20)`);
  await node.stop();
  await rm(dir, { recursive: true, force: true });
}

async function catchup(ctx: BenchContext, server: BenchServer): Promise<void> {
  const N = Number(process.env.BENCH_CATCHUP_CHANGES ?? 1_000_000);
  const db = new pg.Pool({ connectionString: server.databaseUrl, max: 2 });
  const tail = BigInt((await db.query<{ s: string | null }>("SELECT max(seq) AS s FROM changes")).rows[0]!.s ?? "0");
  ctx.log(`filling the log with ${N} changes...`);
  // Rows shaped like the write path's (delta with the fields' shared clock,
  // image, prior: services/store/record-store.ts toChangeRow), appended in
  // one statement: the fill is not what is measured.
  await db.query(
    `INSERT INTO changes (tenant, collection, record_id, old_version, new_version, delta, created, deleted, actor, source, device, client_mutation_id, image, prior)
     SELECT 'default', 'customers', 'cu-' || (g % 10000), g / 10000, g / 10000 + 1,
            jsonb_build_object('set', jsonb_build_object('visits', g, 'name', 'Customer ' || g), 'cleared', '[]'::jsonb,
                               'h', ((1795490000000 + g) * 65536)::text, 'k', jsonb_build_array('visits', 'name'),
                               'decisions', '[]'::jsonb)::json,
            g < 10000, false, 'bench', 'bench', 'bench', '',
            jsonb_build_object('visits', g, 'name', 'Customer ' || g, 'region', 'east_china')::json, jsonb_build_object('visits', g - 10000)::json
       FROM generate_series(0, $1::int - 1) g`,
    [N],
  );
  await db.query("VACUUM ANALYZE changes");
  // Let the node's tailer read the fill before measuring (its status says how far behind it is).
  const cluster = createGrpcJsClient(ClusterService, server.grpcAddress);
  for (;;) {
    const status = await cluster.getStatus({});
    const self = status.nodes.find((n) => n.nodeId === status.nodeId);
    if (self?.streamLag === 0n && status.changeLogTail >= tail + BigInt(N)) break;
    await sleep(500);
  }
  cluster.close();

  // Raw keyset read of the same rows.
  const t0 = performance.now();
  let rows = 0;
  for (let after = tail; ; ) {
    const res = await db.query<{ seq: string }>(
      "SELECT seq, tenant, collection, record_id, old_version, new_version, delta, created, deleted, commit_time, image, prior FROM changes WHERE seq > $1 ORDER BY seq LIMIT 1000",
      [after.toString()],
    );
    if (res.rows.length === 0) break;
    rows += res.rows.length;
    after = BigInt(res.rows[res.rows.length - 1]!.seq);
  }
  const rawRate = rows / ((performance.now() - t0) / 1000);
  await db.end();

  const cursor = encodeCursor({ databaseId: await databaseId(server.databaseUrl), seq: tail });
  const client = new grpc.Client(server.grpcAddress, grpc.credentials.createInsecure());
  let events = 0;
  let messages = 0;
  const t1 = performance.now();
  const c0 = await server.server.cpuMs();
  const pg0 = treeCpuMs(server.postgresPid);
  const client0 = process.cpuUsage();
  await new Promise<void>((resolve) => {
    const call = rawSubscribe(client, create(SubscribeRequestSchema, { collections: [{ collection: "customers" }], start: { case: "afterCursor", value: cursor } }), (bytes) => {
      messages++;
      events += countEvents(bytes).events;
      if (events >= N) {
        call.cancel();
        resolve();
      }
    });
  });
  const secs = (performance.now() - t1) / 1000;
  const cpu = (await server.server.cpuMs()) - c0;
  const pgCpu = treeCpuMs(server.postgresPid) - pg0;
  const clientCpu = process.cpuUsage(client0);
  client.close();
  const rate = events / secs;
  ctx.print(`(3) catch-up of ${formatRate(N)} changes`);
  ctx.print(`    stream: ${formatRate(rate)} deltas/s (${formatRate(messages)} messages, ${(events / messages).toFixed(0)} events each; server CPU ${((cpu * 1000) / events).toFixed(2)} µs per delta)`);
  const perDelta = (ms: number) => ((ms * 1000) / events).toFixed(2);
  ctx.print(`    CPU per delta: server ${perDelta(cpu)} µs, PostgreSQL ${perDelta(pgCpu)} µs, client ${perDelta((clientCpu.user + clientCpu.system) / 1000)} µs`);
  ctx.print(`    raw pg keyset read of the same rows: ${formatRate(rawRate)} rows/s`);
  ctx.print(`    stream/raw = ${(rate / rawRate).toFixed(2)}   (goal >= 100,000 deltas/s)`);
}

async function databaseId(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<{ value: string }>("SELECT value FROM deltamesh_meta WHERE key = 'database_id'")).rows[0]!.value;
  } finally {
    await c.end();
  }
}

export async function streamBench(ctx: BenchContext): Promise<void> {
  const part = process.env.BENCH_PART ?? "all";
  ctx.log(`running each part for ${SECONDS} s (BENCH_SECONDS to change; BENCH_PART=latency|fanout|catchup for one part)`);
  const server = await startBenchServer(ctx);
  try {
    if (part === "all" || part === "latency") await latency(ctx, server);
    if (part === "all" || part === "fanout") await fanout(ctx, server);
    if (part === "all" || part === "catchup") await catchup(ctx, server);
  } finally {
    await server.stop();
  }
}
