// The streaming race: many writers across two server processes plus slow
// transactions (a write pipeline in this process that holds its transaction
// open before and after sequencing its changes), while subscribers connect,
// disconnect and resume at random on either node, with and without filters.
// Every subscriber's copy must end equal to the database, with no gap, no
// duplicate and no per-record reordering along the way.
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChangeService, type ChangeEvent } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService, WriteRecordsRequestSchema } from "../../../gen/deltamesh/v1/records_pb.js";
import type { Value } from "../../../gen/deltamesh/v1/types_pb.js";
import { decodeCursor } from "../../../services/changes/cursor.js";
import { DEFAULT_CONFIG_PATH, readConfigFile } from "../../../services/config/file-source.js";
import type { createGrpcJsClient } from "../../../services/platform/transport/grpc-client.js";
import { grpcJsClientAs } from "../../support/node.js";
import { WritePipeline } from "../../../services/records/write-pipeline.js";
import { RecordStore, type WriteTx } from "../../../services/store/record-store.js";
import { testDatabaseUrl } from "../../support/env.js";
import { startServerProcess, type ServerProcess } from "../../support/processes/deltamesh.js";
import { logTail } from "../../support/retention.js";
import { enm, int, str } from "../../support/rpc.js";
import { copyJson, eventRecord, serverCopy } from "../../support/streams.js";

const WRITE_SECONDS = 8;
const RECORDS = 60;
const REGIONS = ["east_china", "north_china", "south_china"];

