// The permissions seam: swapping the view of open streams (as a policy change
// will) sends leave_scope / enter_scope (reason POLICY) without reconnecting,
// and the stream continues under the new view with nothing lost, even while
// writes go on.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicate } from "../../../clients/typescript/replicate.js";
import { ChangeService, ScopeReason } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import type { MutationSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { FilterView, type SubscriberView } from "../../../services/changes/view.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { bool, byId, enm, int, str } from "../../support/rpc.js";
import { copyJson, openStream, recordEvents, serverCopy } from "../../support/streams.js";

type MutationInit = MessageInitShape<typeof MutationSchema>;

let node: TestNode;
beforeAll(async () => {
  node = await startTestNode();
});
afterAll(async () => {
  await node?.stop();
});

let n = 0;
const uid = (p: string) => `${p}-${++n}`;
const customer = (id: string, region: string, vip: boolean, extra: MutationInit["set"] = {}): MutationInit => ({
  ref: byId(id),
  set: { name: str(`Customer ${id}`), region: enm(region), vip: bool(vip), ...extra },
  source: "crm-desktop",
});
const filter = (equals: Record<string, string | boolean>, fields: string[] | null = null): SubscriberView =>
  new FilterView("default", [{ collection: "contacts", equals: {}, fields: null }, { collection: "customers", equals, fields }]);
/** Swaps every open stream whose view streams customers. */
const swapTo = (view: SubscriberView) => node.node.streams.replaceViews((v) => (v.collections.includes("customers") ? view : null));

describe("view swaps on open streams", () => {
  it("emit leave_scope and enter_scope for exactly the records whose visibility or visible fields changed", async () => {
    const dept = uid("d");
    const [a, b, c] = [uid("a"), uid("b"), uid("c")];
    const rec = node.grpcJs(RecordService);
    await rec.writeRecords({
      mutations: [customer(a, "east_china", true, { department: str(dept) }), customer(b, "east_china", false, { department: str(dept) }), customer(c, "north_china", true, { department: str(dept) })],
    });
    const s = openStream(node.grpcJs(ChangeService), {
      collections: [{ collection: "customers", filters: [{ field: "department", value: str(dept) }] }, { collection: "contacts" }],
      start: { case: "fromNow", value: {} },
    });
    try {
      await s.until((e) => e.length > 0);
      const base = { department: dept };
      const mark = () => s.events.length;

      let from = mark();
      let t0 = Date.now();
      expect(swapTo(filter({ ...base, region: "east_china" }))).toBe(1);
      await s.until((e) => recordEvents(e.slice(from)).length >= 1, 5000, "leave c");
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(recordEvents(s.events.slice(from))).toEqual([`leave ${c}@1`]);
      const leave = s.events.slice(from).find((e) => e.kind.case === "leaveScope")!;
      expect(leave.kind.case === "leaveScope" && leave.kind.value.reason).toBe(ScopeReason.POLICY);

      from = mark();
      t0 = Date.now();
      swapTo(filter({ ...base, region: "east_china" }, ["name"]));
      await s.until((e) => recordEvents(e.slice(from)).length >= 2, 5000, "re-enter a and b with fewer fields");
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(recordEvents(s.events.slice(from)).sort()).toEqual([`enter ${a}@1`, `enter ${b}@1`].sort());
      for (const e of s.events.slice(from)) if (e.kind.case === "enterScope") expect(Object.keys(e.kind.value.record!.fields)).toEqual(["name"]);

      from = mark();
      swapTo(filter({ ...base, vip: true }));
      await s.until((e) => recordEvents(e.slice(from)).length >= 3, 5000, "vip swap");
      expect(recordEvents(s.events.slice(from)).sort()).toEqual([`enter ${a}@1`, `enter ${c}@1`, `leave ${b}@1`].sort());

      // Later changes are judged under the new view.
      from = mark();
      await rec.writeRecords({ mutations: [{ ref: byId(b), set: { vip: bool(true) }, baseVersion: 1n, source: "crm-desktop" }, { ref: byId(a), set: { visits: int(2) }, baseVersion: 1n, source: "pos" }] });
      await s.until((e) => recordEvents(e.slice(from)).length >= 2);
      expect(recordEvents(s.events.slice(from))).toEqual([`enter ${b}@2`, `upsert ${a}@2`]);
      expect(s.ended).toBe(false);
    } finally {
      s.close();
    }
  });

  it("a replica stays exact across swaps made while writes go on", async () => {
    const rec = node.grpcJs(RecordService);
    const ids = Array.from({ length: 40 }, (_, i) => uid(`w${i}`));
    await rec.writeRecords({ mutations: ids.map((id, i) => customer(id, i % 2 ? "east_china" : "north_china", i % 3 === 0)) });
    const replica = replicate("customers", { clients: node.grpcJs(ChangeService) });
    try {
      await replica.ready;
      let writing = true;
      const writer = (async () => {
        for (let round = 0; writing; round++) {
          const id = ids[round % ids.length]!;
          await rec.writeRecords({ mutations: [{ ref: byId(id), set: { region: enm(round % 2 ? "north_china" : "east_china"), visits: int(round) }, source: "erp" }] });
        }
      })();
      for (const view of [filter({ region: "north_china" }), filter({ vip: true }), filter({ region: "east_china" })]) {
        expect(swapTo(view)).toBe(1);
        await new Promise((r) => setTimeout(r, 150));
      }
      writing = false;
      await writer;
      const [end] = (await rec.writeRecords({ mutations: [customer(uid("end"), "east_china", false)] })).results;
      await replica.waitForCursor(end!.cursor);
      expect(copyJson(replica.records.values())).toEqual(await serverCopy(rec, "customers", [{ field: "region", value: enm("east_china") }]));
      expect(replica.stats.unknownRecordUpserts).toBe(0);
    } finally {
      await replica.close();
    }
  });
});
