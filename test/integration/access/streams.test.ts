// Change streams under the access policy: each subscriber sees only the
// records its row scope admits, only the fields it may read, masked as its
// device class requires; records moving in or out of scope, and policy
// changes made while the stream is open, arrive as enter_scope / leave_scope
// on the same stream within a second; refusals are clear and audited.
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService, AuditEventKind, type Policy } from "../../../gen/deltamesh/v1/access_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ChangeService, ScopeReason, type ChangeEvent, type CollectionQuerySchema } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { Identity, TestNode } from "../../support/node.js";
import { byId, enm, rejection, str } from "../../support/rpc.js";
import { openStream, recordEvents } from "../../support/streams.js";
import { signTestToken } from "../../support/tokens.js";
import { ADMIN, eastManager, eastSales, seed, startAccessNode, uid, type MutationInit } from "./helpers.js";

let node: TestNode;
beforeAll(async () => {
  node = await startAccessNode();
});
afterAll(async () => {
  await node?.stop();
});

const admin = () => node.connect(AccessService, ADMIN);
/** Writes as the administrator, from the desktop CRM (the seeds' source, so source-priority fields take the edit). */
const edit = (id: string, set: MutationInit["set"]) =>
  node.grpcJs(RecordService, ADMIN).writeRecords({ mutations: [{ ref: byId(id), set, source: "crm-desktop" }] });
const customersOf = (department: string) => ({ collection: "customers", filters: [{ field: "department", value: str(department) }] });
const since = (events: ChangeEvent[], from: number) => recordEvents(events.slice(from));

/** Replaces the policy with `edit` applied; returns a function that puts the original back. */
async function editPolicy(change: (p: Policy) => void): Promise<() => Promise<void>> {
  const { policy, revision } = await admin().getPolicy({});
  const changed = structuredClone(policy!) as Policy;
  change(changed);
  const put = await admin().putPolicy({ policy: changed, expectedRevision: revision });
  return async () => {
    await admin().putPolicy({ policy, expectedRevision: put.revision });
  };
}

describe("a stream shows what its subscriber may see", () => {
  it("row scope: only its regions' records; moving in and out of scope is enter_scope / leave_scope", async () => {
    const dept = uid("dept");
    const east = await seed(node, uid("east"), { region: enm("east_china"), department: str(dept) });
    const north = await seed(node, uid("north"), { region: enm("north_china"), department: str(dept) });
    const s = openStream(node.grpcJs(ChangeService, eastSales()), { collections: [customersOf(dept)], start: { case: "snapshot", value: {} } });
    try {
      await s.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
      expect(recordEvents(s.events)).toEqual([`snapshot ${east}@1`, "snapshot_end 1"]);

      let from = s.events.length;
      await edit(north, { notes: str("invisible") });
      await edit(north, { region: enm("east_china") }); // moves in
      await edit(east, { region: enm("north_china") }); // moves out
      await s.until((e) => since(e, from).length >= 2);
      expect(since(s.events, from)).toEqual([`enter ${north}@3`, `leave ${east}@2`]);
      const enter = s.events.slice(from).find((e) => e.kind.case === "enterScope")!;
      expect(enter.kind.case === "enterScope" && enter.kind.value.reason).toBe(ScopeReason.FIELDS);

      // A record created outside scope is never mentioned.
      from = s.events.length;
      await seed(node, uid("north2"), { region: enm("north_china"), department: str(dept) });
      await edit(north, { notes: str("seen") });
      await s.until((e) => since(e, from).length >= 1);
      expect(since(s.events, from)).toEqual([`upsert ${north}@4`]);
    } finally {
      s.close();
    }
  });

  it("fields: unreadable fields never arrive; contact data is masked on the phone and marked as masked", async () => {
    const dept = uid("dept");
    const id = await seed(node, uid("m"), { region: enm("east_china"), department: str(dept), phone: str("+8613812345678") });
    const mobile = openStream(node.grpcJs(ChangeService, eastSales("mobile")), { collections: [customersOf(dept)], start: { case: "snapshot", value: {} } });
    const desktop = openStream(node.grpcJs(ChangeService, eastSales("desktop")), { collections: [customersOf(dept)], start: { case: "snapshot", value: {} } });
    try {
      await mobile.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
      await desktop.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
      const snap = mobile.events[0]!;
      expect(snap.kind.case).toBe("snapshotRecord");
      const rec = snap.kind.case === "snapshotRecord" ? snap.kind.value.record! : null;
      expect(rec!.fields.phone?.kind).toEqual({ case: "stringValue", value: "+86 138****5678" });
      expect(rec!.maskedFields).toEqual(["phone"]);

      const from = [mobile.events.length, desktop.events.length] as const;
      // credit_limit is not readable to sales: a change of it alone sends nothing.
      await edit(id, { credit_limit: { kind: { case: "decimalValue", value: "5000" } } });
      await edit(id, { phone: str("+8613987654321"), notes: str("new number") });
      await mobile.until((e) => since(e, from[0]).length >= 2);
      await desktop.until((e) => since(e, from[1]).length >= 2);
      // The version moves on (copies stay contiguous), with nothing of the unreadable field.
      expect(since(mobile.events, from[0])).toEqual([`upsert ${id}@2`, `upsert ${id}@3`]);
      const hidden = mobile.events.slice(from[0]).find((e) => e.kind.case === "upsert")!;
      if (hidden.kind.case !== "upsert") throw new Error("expected an upsert");
      expect([hidden.kind.value.set, hidden.kind.value.clocks, hidden.kind.value.cleared]).toEqual([{}, {}, []]);
      const up = mobile.events.slice(from[0]).filter((e) => e.kind.case === "upsert")[1]!;
      if (up.kind.case !== "upsert") throw new Error("expected an upsert");
      expect(Object.keys(up.kind.value.set).sort()).toEqual(["notes", "phone"]);
      expect(up.kind.value.set.phone?.kind.value).toBe("+86 139****4321");
      expect(up.kind.value.maskedFields).toEqual(["phone"]);
      expect(Object.keys(up.kind.value.clocks).sort()).toEqual(["notes", "phone"]);
      const clear = desktop.events.slice(from[1]).filter((e) => e.kind.case === "upsert")[1]!;
      if (clear.kind.case !== "upsert") throw new Error("expected an upsert");
      expect(clear.kind.value.set.phone?.kind.value).toBe("+8613987654321");
      expect(clear.kind.value.maskedFields).toEqual([]);
    } finally {
      mobile.close();
      desktop.close();
    }
  });
});