let nodes: ServerProcess[] = [];
let databaseUrl: string;
let slowStore: RecordStore;
const closers: (() => void)[] = [];
beforeAll(async () => {
  databaseUrl = await testDatabaseUrl();
  nodes = await Promise.all([startServerProcess({ databaseUrl }), startServerProcess({ databaseUrl })]);
  slowStore = await RecordStore.open({ url: databaseUrl });
});
afterAll(async () => {
  for (const c of closers) c();
  await slowStore?.close();
  await Promise.all(nodes.map((n) => n.stop()));
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const seqOf = (cursor: string) => decodeCursor(cursor).seq;

function grpc<S extends Parameters<typeof createGrpcJsClient>[0]>(service: S, node: ServerProcess) {
  const c = grpcJsClientAs(service, node.grpcAddress);
  closers.push(() => c.close());
  return c;
}

/** Writes through the API of a node until `until`: creates, updates (moving regions), deletes, restores. */
async function apiWriter(node: ServerProcess, until: number): Promise<number> {
  const rs = grpc(RecordService, node);
  let n = 0;
  while (Date.now() < until) {
    const id = `r${Math.floor(Math.random() * RECORDS)}`;
    const ref = { collection: "customers", target: { case: "id" as const, value: id } };
    try {
      if (Math.random() < 0.1) await rs.deleteRecord({ ref });
      else {
        const batch = 1 + Math.floor(Math.random() * 4);
        await rs.writeRecords(
          create(WriteRecordsRequestSchema, {
            mutations: Array.from({ length: batch }, (_, i) => ({
              ref: { collection: "customers", target: { case: "id" as const, value: i === 0 ? id : `r${Math.floor(Math.random() * RECORDS)}` } },
              set: { name: str(`C ${id}`), region: enm(pick(REGIONS)), visits: int(Math.floor(Math.random() * 1000)) },
              source: pick(["pos", "erp", "sales-app"]),
            })),
          }),
        );
      }
      n++;
    } catch {
      // deleting a missing record, or two mutations of one batch on one record colliding: fine
    }
  }
  return n;
}

/**
 * Slow transactions: a pipeline in this process whose transactions pause
 * in the middle (holding their record locks), and some pause again after
 * sequencing their changes (holding the sequencing lock), before committing.
 */
async function slowWriter(until: number): Promise<number> {
  const schemas = (await readConfigFile(DEFAULT_CONFIG_PATH)).schemas;
  const inner = slowStore.writeTransaction.bind(slowStore);
  slowStore.writeTransaction = <T,>(work: (tx: WriteTx) => Promise<T>) =>
    inner((tx) =>
      work({
        ...tx,
        read: async (req) => {
          const reads = await tx.read(req);
          await sleep(Math.random() * 80); // holding the batch's record locks
          return reads;
        },
        apply: async (e) => {
          // Left open so the pause holds the sequencing lock; writeTransaction commits after it.
          const applied = await tx.apply(e, { commit: false });
          if (Math.random() < 0.3) await sleep(Math.random() * 30);
          return applied;
        },
      }),
    );
  const pipeline = new WritePipeline(slowStore, () => schemas);
  let n = 0;
  await Promise.all(
    [0, 1].map(async () => {
      while (Date.now() < until) {
        const id = `r${Math.floor(Math.random() * RECORDS)}`;
        try {
          await pipeline.write({
            tenant: "default",
            actor: "slow",
            mutations: [{ collection: "customers", target: { id }, set: { name: `C ${id}`, region: pick(REGIONS), visits: n }, clear: [], baseVersion: 0, clientMutationId: "", source: "erp", device: "slow", delete: false }],
          });
          n++;
        } catch {
          // a collision retried out: fine
        }
      }
    }),
  );
  return n;
}

interface Follower {
  name: string;
  region: string | null;
  copy: Map<string, { id: string; version: bigint; fields: Record<string, Value> }>;
  /** Last version seen per record (kept after deletes and leaves). */
  last: Map<string, bigint>;
  cursor: string;
  violations: string[];
  sessions: number;
  events: number;
}

function applyEvent(f: Follower, e: ChangeEvent, snapshot: Map<string, { id: string; version: bigint; fields: Record<string, Value> }> | null): void {
  f.events++;
  if (e.cursor && f.cursor && seqOf(e.cursor) < seqOf(f.cursor)) f.violations.push(`cursor went back: ${e.cursor} after ${f.cursor}`);
  const r = eventRecord(e);
  if (r && e.kind.case !== "snapshotRecord") {
    const prev = f.last.get(r.id);
    if (prev !== undefined && r.version <= prev) f.violations.push(`${r.id}: version ${r.version} after ${prev} (${e.kind.case})`);
    if (f.region === null && prev !== undefined && r.version !== prev + 1n) f.violations.push(`${r.id}: gap from ${prev} to ${r.version}`);
    if (prev === undefined && e.kind.case === "upsert" && !e.kind.value.created) f.violations.push(`${r.id}: upsert of an unknown record`);
    f.last.set(r.id, r.version);
  }
  const k = e.kind;
  switch (k.case) {
    case "snapshotRecord":
      snapshot!.set(k.value.record!.id, { id: k.value.record!.id, version: k.value.record!.version, fields: { ...k.value.record!.fields } });
      f.last.set(k.value.record!.id, k.value.record!.version);
      break;
    case "snapshotEnd":
      f.copy = snapshot!;
      break;
    case "upsert": {
      const rec = f.copy.get(k.value.id) ?? { id: k.value.id, version: 0n, fields: {} };
      Object.assign(rec.fields, k.value.set);
      for (const c of k.value.cleared) delete rec.fields[c];
      rec.version = k.value.version;
      f.copy.set(k.value.id, rec);
      break;
    }
    case "enterScope":
      f.copy.set(k.value.record!.id, { id: k.value.record!.id, version: k.value.record!.version, fields: { ...k.value.record!.fields } });
      break;
    case "delete":
    case "leaveScope":
      f.copy.delete(k.value.id);
      break;
  }
  if (e.cursor) f.cursor = e.cursor;
}

/** Connects to random nodes for random spans until `done()` and the copy reached the log's tail. */
async function follow(f: Follower, clients: ReturnType<typeof grpc<typeof ChangeService>>[], done: () => bigint | null): Promise<void> {
  for (;;) {
    const target = done();
    if (target !== null && f.cursor && seqOf(f.cursor) >= target) return;
    const abort = new AbortController();
    const span = target === null ? 50 + Math.random() * 600 : 30_000;
    const timer = setTimeout(() => abort.abort(), span);
    f.sessions++;
    const snapshot = f.cursor ? null : new Map<string, { id: string; version: bigint; fields: Record<string, Value> }>();
    try {
      const stream = pick(clients).subscribe(
        {
          collections: [{ collection: "customers", filters: f.region ? [{ field: "region", value: enm(f.region) }] : [] }],
          start: f.cursor ? { case: "afterCursor", value: f.cursor } : { case: "snapshot", value: {} },
          heartbeatIntervalMs: 200,
        },
        { signal: abort.signal },
      );
      for await (const m of stream) {
        for (const e of m.events) applyEvent(f, e, snapshot);
        const t = done();
        if (t !== null && f.cursor && seqOf(f.cursor) >= t) break;
      }
    } catch (e) {
      if (!abort.signal.aborted) f.violations.push(`stream failed: ${String(e)}`);
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
  }
}

describe("streaming race", () => {
  it("subscribers connecting, leaving and resuming at random on two nodes end equal to the database, with no gap, duplicate or reordering", async () => {
    const streamClients = nodes.map((n) => grpc(ChangeService, n));
    // Some records exist before anyone subscribes.
    await grpc(RecordService, nodes[0]!).writeRecords({
      mutations: Array.from({ length: RECORDS / 2 }, (_, i) => ({ ref: { collection: "customers", target: { case: "id" as const, value: `r${i}` } }, set: { name: str(`C r${i}`), region: enm(pick(REGIONS)) }, source: "erp" })),
    });
    const followers: Follower[] = [null, null, null, ...REGIONS].map((region, i) => ({
      name: `${region ?? "all"}-${i}`,
      region,
      copy: new Map(),
      last: new Map(),
      cursor: "",
      violations: [],
      sessions: 0,
      events: 0,
    }));
    let target: bigint | null = null;
    const following = followers.map((f) => follow(f, streamClients, () => target));
    const until = Date.now() + WRITE_SECONDS * 1000;
    const writes = await Promise.all([...nodes.flatMap((n) => Array.from({ length: 6 }, () => apiWriter(n, until))), slowWriter(until)]);
    target = await logTail(databaseUrl);
    await Promise.all(following);

    // The log itself: one change per record version (two nodes creating one record at once once logged version 1 twice).
    const dups = await slowStore.pool.query("SELECT record_id, new_version FROM changes WHERE new_version > old_version GROUP BY 1, 2 HAVING count(*) > 1");
    expect(dups.rows).toEqual([]);
    const reader = grpc(RecordService, nodes[1]!);
    const all = await serverCopy(reader, "customers");
    console.info(
      `writes: ${writes.join(" + ")} (last one slow); changes: ${target}; ` +
        followers.map((f) => `${f.name}: ${f.sessions} sessions, ${f.events} events`).join("; "),
    );
    expect(writes.at(-1)).toBeGreaterThan(10);
    for (const f of followers) {
      expect(f.violations, f.name).toEqual([]);
      expect(f.sessions, f.name).toBeGreaterThan(3);
      const expected = f.region ? await serverCopy(reader, "customers", [{ field: "region", value: enm(f.region) }]) : all;
      expect(copyJson(f.copy.values()), f.name).toEqual(expected);
    }
  }, 120_000);
});
