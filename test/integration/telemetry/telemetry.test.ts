// Telemetry of a real node: the SDK as the CLI starts it (with an in-memory
// span exporter added), a node on a real PostgreSQL, clients over real
// sockets on both transports, and the real Prometheus endpoint scraped.
import { readFileSync } from "node:fs";
import pg from "pg";
import { Code } from "@connectrpc/connect";
import { SpanKind } from "@opentelemetry/api";
import type { ReadableSpan } from "@opentelemetry/sdk-trace";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { FieldOutcome_Status } from "../../../gen/deltamesh/v1/types_pb.js";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { openStream } from "../../support/streams.js";
import { testDatabaseUrl } from "../../support/env.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { byId, enm, rejection, str } from "../../support/rpc.js";
import { parsePrometheus, promValue, startTestTelemetry, type PromSample, type TestTelemetry } from "../../support/telemetry.js";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN = "b7ad6b7169203331";
const WRITE = "deltamesh.v1.RecordService/WriteRecords";

let t: TestTelemetry;
let node: TestNode;
let databaseUrl: string;
beforeAll(async () => {
  t = await startTestTelemetry({ prometheus: true });
  databaseUrl = await testDatabaseUrl();
  node = await startTestNode({ databaseUrl });
});
afterAll(async () => {
  await node?.stop();
  await t?.shutdown();
});

const isPg = (s: ReadableSpan) => s.attributes["db.system"] === "postgresql" || s.attributes["db.system.name"] === "postgresql";
const childrenOf = (spans: ReadableSpan[], parent: ReadableSpan) =>
  spans.filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId);

async function scrape(): Promise<PromSample[]> {
  return parsePrometheus(await t.scrape());
}