describe("policy changes reach open streams", () => {
  it("revoking the region rule sends leave_scope within a second, restoring it enter_scope, without reconnecting", async () => {
    const dept = uid("dept");
    const a = await seed(node, uid("pa"), { region: enm("east_china"), department: str(dept), phone: str("+8613811112222") });
    const b = await seed(node, uid("pb"), { region: enm("east_china"), department: str(dept) });
    const s = openStream(node.grpcJs(ChangeService, eastSales("mobile")), { collections: [customersOf(dept)], start: { case: "snapshot", value: {} } });
    try {
      await s.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
      let from = s.events.length;
      let t0 = Date.now();
      const restore = await editPolicy((p) => {
        for (const g of p.roles.sales!.grants) g.scope = "record.owner == principal.sub";
      });
      await s.until((e) => since(e, from).length >= 2, 5000, "leave events");
      const revokedMs = Date.now() - t0;
      expect(since(s.events, from).sort()).toEqual([`leave ${a}@1`, `leave ${b}@1`].sort());
      expect(s.events.slice(from).every((e) => e.kind.case !== "leaveScope" || e.kind.value.reason === ScopeReason.POLICY)).toBe(true);
      expect(revokedMs).toBeLessThan(1000);

      // While revoked, its writes do not reach the stream.
      from = s.events.length;
      await edit(a, { notes: str("while revoked") });
      t0 = Date.now();
      await restore();
      await s.until((e) => since(e, from).length >= 2, 5000, "enter events");
      const restoredMs = Date.now() - t0;
      expect(since(s.events, from).sort()).toEqual([`enter ${a}@2`, `enter ${b}@1`].sort());
      const back = s.events.slice(from).find((e) => e.kind.case === "enterScope" && e.kind.value.record!.id === a)!;
      if (back.kind.case !== "enterScope") throw new Error("expected enter_scope");
      expect(back.kind.value.reason).toBe(ScopeReason.POLICY);
      expect(back.kind.value.record!.fields.notes?.kind.value).toBe("while revoked");
      expect(back.kind.value.record!.fields.phone?.kind.value).toBe("+86 138****2222");
      expect(back.kind.value.record!.maskedFields).toEqual(["phone"]);
      expect(restoredMs).toBeLessThan(1000);

      // And the same stream goes on.
      from = s.events.length;
      await edit(b, { notes: str("after") });
      await s.until((e) => since(e, from).length >= 1);
      expect(since(s.events, from)).toEqual([`upsert ${b}@2`]);
      expect(s.error).toBeNull();
      console.log(`[access] open stream: revoked in ${revokedMs} ms, restored in ${restoredMs} ms (policy write to event received)`);
    } finally {
      s.close();
    }
  });

  it("a change made while a stream is opening (its view built, its start not yet read) applies to it", async () => {
    const dept = uid("opening");
    const east = await seed(node, uid("east"), { region: enm("east_china"), department: str(dept) });
    // Widen the moment between the handler building the view and the stream
    // opening (one database read in practice) so the change lands inside it.
    const reader = (node.node.streams as unknown as { reader: { bounds: () => Promise<unknown> } }).reader;
    const bounds = reader.bounds.bind(reader);
    let entered!: () => void;
    const inGap = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    reader.bounds = async () => {
      entered();
      await held;
      return bounds();
    };
    const s = openStream(node.grpcJs(ChangeService, eastSales("desktop")), { collections: [customersOf(dept)], start: { case: "fromNow", value: {} } });
    let restore: (() => Promise<void>) | null = null;
    try {
      await inGap;
      reader.bounds = bounds;
      restore = await editPolicy((p) => {
        for (const g of p.roles.sales!.grants) g.scope = "record.owner == principal.sub";
      });
      release();
      await s.until((e) => e.length > 0, 10_000, "first heartbeat");
      const from = s.events.length;
      await edit(east, { notes: str("written after the revocation") });
      await edit(east, { region: enm("east_china"), owner: str("s-east") }); // the subscriber's own now: in view again
      await s.until((e) => since(e, from).length >= 1);
      expect(since(s.events, from)).toEqual([`enter ${east}@3`]);
    } finally {
      reader.bounds = bounds;
      release();
      s.close();
      await restore?.();
    }
  });

  it("a field made unreadable is dropped from the records the stream holds (sent again whole)", async () => {
    const dept = uid("dept");
    const id = await seed(node, uid("f"), { region: enm("east_china"), department: str(dept), notes: str("private") });
    const s = openStream(node.grpcJs(ChangeService, eastSales("desktop")), { collections: [customersOf(dept)], start: { case: "snapshot", value: {} } });
    try {
      await s.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
      const from = s.events.length;
      const restore = await editPolicy((p) => {
        const g = p.roles.sales!.grants[0]!;
        g.readFields = g.readFields.filter((f) => f !== "notes");
      });
      try {
        await s.until((e) => since(e, from).length >= 1, 5000, "re-enter");
        const ev = s.events.slice(from).find((e) => e.kind.case === "enterScope")!;
        if (ev.kind.case !== "enterScope") throw new Error("expected enter_scope");
        expect(ev.kind.value.record!.id).toBe(id);
        expect(ev.kind.value.record!.fields.notes).toBeUndefined();
        expect(ev.kind.value.record!.fields.name?.kind.value).toBe(id);
      } finally {
        await restore();
      }
    } finally {
      s.close();
    }
  });
});

