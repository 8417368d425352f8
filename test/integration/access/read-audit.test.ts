// Sensitive values shown in clear are audited (read_unmasked) on every read
// path, not only GetRecord/ListRecords: digest buckets, conflict tickets and
// the conflict decisions of record history. Values shown masked are not.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService, AuditEventKind, type AuditEntry } from "../../../gen/deltamesh/v1/access_pb.js";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { ConflictService } from "../../../gen/deltamesh/v1/conflicts_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import type { Identity, TestNode } from "../../support/node.js";
import { byId, enm, str } from "../../support/rpc.js";
import { ADMIN, phone, seed, startAccessNode, uid } from "./helpers.js";

let node: TestNode;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A customer with a conflict ticket on id_number (manual_review): two writes from the same base version. */
async function withTicket(withPhone = true): Promise<{ id: string; ticketId: string }> {
  const id = await seed(node, uid("ra"), { region: enm("east_china"), ...(withPhone ? { phone: str(phone()) } : {}) });
  const rs = node.grpcJs(RecordService, ADMIN);
  await rs.writeRecords({ mutations: [{ ref: byId(id), set: { id_number: str("110105199001011111") }, baseVersion: 1n }] });
  const r = await rs.writeRecords({ mutations: [{ ref: byId(id), set: { id_number: str("110105199001012222") }, baseVersion: 1n }] });
  const ticketId = r.results[0]!.fields[0]!.ticketId;
  expect(ticketId).not.toBe("");
  return { id, ticketId };
}

/** read_unmasked entries of `actor` by `rpc`, once the audit log has them (entries are written asynchronously). */
async function unmaskedReads(actor: string, rpc: string, atLeast = 1): Promise<AuditEntry[]> {
  const as = node.grpcJs(AccessService, ADMIN);
  const find = async () => (await as.queryAuditLog({ kind: AuditEventKind.READ_UNMASKED, actor, pageSize: 1000 })).entries.filter((e) => e.rpc.endsWith(`/${rpc}`));
  await expect.poll(async () => (await find()).length, { timeout: 5000 }).toBeGreaterThanOrEqual(atLeast);
  return find();
}

/** No read_unmasked entry of `actor`, after the audit log had time to take one. */
async function noUnmaskedReads(actor: string): Promise<void> {
  await sleep(1000);
  expect((await node.grpcJs(AccessService, ADMIN).queryAuditLog({ kind: AuditEventKind.READ_UNMASKED, actor, pageSize: 1000 })).entries).toEqual([]);
}

const sales = (subject: string, device: string): Identity => ({ subject, roles: ["sales"], attributes: { regions: ["east_china"], device_class: device } });
const manager = (subject: string): Identity => ({ subject, roles: ["sales_manager"], attributes: { regions: ["east_china"], device_class: "desktop" } });

beforeAll(async () => {
  node = await startAccessNode();
});
afterAll(async () => {
  await node?.stop();
});

describe("GetDigestBucket", () => {
  it("audits the sensitive fields of the records it returns in clear, and not masked ones", async () => {
    const id = await seed(node, uid("digest"), { region: enm("east_china"), phone: str(phone()) });
    const desk = node.grpcJs(ChangeService, sales("ra-digest-desk", "desktop"));
    const b = await desk.getDigestBucket({ collection: "customers", bucketCount: 1, bucket: 0 });
    const mine = b.records.find((r) => r.id === id)!;
    expect(mine.fields.phone?.kind.value).toMatch(/^\+86139\d{8}$/);
    expect(mine.maskedFields).toEqual([]);
    const [entry] = await unmaskedReads("ra-digest-desk", "GetDigestBucket");
    expect(entry).toMatchObject({ collection: "customers", fields: ["phone"] });
    expect(entry!.recordIds).toContain(id);

    // On the phone app the number is masked: nothing to audit.
    const mobile = await node.grpcJs(ChangeService, sales("ra-digest-mobile", "mobile")).getDigestBucket({ collection: "customers", bucketCount: 1, bucket: 0 });
    expect(mobile.records.find((r) => r.id === id)!.maskedFields).toContain("phone");
    await noUnmaskedReads("ra-digest-mobile");
  });
});

describe("conflict tickets", () => {
  it("Get, List, Resolve and Dismiss audit candidate values shown in clear, not masked ones", async () => {
    const a = await withTicket();
    const b = await withTicket();
    // Sales managers settle their region's conflicts but see id_number masked: nothing to audit.
    const masked = await node.grpcJs(ConflictService, manager("ra-tickets-masked")).getConflictTicket({ ticketId: a.ticketId });
    expect(masked.ticket!.candidates.every((c) => c.masked)).toBe(true);

    const admin = node.grpcJs(ConflictService, { subject: "ra-tickets" });

    const got = await admin.getConflictTicket({ ticketId: a.ticketId });
    expect(got.ticket!.candidates.map((c) => c.value?.kind.value)).toContain("110105199001012222");
    const listed = await admin.listConflictTickets({ recordId: b.id });
    expect(listed.tickets.map((t) => t.id)).toEqual([b.ticketId]);
    await admin.resolveConflictTicket({ ticketId: a.ticketId, choice: { case: "candidateIndex", value: 0 } });
    await admin.dismissConflictTicket({ ticketId: b.ticketId });

    for (const [rpc, record] of [
      ["GetConflictTicket", a.id],
      ["ListConflictTickets", b.id],
      ["ResolveConflictTicket", a.id],
      ["DismissConflictTicket", b.id],
    ] as const) {
      const entries = await unmaskedReads("ra-tickets", rpc);
      expect(entries.map((e) => ({ collection: e.collection, recordIds: e.recordIds, fields: e.fields })), rpc).toEqual([
        { collection: "customers", recordIds: [record], fields: ["id_number"] },
      ]);
    }
    await noUnmaskedReads("ra-tickets-masked");
  });
});

describe("GetRecordHistory", () => {
  it("audits a page whose only sensitive value in clear is a conflict decision's proposed value", async () => {
    const { id } = await withTicket(false);
    const rs = node.grpcJs(RecordService, { subject: "ra-history" });
    // Page 1: the creation and the applied id_number; page 2: the change queued for review.
    const p1 = await rs.getRecordHistory({ ref: byId(id), pageSize: 2 });
    await unmaskedReads("ra-history", "GetRecordHistory", 1);
    const p2 = await rs.getRecordHistory({ ref: byId(id), pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.changes).toHaveLength(1);
    expect(Object.keys(p2.changes[0]!.set)).toEqual([]);
    expect(p2.changes[0]!.decisions.find((d) => d.field === "id_number")?.proposed?.kind.value).toBe("110105199001012222");
    const entries = await unmaskedReads("ra-history", "GetRecordHistory", 2);
    expect(entries.map((e) => ({ recordIds: e.recordIds, fields: e.fields }))).toEqual([
      { recordIds: [id], fields: ["id_number"] },
      { recordIds: [id], fields: ["id_number"] },
    ]);
  });
});