describe("traces", () => {
  it("a write is an RPC span in the caller's trace, with the batch transaction and its queries under it", async () => {
    const rs = node.connect(RecordService);
    await rs.writeRecords(
      { mutations: [{ ref: byId(`trace-${process.pid}`), set: { name: str("Li Lei"), region: enm("east_china") } }] },
      { headers: { traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` } },
    );
    const spans = (await t.spans()).filter((s) => s.spanContext().traceId === TRACE_ID);
    const rpc = spans.find((s) => s.name === WRITE);
    expect(rpc, "server span").toBeDefined();
    expect(rpc!.kind).toBe(SpanKind.SERVER);
    expect(rpc!.parentSpanContext?.spanId).toBe(CALLER_SPAN);
    expect(rpc!.attributes).toMatchObject({ "rpc.system.name": "grpc", "rpc.method": WRITE, "rpc.status_code": "OK" });

    const [batch] = childrenOf(spans, rpc!).filter((s) => s.name === "deltamesh.write.batch");
    expect(batch, "write batch span under the RPC").toBeDefined();
    expect(batch!.attributes).toMatchObject({ "deltamesh.batch.requests": 1, "deltamesh.batch.mutations": 1 });

    const queries = childrenOf(spans, batch!).filter(isPg);
    expect(queries.length, "pg spans under the batch").toBeGreaterThanOrEqual(2);
    // The transaction's queries, not stray ones: each lies within the batch span.
    const t0 = (x: ReadableSpan) => x.startTime[0] * 1e9 + x.startTime[1];
    const t1 = (x: ReadableSpan) => x.endTime[0] * 1e9 + x.endTime[1];
    // (The instrumentation ends a query's span in the driver's callback, which
    // can run just after the batch span has ended: allow 5 ms at the end.)
    for (const q of queries) expect(t0(q) >= t0(batch!) && t1(q) <= t1(batch!) + 5e6).toBe(true);
  });

  it("a stream delivery is a span under the Subscribe call's span, counting its events", async () => {
    const trace = "1af7651916cd43dd8448eb211c80319d";
    const s = openStream(node.grpcJs(ChangeService), { collections: [{ collection: "customers" }], start: { case: "snapshot", value: {} } }, { traceparent: `00-${trace}-${CALLER_SPAN}-01` });
    try {
      await s.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
    } finally {
      s.close();
    }
    // The call's span ends (and is exported) when the stream does.
    await expect.poll(async () => (await t.spans()).some((x) => x.spanContext().traceId === trace && x.name === "deltamesh.v1.ChangeService/Subscribe")).toBe(true);
    const spans = (await t.spans()).filter((x) => x.spanContext().traceId === trace);
    const call = spans.find((x) => x.name === "deltamesh.v1.ChangeService/Subscribe")!;
    expect(call, "Subscribe span").toBeDefined();
    const deliveries = childrenOf(spans, call).filter((x) => x.name === "deltamesh.stream.deliver");
    expect(deliveries.length).toBeGreaterThan(0);
    const events = deliveries.reduce((n, d) => n + Number(d.attributes["deltamesh.stream.events"]), 0);
    expect(events).toBe(s.events.length);
  });

  it("a Connect call over HTTP/1.1 is a connectrpc span; NOT_FOUND is recorded but is no server error", async () => {
    const before = (await t.spans()).length;
    const rs = node.connectWeb(RecordService);
    const err = await rejection(rs.getRecord({ ref: byId("nobody-here") }));
    expect(err.code).toBe(Code.NotFound);
    const span = (await t.spans()).slice(before).find((s) => s.name === "deltamesh.v1.RecordService/GetRecord");
    expect(span?.attributes).toMatchObject({ "rpc.system.name": "connectrpc", "rpc.status_code": "NOT_FOUND" });
    expect(span?.status.code).toBe(0); // UNSET
  });
});

describe("metrics", () => {
  it("count writes, batches and conflicts by policy, and show them on the Prometheus endpoint", async () => {
    const rs = node.grpcJs(RecordService);
    const id = `conflict-${process.pid}`;
    const write = async (set: Record<string, ReturnType<typeof str>>, baseVersion?: bigint) =>
      (await rs.writeRecords({ mutations: [{ ref: byId(id), set, ...(baseVersion !== undefined ? { baseVersion } : {}) }] })).results[0]!;
    const before = await scrape();
    await write({ name: str("Han Meimei"), region: enm("east_china"), owner: str("alice") }); // v1
    await write({ owner: str("bob") }, 1n); // v2: nobody else changed owner since v1
    const r = await write({ owner: str("carol") }, 1n); // concurrent with v2: owner is manual_review
    expect(r.fields.find((f) => f.field === "owner")?.status).toBe(FieldOutcome_Status.QUEUED_FOR_REVIEW);

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) => promValue(after, name, labels) - promValue(before, name, labels);
    expect(delta("deltamesh_write_mutations_total", { outcome: "applied" })).toBe(3);
    expect(delta("deltamesh_conflicts_total", { policy: "manual_review", outcome: "queued_for_review" })).toBe(1);
    expect(delta("deltamesh_write_batch_size_count")).toBe(3);
    expect(delta("deltamesh_write_batch_size_sum")).toBe(3);
    expect(delta("deltamesh_write_batch_duration_count", { outcome: "ok" })).toBe(3);
    expect(after.some((s) => s.name === "deltamesh_write_batch_duration_bucket" && s.labels.le === "0.005")).toBe(true);
    expect(delta("rpc_server_call_duration_count", { rpc_method: WRITE, rpc_system_name: "grpc", rpc_status_code: "OK" })).toBe(3);
  });

  it("count write batches merged from the records a node keeps", async () => {
    const rs = node.grpcJs(RecordService);
    const id = `kept-${process.pid}`;
    const before = await scrape();
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { name: str("Li Lei"), region: enm("east_china") } }] }); // read under lock, then kept
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { name: str("Li Lei (ERP)") } }] }); // merged from the kept record
    const after = await scrape();
    expect(promValue(after, "deltamesh_record_cache_batches_total", { outcome: "unlocked" }) - promValue(before, "deltamesh_record_cache_batches_total", { outcome: "unlocked" })).toBe(1);
    expect(promValue(after, "deltamesh_record_cache_batches_total", { outcome: "stale" })).toBe(promValue(before, "deltamesh_record_cache_batches_total", { outcome: "stale" }));
    expect(promValue(after, "deltamesh_record_cache_records")).toBeGreaterThanOrEqual(1);
  });

  it("label a batch attempt retried after another writer changed a kept record as retry, not error", async () => {
    const rs = node.grpcJs(RecordService);
    const id = `retried-${process.pid}`;
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { name: str("Han Mei"), region: enm("east_china") } }] });
    // Another writer (as another node would) changes the record this node keeps.
    const db = new pg.Client(databaseUrl);
    await db.connect();
    try {
      const bumped = await db.query("UPDATE records SET version = version + 1, update_time = now() WHERE tenant = 'default' AND collection = 'customers' AND id = $1", [id]);
      expect(bumped.rowCount).toBe(1);
    } finally {
      await db.end();
    }
    const before = await scrape();
    const r = await rs.writeRecords({ mutations: [{ ref: byId(id), set: { name: str("Han Meimei") } }] });
    expect(r.results[0]!.version).toBe(3n);
    const after = await scrape();
    const delta = (name: string, labels: Record<string, string>) => promValue(after, name, labels) - promValue(before, name, labels);
    expect(delta("deltamesh_record_cache_batches_total", { outcome: "stale" })).toBe(1);
    expect(delta("deltamesh_write_batch_duration_count", { outcome: "retry" })).toBe(1);
    expect(delta("deltamesh_write_batch_duration_count", { outcome: "ok" })).toBe(1);
    expect(delta("deltamesh_write_batch_duration_count", { outcome: "error" })).toBe(0);
  });

  it("report the config revision, open streams and their lag, leadership, and delivered events", async () => {
    const before = await scrape();
    const s = openStream(node.grpcJs(ChangeService), { collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
    try {
      await s.until((e) => e.length > 0); // the opening heartbeat
      await node.grpcJs(RecordService).writeRecords({ mutations: [{ ref: byId(`gauge-${process.pid}`), set: { name: str("Wei"), region: enm("east_china") } }] });
      await s.until((e) => e.some((x) => x.kind.case === "upsert"));
      await expect.poll(async () => promValue(await scrape(), "deltamesh_stream_events_total") - promValue(before, "deltamesh_stream_events_total")).toBeGreaterThanOrEqual(2);
      const open = await scrape();
      expect(promValue(open, "deltamesh_config_info", { revision: node.node.config.current().revision })).toBe(1);
      expect(promValue(open, "deltamesh_streams_open")).toBe(1);
      expect(promValue(open, "deltamesh_stream_lag")).toBe(0); // caught up
      expect(promValue(open, "deltamesh_cluster_leader")).toBe(1); // standalone: its own leader
      // The resource identifies the node.
      expect(open.find((x) => x.name === "target_info")?.labels).toMatchObject({ service_name: "deltamesh", service_instance_id: "test-node" });
    } finally {
      s.close();
    }
    await expect.poll(async () => promValue(await scrape(), "deltamesh_streams_open")).toBe(0);
  });

  it("leave health probes out of the RPC metrics, and answer 404 off /metrics", async () => {
    const health = node.grpcJs(Health);
    await health.check({ service: "" });
    const s = await scrape();
    expect(s.filter((x) => x.labels.rpc_method?.startsWith("grpc.health.v1."))).toEqual([]);
    const res = await fetch(`http://127.0.0.1:${t.telemetry.metricsPort}/other`);
    expect(res.status).toBe(404);
  });

  it("cover every metric the Grafana dashboard queries", async () => {
    // The node registers its gauges; the test above delivered stream events.
    const names = new Set((await scrape()).map((x) => x.name));
    const dashboard = JSON.parse(readFileSync(new URL("../../../deploy/grafana/deltamesh.json", import.meta.url), "utf8")) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    const used = new Set<string>();
    for (const p of dashboard.panels) for (const target of p.targets ?? []) for (const m of target.expr.matchAll(/\b(deltamesh_\w+|rpc_server_\w+)/g)) used.add(m[1]!);
    expect(used.size).toBeGreaterThanOrEqual(8);
    expect([...used].filter((n) => !names.has(n))).toEqual([]);
  });
});
