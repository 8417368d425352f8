// ChangeService.Subscribe end to end on real nodes and a real PostgreSQL:
// start modes, event kinds, filters moving records in and out of view, field
// selection, heartbeats, batching, cursor checks, bad requests, and a second
// node on the same database.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChangeService, type ChangeEvent } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { ScopeReason } from "../../../gen/deltamesh/v1/changes_pb.js";
import type { MutationSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { decodeCursor, encodeCursor } from "../../../services/changes/cursor.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { logTail, simulateRetention } from "../../support/retention.js";
import { byId, enm, int, str } from "../../support/rpc.js";
import { brief, openStream, recordEvents, type OpenStream } from "../../support/streams.js";

type MutationInit = MessageInitShape<typeof MutationSchema>;

let node: TestNode;
let other: TestNode;
const streams: OpenStream[] = [];
beforeAll(async () => {
  node = await startTestNode();
  other = await startTestNode({ databaseUrl: node.node.databaseUrl });
});
afterAll(async () => {
  for (const s of streams) s.close();
  await other?.stop();
  await node?.stop();
});

let n = 0;
const uid = (p: string) => `${p}-${++n}`;
const write = (...mutations: MutationInit[]) => node.grpcJs(RecordService).writeRecords({ mutations });
const customer = (id: string, region = "east_china", extra: MutationInit["set"] = {}): MutationInit => ({
  ref: byId(id),
  set: { name: str(`Customer ${id}`), region: enm(region), ...extra },
  source: "crm-desktop",
  device: "test",
});
const open = (req: Parameters<typeof openStream>[1], t: TestNode = node) => {
  const s = openStream(t.grpcJs(ChangeService), req);
  streams.push(s);
  return s;
};
const about = (id: string) => (events: ChangeEvent[]) => recordEvents(events).filter((e) => e.includes(` ${id}@`));
const has = (id: string, count: number) => (events: ChangeEvent[]) => about(id)(events).length >= count;

describe("Subscribe", () => {
  it("from now: a first heartbeat gives the cursor, then upserts of changed fields, then a tombstone", async () => {
    const s = open({ collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
    await s.until((e) => e.length >= 1, 10_000, "first heartbeat");
    expect(s.events[0]!.kind.case).toBe("heartbeat");
    expect(s.events[0]!.cursor).toMatch(/^c1_/);

    const id = uid("now");
    const [created] = (await write(customer(id, "east_china", { visits: int(3) }))).results;
    await write({ ref: byId(id), set: { visits: int(4) }, baseVersion: 1n, source: "pos", device: "till-1" });
    await node.grpcJs(RecordService).deleteRecord({ ref: byId(id) });
    await s.until(has(id, 3), 10_000, "three events");
    expect(about(id)(s.events)).toEqual([`upsert ${id}@1`, `upsert ${id}@2`, `delete ${id}@3`]);

    const [c, u] = s.events.filter((e) => e.kind.case === "upsert" && e.kind.value.id === id);
    expect(c!.cursor).toBe(created!.cursor);
    if (c!.kind.case !== "upsert" || u!.kind.case !== "upsert") throw new Error("unreachable");
    expect(c!.kind.value.created).toBe(true);
    expect(Object.keys(c!.kind.value.set).sort()).toEqual(["name", "region", "visits"]);
    expect(u!.kind.value.created).toBe(false);
    expect(Object.keys(u!.kind.value.set)).toEqual(["visits"]);
    expect(u!.kind.value.set.visits!.kind).toEqual({ case: "intValue", value: 4n });
    expect(u!.kind.value.clocks.visits).toMatchObject({ version: 2n, source: "pos", device: "till-1" });
    expect(u!.kind.value.commitTime).toBeDefined();
    s.close();
  });

  it("a filtered field change moves the record out of one view (leave_scope) and into another (enter_scope with its fields)", async () => {
    const east = open({ collections: [{ collection: "customers", filters: [{ field: "region", value: enm("east_china") }] }], start: { case: "fromNow", value: {} } });
    const north = open({ collections: [{ collection: "customers", filters: [{ field: "region", value: enm("north_china") }] }], start: { case: "fromNow", value: {} } });
    await Promise.all([east, north].map((s) => s.until((e) => e.length > 0)));
    const id = uid("move");
    await write(customer(id, "east_china", { vip: { kind: { case: "boolValue", value: true } } }));
    await write({ ref: byId(id), set: { region: enm("north_china") }, baseVersion: 1n, source: "erp", device: "erp" });
    // A change that does not touch the filtered field: judged on the record's full state.
    await write({ ref: byId(id), set: { visits: int(9) }, baseVersion: 2n, source: "pos", device: "pos" });
    await north.until(has(id, 2), 10_000, "north events");
    await east.until(has(id, 2), 10_000, "east events");
    expect(about(id)(east.events)).toEqual([`upsert ${id}@1`, `leave ${id}@2`]);
    expect(about(id)(north.events)).toEqual([`enter ${id}@2`, `upsert ${id}@3`]);
    const leave = east.events.find((e) => e.kind.case === "leaveScope")!;
    const enter = north.events.find((e) => e.kind.case === "enterScope")!;
    if (leave.kind.case !== "leaveScope" || enter.kind.case !== "enterScope") throw new Error("unreachable");
    expect(leave.kind.value.reason).toBe(ScopeReason.FIELDS);
    expect(enter.kind.value.reason).toBe(ScopeReason.FIELDS);
    expect(leave.cursor).toBe(enter.cursor);
    const fields = enter.kind.value.record!.fields;
    expect(Object.keys(fields).sort()).toEqual(["name", "region", "vip"]);
    expect(fields.region!.kind).toEqual({ case: "enumValue", value: "north_china" });
    // Moving back: the reverse.
    await write({ ref: byId(id), set: { region: enm("east_china") }, baseVersion: 3n, source: "erp", device: "erp" });
    await east.until(has(id, 3));
    await north.until(has(id, 3));
    expect(about(id)(east.events).at(-1)).toBe(`enter ${id}@4`);
    expect(about(id)(north.events).at(-1)).toBe(`leave ${id}@4`);
  });

  it("field selection sends only the selected fields, and version bumps for the others", async () => {
    const s = open({ collections: [{ collection: "customers", fields: ["name"] }], start: { case: "fromNow", value: {} } });
    await s.until((e) => e.length > 0);
    const id = uid("sel");
    await write(customer(id));
    await write({ ref: byId(id), set: { visits: int(1) }, baseVersion: 1n, source: "pos", device: "pos" });
    await s.until(has(id, 2));
    const [a, b] = s.events.filter((e) => e.kind.case === "upsert" && e.kind.value.id === id);
    if (a!.kind.case !== "upsert" || b!.kind.case !== "upsert") throw new Error("unreachable");
    expect(Object.keys(a!.kind.value.set)).toEqual(["name"]);
    expect(Object.keys(a!.kind.value.clocks)).toEqual(["name"]);
    expect(b!.kind.value.set).toEqual({});
    expect(b!.kind.value.version).toBe(2n);
  });

  it("resumes after a cursor with exactly the changes that followed it", async () => {
    const id = uid("resume");
    const [first] = (await write(customer(id))).results;
    await write({ ref: byId(id), set: { visits: int(1) }, baseVersion: 1n, source: "pos", device: "pos" });
    await write({ ref: byId(id), set: { visits: int(2) }, baseVersion: 2n, source: "pos", device: "pos" });
    const s = open({ collections: [{ collection: "customers" }], start: { case: "afterCursor", value: first!.cursor } });
    await s.until(has(id, 2));
    expect(about(id)(s.events)).toEqual([`upsert ${id}@2`, `upsert ${id}@3`]);
    // Live after catch-up, no duplicate at the seam.
    await write({ ref: byId(id), set: { visits: int(3) }, baseVersion: 3n, source: "pos", device: "pos" });
    await s.until(has(id, 3));
    expect(about(id)(s.events)).toEqual([`upsert ${id}@2`, `upsert ${id}@3`, `upsert ${id}@4`]);
  });

  it("a node with no open stream moves to the log's end without reading the changes, and a stream opened later from an older cursor still gets every one", async () => {
    const quiet = await startTestNode({ databaseUrl: node.node.databaseUrl });
    try {
      const id = uid("quiet");
      const writeQuiet = (m: MutationInit) => quiet.grpcJs(RecordService).writeRecords({ mutations: [m] });
      const [first] = (await writeQuiet(customer(id))).results;
      let last = first!;
      for (let v = 1; v <= 20; v++) [last] = (await writeQuiet({ ref: byId(id), set: { visits: int(v) }, baseVersion: BigInt(v), source: "pos", device: "pos" })).results as [typeof last];
      const lastSeq = decodeCursor(last.cursor, "cursor").seq;
      await expect.poll(() => quiet.node.streams.streamStats().tailerSeq, { timeout: 10_000 }).toBe(lastSeq);
      // It holds none of them in memory: they were never read.
      expect(quiet.node.streams.hub.recentAfter(decodeCursor(first!.cursor, "cursor").seq, 100, lastSeq)).toBeNull();

      const s = open({ collections: [{ collection: "customers" }], start: { case: "afterCursor", value: first!.cursor } }, quiet);
      await s.until(has(id, 20));
      expect(about(id)(s.events)).toEqual(Array.from({ length: 20 }, (_, i) => `upsert ${id}@${i + 2}`));
      await writeQuiet({ ref: byId(id), set: { visits: int(21) }, baseVersion: 21n, source: "pos", device: "pos" });
      await s.until(has(id, 21));
      expect(about(id)(s.events).slice(19)).toEqual([`upsert ${id}@21`, `upsert ${id}@22`]);
      s.close();
    } finally {
      await quiet.stop();
    }
  });

  it("an unfiltered stream catching up from PostgreSQL (which skips record images) still gets a restored record whole", async () => {
    const quiet = await startTestNode({ databaseUrl: node.node.databaseUrl });
    let s: OpenStream | undefined;
    try {
      const id = uid("restore");
      const rs = quiet.grpcJs(RecordService);
      const [created] = (await rs.writeRecords({ mutations: [customer(id, "south_china", { visits: int(7) })] })).results;
      await rs.deleteRecord({ ref: byId(id) });
      await rs.writeRecords({ mutations: [{ ref: byId(id), set: { notes: str("back") }, source: "pos", device: "pos" }] });
      s = open({ collections: [{ collection: "customers" }], start: { case: "afterCursor", value: created!.cursor } }, quiet);
      await s.until(has(id, 2));
      expect(about(id)(s.events)).toEqual([`delete ${id}@2`, `enter ${id}@3`]);
      const mine = (kind: string) => s!.events.filter((e) => e.kind.case === kind && brief(e).includes(` ${id}@`));
      const [enter] = mine("enterScope");
      if (enter?.kind.case !== "enterScope") throw new Error("unreachable");
      expect(enter.kind.value.reason).toBe(ScopeReason.RESTORED);
      expect(Object.keys(enter.kind.value.record!.fields).sort()).toEqual(["name", "notes", "region", "visits"]);
      // A plain update caught up the same way carries its delta alone.
      await rs.writeRecords({ mutations: [{ ref: byId(id), set: { visits: int(8) }, baseVersion: 3n, source: "pos", device: "pos" }] });
      await s.until(has(id, 3));
      const [update] = mine("upsert");
      expect(update?.kind.case === "upsert" && Object.keys(update.kind.value.set)).toEqual(["visits"]);
    } finally {
      s?.close();
      await quiet.stop();
    }
  });

  it("catches up over many pages (each read while the previous one is sent) with every change once and in order", async () => {
    const prefix = uid("pages");
    const [mark] = (await write(customer(`${prefix}-mark`))).results;
    const ids = Array.from({ length: 900 }, (_, i) => `${prefix}-${i}`);
    for (let i = 0; i < ids.length; i += 300) await write(...ids.slice(i, i + 300).map((id) => customer(id)));
    const s = open({ collections: [{ collection: "customers" }], start: { case: "afterCursor", value: mark!.cursor } });
    const mine = (events: ChangeEvent[]) => recordEvents(events).filter((e) => e.includes(` ${prefix}-`) && !e.includes("-mark@"));
    await s.until((e) => mine(e).length >= ids.length, 20_000, "900 upserts");
    expect(mine(s.events)).toEqual(ids.map((id) => `upsert ${id}@1`));
    const cursors = s.events.filter((e) => e.kind.case === "upsert").map((e) => decodeCursor(e.cursor, "cursor").seq);
    expect(cursors.every((c, i) => i === 0 || c > cursors[i - 1]!)).toBe(true);
    s.close();
  });

  it("snapshot then stream: matching records at one cursor, then live changes after it", async () => {
    const dept = uid("dept");
    const ids = [uid("snap"), uid("snap"), uid("snap")];
    await write(...ids.map((id) => customer(id, "south_china", { department: str(dept) })));
    await write(customer(uid("snap-other"), "south_china", { department: str("elsewhere") }));
    const s = open({ collections: [{ collection: "customers", filters: [{ field: "department", value: str(dept) }] }], start: { case: "snapshot", value: {} } });
    await s.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
    const snapIds = s.events.filter((e) => e.kind.case === "snapshotRecord").map((e) => (e.kind.case === "snapshotRecord" ? e.kind.value.record!.id : ""));
    expect(snapIds.sort()).toEqual([...ids].sort());
    const end = s.events.find((e) => e.kind.case === "snapshotEnd")!;
    expect(end.kind.case === "snapshotEnd" && end.kind.value.recordCount).toBe(3n);
    expect(s.events.filter((e) => e.kind.case === "snapshotRecord").every((e) => e.cursor === "")).toBe(true);
    expect(end.cursor).toMatch(/^c1_/);
    await write({ ref: byId(ids[0]!), set: { visits: int(5) }, baseVersion: 1n, source: "pos", device: "pos" });
    await s.until(has(ids[0]!, 2));
    expect(about(ids[0]!)(s.events)).toEqual([`snapshot ${ids[0]}@1`, `upsert ${ids[0]}@2`]);
  });

  it("heartbeats keep a quiet filtered stream's cursor moving at the requested interval", async () => {
    const s = open({
      collections: [{ collection: "customers", filters: [{ field: "region", value: enm("overseas") }] }],
      start: { case: "fromNow", value: {} },
      heartbeatIntervalMs: 200,
    });
    await s.until((e) => e.length > 0);
    const startCursor = s.events[0]!.cursor;
    const [w] = (await write(customer(uid("hb"), "east_china"))).results;
    await s.until((e) => e.some((x) => x.kind.case === "heartbeat" && x.cursor === w!.cursor), 10_000, "a heartbeat at the unrelated write's cursor");
    expect(recordEvents(s.events)).toEqual([]);
    expect(startCursor).not.toBe(w!.cursor);
    const t0 = Date.now();
    const count = s.events.length;
    await s.until((e) => e.length >= count + 3, 10_000, "three more heartbeats");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
  });

  it("batches events: one write of 200 mutations reaches the stream in far fewer messages", async () => {
    const s = open({ collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
    await s.until((e) => e.length > 0);
    const before = s.messages;
    const ids = Array.from({ length: 200 }, () => uid("batch"));
    await write(...ids.map((id) => customer(id)));
    await s.until((e) => ids.every((id) => has(id, 1)(e)), 15_000, "200 upserts");
    expect(s.messages - before).toBeLessThan(20);
  });

  it("encodes each live event once per distinct view, not once per subscriber", async () => {
    const same = Array.from({ length: 5 }, () => open({ collections: [{ collection: "followups" }], start: { case: "fromNow", value: {} } }));
    const distinct = open({ collections: [{ collection: "followups", fields: ["summary"] }], start: { case: "fromNow", value: {} } });
    await Promise.all([...same, distinct].map((s) => s.until((e) => e.length > 0)));
    await new Promise((r) => setTimeout(r, 200)); // all attached to the hub (they are caught up)
    const hub = node.node.streams.hub;
    const before = hub.encodes;
    const id = uid("fu");
    await node.grpcJs(RecordService).writeRecords({
      mutations: [{ ref: byId(id, "followups"), set: { customer_id: str("c1"), owner: str("u1"), channel: enm("phone"), summary: str("called") }, source: "crm-desktop" }],
    });
    await Promise.all([...same, distinct].map((s) => s.until(has(id, 1))));
    expect(hub.encodes - before).toBe(2);
  });

  it("streams several collections at once, over the Connect client too", async () => {
    const s = openStream(node.connect(ChangeService), {
      collections: [{ collection: "contacts" }, { collection: "followups" }],
      start: { case: "fromNow", value: {} },
    });
    streams.push(s);
    await s.until((e) => e.length > 0);
    const c = uid("contact");
    const f = uid("fu");
    await write(
      { ref: byId(c, "contacts"), set: { customer_id: str("x"), name: str("Han Meimei") }, source: "crm-desktop" },
      { ref: byId(f, "followups"), set: { customer_id: str("x"), owner: str("u"), channel: enm("visit"), summary: str("met") }, source: "crm-desktop" },
      customer(uid("not-streamed")),
    );
    await s.until((e) => recordEvents(e).length >= 2);
    expect(recordEvents(s.events)).toEqual([`upsert ${c}@1`, `upsert ${f}@1`]);
  });

  it("a subscriber on another node sees writes made through this one", async () => {
    const s = open({ collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } }, other);
    await s.until((e) => e.length > 0);
    const id = uid("cross");
    await write(customer(id));
    await s.until(has(id, 1));
    expect(about(id)(s.events)).toEqual([`upsert ${id}@1`]);
  });
});

describe("Subscribe refuses", () => {
  const sub = (req: Parameters<typeof openStream>[1]) => {
    const s = open(req);
    return s.done().then(() => s);
  };

  it("a cursor older than the retention floor with CURSOR_EXPIRED and the floor in details, and resumes from the floor", async () => {
    // Its own database: retention here must not disturb the other tests.
    const t = await startTestNode();
    try {
      const client = t.grpcJs(RecordService);
      const ids = [uid("old"), uid("old"), uid("old")];
      const results = [];
      for (const id of ids) results.push((await client.writeRecords({ mutations: [customer(id)] })).results[0]!);
      const floor = (await logTail(t.node.databaseUrl)) - 1n; // keep only the last change
      await simulateRetention(t.node.databaseUrl, floor);
      const expired = openStream(t.grpcJs(ChangeService), { collections: [{ collection: "customers" }], start: { case: "afterCursor", value: results[0]!.cursor } });
      await expired.done();
      expect(expired.error?.code).toBe(Code.FailedPrecondition);
      const info = expired.error!.findDetails(ErrorInfoSchema)[0]!;
      expect(info.reason).toBe("CURSOR_EXPIRED");
      expect(info.metadata.floor_seq).toBe(floor.toString());
      expect(info.metadata.floor).toBe(results[1]!.cursor);
      // The floor itself is a valid resume point.
      const ok = openStream(t.grpcJs(ChangeService), { collections: [{ collection: "customers" }], start: { case: "afterCursor", value: info.metadata.floor! } });
      await ok.until((e) => recordEvents(e).length >= 1);
      expect(recordEvents(ok.events)).toEqual([`upsert ${ids[2]}@1`]);
      ok.close();
    } finally {
      await t.stop();
    }
  });

  it("a cursor from another database, and one ahead of the log, with CURSOR_EXPIRED", async () => {
    const foreign = encodeCursor({ databaseId: "0190a6f0-0000-7000-8000-000000000001", seq: 1n });
    const ahead = encodeCursor({ databaseId: node.node.store.databaseId, seq: 1n << 40n });
    for (const cursor of [foreign, ahead]) {
      const s = await sub({ collections: [{ collection: "customers" }], start: { case: "afterCursor", value: cursor } });
      expect(s.error?.code).toBe(Code.FailedPrecondition);
      expect(s.error!.findDetails(ErrorInfoSchema)[0]!.reason).toBe("CURSOR_EXPIRED");
      expect(s.events).toEqual([]);
    }
  });

  it("bad requests with INVALID_ARGUMENT or NOT_FOUND and every problem listed", async () => {
    const cases: [Parameters<typeof openStream>[1], Code, string[]][] = [
      [{ collections: [], start: { case: "fromNow", value: {} } }, Code.InvalidArgument, ["collections"]],
      [{ collections: [{ collection: "customers" }] }, Code.InvalidArgument, ["start"]],
      [{ collections: [{ collection: "customers" }], start: { case: "afterCursor", value: "nope" } }, Code.InvalidArgument, ["after_cursor"]],
      [
        {
          collections: [{ collection: "customers", filters: [{ field: "nope", value: str("x") }, { field: "region", value: enm("mars") }], fields: ["zzz"] }],
          start: { case: "fromNow", value: {} },
          heartbeatIntervalMs: 5,
        },
        Code.InvalidArgument,
        ["collections[0].filters[0].field", "collections[0].filters[1].value", "collections[0].fields[0]", "heartbeat_interval_ms"],
      ],
      [{ collections: [{ collection: "customers" }, { collection: "customers" }], start: { case: "fromNow", value: {} } }, Code.InvalidArgument, ["collections[1].collection"]],
      [{ collections: [{ collection: "planets" }], start: { case: "fromNow", value: {} } }, Code.NotFound, []],
    ];
    for (const [req, code, fields] of cases) {
      const s = await sub(req);
      expect(s.error?.code, JSON.stringify(fields)).toBe(code);
      expect(s.events).toEqual([]);
      if (fields.length > 0) expect(s.error!.findDetails(BadRequestSchema)[0]!.fieldViolations.map((v) => v.field)).toEqual(fields);
    }
  });
});

describe("event order", () => {
  it("every event carries a cursor and per record versions strictly increase", async () => {
    const s = open({ collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
    await s.until((e) => e.length > 0);
    const ids = [uid("ord"), uid("ord")];
    await write(...ids.map((id) => customer(id)));
    for (let v = 1; v <= 5; v++) await write(...ids.map((id) => ({ ref: byId(id), set: { visits: int(v) }, baseVersion: BigInt(v), source: "pos", device: "pos" })));
    await s.until((e) => ids.every((id) => has(id, 6)(e)));
    for (const id of ids) expect(about(id)(s.events)).toEqual([1, 2, 3, 4, 5, 6].map((v) => `upsert ${id}@${v}`));
    expect(s.events.every((e) => e.cursor !== "")).toBe(true);
    void brief;
  });
});
