// Conflict handling end to end: per-field policies decided by a real node on
// a real PostgreSQL, the review queue, and resolutions through the write path.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConflictService, TicketStatus } from "../../../gen/deltamesh/v1/conflicts_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { FieldOutcome_Status, type MutationSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { dec, enm, rejection, str, type ValueInit } from "../../support/rpc.js";
import { forgedToken, refusal, tokenBytes } from "../../support/page-tokens.js";

const ref = (id: string) => ({ collection: "customers", target: { case: "id" as const, value: id } });

let node: TestNode;
beforeAll(async () => {
  node = await startTestNode();
});
afterAll(async () => {
  await node?.stop();
});


let n = 0;
const uid = () => `cf-${process.pid}-${++n}`;

describe.each([
  ["grpc-js", () => ({ rs: node.grpcJs(RecordService), cs: node.grpcJs(ConflictService) })],
  ["connect", () => ({ rs: node.connect(RecordService), cs: node.connect(ConflictService) })],
] as const)("conflicts via %s", (_name, clients) => {
  let rs: ReturnType<typeof clients>["rs"];
  let cs: ReturnType<typeof clients>["cs"];
  beforeAll(() => ({ rs, cs } = clients()));

  const write = async (m: MessageInitShape<typeof MutationSchema>) => (await rs.writeRecords({ mutations: [m] })).results[0]!;
  const create = async (set: Record<string, ValueInit>, source = "crm-desktop") => {
    const id = uid();
    await write({ ref: ref(id), set: { name: str("Zhang San"), region: enm("east_china"), ...set }, source });
    return id;
  };

  it("applies a field nobody else changed since the writer's base, even under a strict policy", async () => {
    const id = await create({ status: enm("active"), notes: str("n") });
    await write({ ref: ref(id), set: { notes: str("desk edit") }, baseVersion: 1n }); // v2 touches notes only
    const r = await write({ ref: ref(id), set: { status: enm("dormant") }, baseVersion: 1n }); // status unchanged since v1
    expect(r.fields[0]!.status).toBe(FieldOutcome_Status.APPLIED);
  });

  it("lww: a concurrent edit made earlier on an offline phone is superseded by the later desk edit", async () => {
    const id = await create({ notes: str("start") });
    const early = new Date(Date.now() - 60_000);
    await write({ ref: ref(id), set: { notes: str("desk, now") }, baseVersion: 1n, source: "crm-desktop" });
    const r = await write({
      ref: ref(id),
      set: { notes: str("phone, an hour ago") },
      baseVersion: 1n,
      source: "sales-app",
      editTime: { seconds: BigInt(Math.floor(early.getTime() / 1000)), nanos: 0 },
    });
    expect(r.fields[0]).toMatchObject({ field: "notes", status: FieldOutcome_Status.SUPERSEDED, policy: "lww" });
    expect(r.fields[0]!.winner!.source).toBe("crm-desktop");
    expect((await rs.getRecord({ ref: ref(id) })).record!.fields.notes?.kind.value).toBe("desk, now");
    // Nothing typed vanishes: history keeps the losing value and who beat it.
    const history = (await rs.getRecordHistory({ ref: ref(id) })).changes;
    const lost = history.flatMap((c) => c.decisions).find((d) => d.status === FieldOutcome_Status.SUPERSEDED)!;
    expect(lost.proposed?.kind.value).toBe("phone, an hour ago");
    expect(lost.winner!.source).toBe("crm-desktop");
  });

  it("source_priority: the ERP's credit limit outranks a later sales-app edit; the ERP overrides the desk", async () => {
    const id = await create({ credit_limit: dec("50000") }, "erp");
    const app = await write({ ref: ref(id), set: { credit_limit: dec("90000") }, baseVersion: 0n, source: "sales-app" });
    expect(app.fields[0]).toMatchObject({ status: FieldOutcome_Status.SUPERSEDED, policy: "source_priority" });
    expect(app.fields[0]!.winner!.source).toBe("erp");
    await write({ ref: ref(id), set: { credit_limit: dec("60000") }, source: "erp" });
    expect((await rs.getRecord({ ref: ref(id) })).record!.fields.credit_limit?.kind.value).toBe("60000");
  });

  it("keep_original: the first contract number stays against a blind overwrite", async () => {
    const id = await create({ contract_no: str("HT-2024-001") });
    const r = await write({ ref: ref(id), set: { contract_no: str("HT-9999") }, source: "erp" });
    expect(r.fields[0]).toMatchObject({ status: FieldOutcome_Status.KEPT, policy: "keep_original" });
    expect((await rs.getRecord({ ref: ref(id) })).record!.fields.contract_no?.kind.value).toBe("HT-2024-001");
  });

  it("reject: a concurrent edit fails the whole mutation with ABORTED, the current version and the field in details", async () => {
    const id = await create({ invoice_title: str("Acme Ltd") });
    await write({ ref: ref(id), set: { invoice_title: str("Acme Trading Ltd") }, baseVersion: 1n });
    const err = await rejection(
      rs.writeRecords({ mutations: [{ ref: ref(id), set: { invoice_title: str("ACME"), notes: str("x") }, baseVersion: 1n }] }),
    );
    expect(err.code).toBe(Code.Aborted);
    const info = err.findDetails(ErrorInfoSchema)[0]!;
    expect(info.reason).toBe("CONCURRENT_EDIT_REJECTED");
    expect(info.metadata.current_version).toBe("2");
    expect(info.metadata.conflicting_fields).toBe("invoice_title");
    expect(err.findDetails(BadRequestSchema)[0]!.fieldViolations[0]!.field).toBe("mutations[0].set.invoice_title");
    const rec = (await rs.getRecord({ ref: ref(id) })).record!;
    expect(rec.version).toBe(2n);
    expect(rec.fields.notes).toBeUndefined();
  });

  it("manual_review: concurrent edits join one ticket; a resolution is a normal change; resolving twice names the first", async () => {
    const id = await create({ status: enm("active") });
    await write({ ref: ref(id), set: { status: enm("dormant") }, baseVersion: 1n, source: "crm-desktop" });
    const b = await write({ ref: ref(id), set: { status: enm("blacklisted") }, baseVersion: 1n, source: "service-console" });
    const c = await write({ ref: ref(id), set: { status: enm("merged") }, baseVersion: 1n, source: "erp" });
    expect(b.fields[0]!.status).toBe(FieldOutcome_Status.QUEUED_FOR_REVIEW);
    expect(c.fields[0]!.ticketId).toBe(b.fields[0]!.ticketId);
    expect((await rs.getRecord({ ref: ref(id) })).record!.fields.status?.kind.value).toBe("dormant");

    const listed = await cs.listConflictTickets({ collection: "customers", recordId: id, status: TicketStatus.OPEN });
    expect(listed.tickets).toHaveLength(1);
    const ticket = listed.tickets[0]!;
    expect(ticket.field).toBe("status");
    expect(ticket.candidates.map((x) => x.value?.kind.value)).toEqual(["dormant", "blacklisted", "merged"]);
    expect(ticket.candidates.map((x) => x.clock!.source)).toEqual(["crm-desktop", "service-console", "erp"]);

    const resolved = await cs.resolveConflictTicket({ ticketId: ticket.id, choice: { case: "candidateIndex", value: 1 }, source: "crm-desktop" });
    expect(resolved.ticket!.status).toBe(TicketStatus.RESOLVED);
    expect(resolved.result!.fields[0]!.status).toBe(FieldOutcome_Status.APPLIED);
    const rec = (await rs.getRecord({ ref: ref(id) })).record!;
    expect(rec.fields.status?.kind.value).toBe("blacklisted");
    expect(rec.version).toBe(resolved.result!.version);
    const last = (await rs.getRecordHistory({ ref: ref(id) })).changes.at(-1)!;
    expect(last.set.status?.kind.value).toBe("blacklisted");

    const again = await rejection(cs.resolveConflictTicket({ ticketId: ticket.id, choice: { case: "candidateIndex", value: 2 } }));
    expect(again.code).toBe(Code.FailedPrecondition);
    const info = again.findDetails(ErrorInfoSchema)[0]!;
    expect(info.reason).toBe("TICKET_ALREADY_RESOLVED");
    expect(info.metadata.resolved_by).toBe("tester");
    expect(info.metadata.version).toBe(String(resolved.result!.version));
  });

  it("refuses to resolve a ticket whose field moved on, and dismissing keeps the current value", async () => {
    const id = await create({ owner: str("wang") });
    await write({ ref: ref(id), set: { owner: str("li") }, baseVersion: 1n });
    const queued = await write({ ref: ref(id), set: { owner: str("zhao") }, baseVersion: 1n });
    const ticketId = queued.fields[0]!.ticketId;
    const current = (await rs.getRecord({ ref: ref(id) })).record!;
    await write({ ref: ref(id), set: { owner: str("qian") }, baseVersion: current.version }); // a sequential edit moves the field on
    const err = await rejection(cs.resolveConflictTicket({ ticketId, choice: { case: "candidateIndex", value: 1 } }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.findDetails(ErrorInfoSchema)[0]!.reason).toBe("FIELD_MOVED_ON");
    expect((await rs.getRecord({ ref: ref(id) })).record!.fields.owner?.kind.value).toBe("qian");
    const dismissed = await cs.dismissConflictTicket({ ticketId });
    expect(dismissed.ticket!.status).toBe(TicketStatus.DISMISSED);
    expect((await cs.getConflictTicket({ ticketId })).ticket!.status).toBe(TicketStatus.DISMISSED);
    expect((await rejection(cs.dismissConflictTicket({ ticketId }))).code).toBe(Code.FailedPrecondition);
  });

  it("bad resolutions: invalid value, out-of-range candidate, unknown ticket", async () => {
    const id = await create({ status: enm("active") });
    await write({ ref: ref(id), set: { status: enm("dormant") }, baseVersion: 1n });
    const { ticketId } = (await write({ ref: ref(id), set: { status: enm("merged") }, baseVersion: 1n })).fields[0]!;
    const bad = await rejection(cs.resolveConflictTicket({ ticketId, choice: { case: "value", value: enm("unheard-of") } }));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.findDetails(BadRequestSchema)[0]!.fieldViolations[0]!.field).toBe("value");
    expect((await rejection(cs.resolveConflictTicket({ ticketId, choice: { case: "candidateIndex", value: 9 } }))).code).toBe(Code.InvalidArgument);
    expect((await rejection(cs.resolveConflictTicket({ ticketId: "no-such-ticket", choice: { case: "candidateIndex", value: 0 } }))).code).toBe(
      Code.NotFound,
    );
    expect((await rejection(cs.getConflictTicket({ ticketId: "no-such-ticket" }))).code).toBe(Code.NotFound);
    // A supplied valid value resolves it.
    const ok = await cs.resolveConflictTicket({ ticketId, choice: { case: "value", value: enm("active") } });
    expect(ok.ticket!.resolution!.candidateIndex).toBe(-1);
  });

  it("lists tickets page by page, oldest first, filtered by field", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const id = await create({ owner: str("a") });
      await write({ ref: ref(id), set: { owner: str("b") }, baseVersion: 1n });
      await write({ ref: ref(id), set: { owner: str("c") }, baseVersion: 1n });
      ids.push(id);
    }
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await cs.listConflictTickets({ field: "owner", status: TicketStatus.OPEN, pageSize: 2, pageToken });
      seen.push(...page.tickets.map((t) => t.recordId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen.filter((r) => ids.includes(r))).toEqual(ids);
  });

  /** An open owner ticket on a new record; returns the record id. */
  const ticketed = async () => {
    const id = await create({ owner: str("a") });
    await write({ ref: ref(id), set: { owner: str("b") }, baseVersion: 1n });
    await write({ ref: ref(id), set: { owner: str("c") }, baseVersion: 1n });
    return id;
  };
  const badToken = { code: Code.InvalidArgument, reason: "INVALID_ARGUMENT", violations: ["page_token: INVALID_PAGE_TOKEN"] };

  it("ticket page tokens are sealed: no ticket id or create time in their bytes", async () => {
    await ticketed();
    await ticketed();
    const page = await cs.listConflictTickets({ field: "owner", status: TicketStatus.OPEN, pageSize: 1 });
    const last = page.tickets[0]!;
    const bytes = tokenBytes(page.nextPageToken);
    expect(bytes).not.toContain(last.id);
    expect(bytes).not.toContain(timestampDate(last.createTime!).toISOString().slice(0, 19));
    const next = await cs.listConflictTickets({ field: "owner", status: TicketStatus.OPEN, pageSize: 1, pageToken: page.nextPageToken });
    expect(next.tickets[0]!.id).not.toBe(last.id);
  });

  it("refuses ticket page tokens it did not issue, or holding a position it never pages by, as INVALID_PAGE_TOKEN", async () => {
    await ticketed();
    // The handler's query: a forged token with a valid position is honoured, so the ones below fail for their position.
    const query = { c: "", r: "", f: "", s: "", a: 0 };
    await cs.listConflictTickets({ pageToken: forgedToken(query, JSON.stringify([new Date(0).toISOString(), "t"])) });
    for (const after of [
      "x",
      "",
      JSON.stringify(["nope", "id"]),
      JSON.stringify(["2026-01-01T00:00:00.000Z", "a\u0000"]),
      JSON.stringify(["+275760-09-13T00:00:00.000Z", "id"]),
      JSON.stringify({ time: 1 }),
    ]) {
      expect(refusal(await rejection(cs.listConflictTickets({ pageToken: forgedToken(query, after) }))), after).toEqual(badToken);
    }
    const real = (await cs.listConflictTickets({ pageSize: 1 })).nextPageToken;
    const tampered = Buffer.from(real, "base64url");
    tampered[5] = tampered[5]! ^ 1;
    expect(refusal(await rejection(cs.listConflictTickets({ pageSize: 1, pageToken: tampered.toString("base64url") })))).toEqual(badToken);
    const unsealed = Buffer.from(JSON.stringify({ q: "x", after: "x" })).toString("base64url");
    expect(refusal(await rejection(cs.listConflictTickets({ pageToken: unsealed })))).toEqual(badToken);
  });

  it("min_age beyond the Duration range is INVALID_ARGUMENT naming min_age; the longest one lists nothing", async () => {
    for (const minAge of [{ seconds: 10n ** 13n, nanos: 0 }, { seconds: 315_576_000_001n, nanos: 0 }, { seconds: 1n, nanos: 1_000_000_000 }]) {
      expect(refusal(await rejection(cs.listConflictTickets({ minAge })))).toEqual({
        code: Code.InvalidArgument,
        reason: "INVALID_ARGUMENT",
        violations: ["min_age: OUT_OF_RANGE"],
      });
    }
    expect((await cs.listConflictTickets({ minAge: { seconds: 315_576_000_000n, nanos: 0 } })).tickets).toEqual([]);
  });

  it("a NUL character in a ticket id or a ticket filter is INVALID_ARGUMENT naming the field", async () => {
    const nul = (field: string) => ({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT", violations: [`${field}: INVALID_CHARACTER`] });
    const ticketId = "a\u0000";
    expect(refusal(await rejection(cs.getConflictTicket({ ticketId })))).toEqual(nul("ticket_id"));
    expect(refusal(await rejection(cs.resolveConflictTicket({ ticketId, choice: { case: "candidateIndex", value: 0 } })))).toEqual(nul("ticket_id"));
    expect(refusal(await rejection(cs.dismissConflictTicket({ ticketId })))).toEqual(nul("ticket_id"));
    expect(refusal(await rejection(cs.listConflictTickets({ recordId: "r\u0000" })))).toEqual(nul("record_id"));
    expect(refusal(await rejection(cs.listConflictTickets({ collection: "customers\u0000" })))).toEqual(nul("collection"));
    expect(refusal(await rejection(cs.listConflictTickets({ field: "\u0000" })))).toEqual(nul("field"));
  });
});