describe("refusals", () => {
  const subscribe = (who: Identity, q: MessageInitShape<typeof CollectionQuerySchema>) =>
    rejection(
      (async () => {
        for await (const _ of node.grpcJs(ChangeService, who).subscribe({ collections: [q], start: { case: "fromNow", value: {} } })) return;
      })(),
    );

  it("ends with UNAUTHENTICATED (TOKEN_EXPIRED) when its token expires; a fresh token resumes from the last cursor", async () => {
    const dept = uid("dept");
    const id = await seed(node, uid("exp"), { region: enm("east_china"), department: str(dept) });
    const sales = eastSales();
    // Whole seconds from a rounded issue time: at least 3 s to open, write and deliver, even on a loaded machine.
    const shortLived: Identity = { authorization: `Bearer ${signTestToken({ sub: sales.subject, roles: sales.roles, attributes: sales.attributes }, { expiresIn: 4 })}` };
    const s = openStream(node.grpcJs(ChangeService, shortLived), { collections: [customersOf(dept)], start: { case: "fromNow", value: {} } });
    try {
      // "From now" starts where the opening heartbeat says: an edit before it may precede the stream.
      await s.until((e) => e.length >= 1, 10_000, "first heartbeat");
      await edit(id, { notes: str("before expiry") });
      await s.until((e) => recordEvents(e).length >= 1);
      await s.done(8_000);
      expect(s.error?.code).toBe(Code.Unauthenticated);
      expect(s.error?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TOKEN_EXPIRED");
    } finally {
      s.close();
    }
    // Written after the end: the resumed stream gets it, and nothing twice.
    await edit(id, { notes: str("after expiry") });
    const last = [...s.events].reverse().find((e) => e.cursor !== "")!.cursor;
    const resumed = openStream(node.grpcJs(ChangeService, sales), { collections: [customersOf(dept)], start: { case: "afterCursor", value: last } });
    try {
      await resumed.until((e) => recordEvents(e).length >= 1);
      expect([...recordEvents(s.events), ...recordEvents(resumed.events)]).toEqual([`upsert ${id}@2`, `upsert ${id}@3`]);
    } finally {
      resumed.close();
    }
  });

  it("a filter or selected field the subscriber may not read is PERMISSION_DENIED, naming it", async () => {
    const byCredit = await subscribe(eastSales(), { collection: "customers", filters: [{ field: "credit_limit", value: { kind: { case: "decimalValue", value: "1" } } }] });
    expect(byCredit.code).toBe(Code.PermissionDenied);
    expect(byCredit.findDetails(ErrorInfoSchema)[0]).toMatchObject({ reason: "FIELD_NOT_READABLE", metadata: { field: "credit_limit" } });
    const selecting = await subscribe(eastSales(), { ...customersOf("x"), fields: ["name", "id_number"] });
    expect(selecting.code).toBe(Code.PermissionDenied);
    expect(selecting.message).toContain("id_number");
  });

  it("a collection the subscriber may not read at all is PERMISSION_DENIED; no token is UNAUTHENTICATED", async () => {
    const finance = await subscribe({ subject: "f", roles: ["finance"] }, { collection: "contacts" });
    expect(finance.code).toBe(Code.PermissionDenied);
    const anonymous = await subscribe({ authorization: null }, customersOf("x"));
    expect(anonymous.code).toBe(Code.Unauthenticated);
  });

  it("digests count only the records in the caller's scope", async () => {
    const dept = uid("dept");
    await seed(node, uid("d1"), { region: enm("east_china"), department: str(dept) });
    await seed(node, uid("d2"), { region: enm("north_china"), department: str(dept) });
    const filters = [{ field: "department", value: str(dept) }];
    const mine = await node.grpcJs(ChangeService, eastSales()).getDigest({ collection: "customers", filters });
    const all = await node.grpcJs(ChangeService, ADMIN).getDigest({ collection: "customers", filters });
    expect([mine.recordCount, all.recordCount]).toEqual([1n, 2n]);
  });
});

describe("audit", () => {
  it("a stream that may show sensitive fields in clear is audited when it opens", async () => {
    const dept = uid("dept");
    const s = openStream(node.grpcJs(ChangeService, eastManager("desktop")), { collections: [customersOf(dept)], start: { case: "fromNow", value: {} } });
    try {
      await s.until((e) => e.length > 0 || s.messages > 0, 5000).catch(() => undefined);
      const as = node.grpcJs(AccessService, ADMIN);
      await expect
        .poll(async () => (await as.queryAuditLog({ kind: AuditEventKind.READ_UNMASKED, actor: "m-east" })).entries.filter((e) => e.rpc.endsWith("/Subscribe")).length, { timeout: 5000 })
        .toBe(1);
      const entry = (await as.queryAuditLog({ kind: AuditEventKind.READ_UNMASKED, actor: "m-east" })).entries.find((e) => e.rpc.endsWith("/Subscribe"))!;
      expect(entry).toMatchObject({ collection: "customers", deviceClass: "desktop", details: { stream: "subscribe" } });
      expect(entry.fields).toEqual(expect.arrayContaining(["email", "phone"]));
      expect(entry.fields).not.toContain("id_number"); // masked for managers
    } finally {
      s.close();
    }
  });
});
