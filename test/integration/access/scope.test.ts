// Object-level authorization: an east-China sales rep (and manager) probes
// north-China records through every RPC. Zero successes; a record outside
// scope reads exactly like one that does not exist; every probe is audited.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService, Action, AuditEventKind } from "../../../gen/deltamesh/v1/access_pb.js";
import { ConflictService } from "../../../gen/deltamesh/v1/conflicts_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import type { RecordRefSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { ErrorInfoSchema, ResourceInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { TestNode } from "../../support/node.js";
import { byId, byKey, enm, rejection, str } from "../../support/rpc.js";
import { ADMIN, eastManager, eastSales, phone, seed, startAccessNode, uid } from "./helpers.js";

let node: TestNode;
let east: string;
let north: string;
let northPhone: string;
let northErp: string;
let northTicket: string;
let eastTicket: string;

/** Opens a review ticket on id_number (manual_review) of a record. */
async function openTicket(id: string): Promise<string> {
  const rs = node.grpcJs(RecordService, ADMIN);
  await rs.writeRecords({ mutations: [{ ref: byId(id), set: { id_number: str("110105199001011111") }, baseVersion: 1n }] });
  const r = await rs.writeRecords({ mutations: [{ ref: byId(id), set: { id_number: str("110105199001012222") }, baseVersion: 1n }] });
  return r.results[0]!.fields[0]!.ticketId;
}

beforeAll(async () => {
  node = await startAccessNode();
  northPhone = phone();
  east = await seed(node, uid("east"), { region: enm("east_china"), owner: str("someone") });
  northErp = uid("ERP");
  north = await seed(node, uid("north"), { region: enm("north_china"), owner: str("someone"), phone: str(northPhone), erp_id: str(northErp) });
  northTicket = await openTicket(north);
  eastTicket = await openTicket(east);
});
afterAll(async () => {
  await node?.stop();
});

/** Runs a probe; returns the error, or fails the test if the probe succeeded. */
async function probe(name: string, p: Promise<unknown>, code: Code): Promise<ConnectError> {
  const e = await rejection(p).catch(() => {
    throw new Error(`probe succeeded: ${name}`);
  });
  expect(e.code, name).toBe(code);
  return e;
}

const ref = (id: string): MessageInitShape<typeof RecordRefSchema> => byId(id);

describe("east-China sales probing north-China records", () => {
  it("every RPC: not found (or not permitted), never the record", async () => {
    const id = eastSales("desktop");
    const rs = node.grpcJs(RecordService, id);
    const cs = node.grpcJs(ConflictService, id);
    const as = node.grpcJs(AccessService, id);
    // Based on the current version, so the region edit would apply (not lose to the master data source).
    const eastVersion = (await node.grpcJs(RecordService, ADMIN).getRecord({ ref: ref(east) })).record!.version;
    const probes: [string, () => Promise<unknown>, Code][] = [
      ["GetRecord by id", () => rs.getRecord({ ref: ref(north) }), Code.NotFound],
      ["GetRecord by phone", () => rs.getRecord({ ref: byKey("phone", str(northPhone)) }), Code.NotFound],
      ["GetRecord include_deleted", () => rs.getRecord({ ref: ref(north), includeDeleted: true }), Code.NotFound],
      ["GetRecordHistory", () => rs.getRecordHistory({ ref: ref(north) }), Code.NotFound],
      ["WriteRecords update", () => rs.writeRecords({ mutations: [{ ref: ref(north), set: { notes: str("x") } }] }), Code.NotFound],
      ["WriteRecords with expected_version", () => rs.writeRecords({ mutations: [{ ref: ref(north), set: { notes: str("x") }, expectedVersion: 99n }] }), Code.NotFound],
      ["WriteRecords upsert by phone", () => rs.writeRecords({ mutations: [{ ref: byKey("phone", str(northPhone)), set: { notes: str("x") } }] }), Code.NotFound],
      ["WriteRecords create in north", () => rs.writeRecords({ mutations: [{ ref: ref(uid("new")), set: { name: str("x"), region: enm("north_china") } }] }), Code.PermissionDenied],
      ["WriteRecords move east record north", () => rs.writeRecords({ mutations: [{ ref: ref(east), set: { region: enm("north_china") }, baseVersion: eastVersion }] }), Code.PermissionDenied],
      ["DeleteRecord (sales may not delete)", () => rs.deleteRecord({ ref: ref(north) }), Code.PermissionDenied],
      ["ExportRecords (sales may not export)", () => (async () => { for await (const _ of rs.exportRecords({ collection: "customers" })) { /* drain */ } })(), Code.PermissionDenied],
      ["ListConflictTickets (no resolve right)", () => cs.listConflictTickets({}), Code.PermissionDenied],
      ["GetConflictTicket", () => cs.getConflictTicket({ ticketId: northTicket }), Code.PermissionDenied],
      ["ResolveConflictTicket", () => cs.resolveConflictTicket({ ticketId: northTicket, choice: { case: "candidateIndex", value: 1 } }), Code.PermissionDenied],
      ["DismissConflictTicket", () => cs.dismissConflictTicket({ ticketId: northTicket }), Code.PermissionDenied],
      ["GetPolicy", () => as.getPolicy({}), Code.PermissionDenied],
      ["PutPolicy", () => as.putPolicy({ policy: {}, expectedRevision: "x" }), Code.PermissionDenied],
      ["QueryAuditLog", () => as.queryAuditLog({}), Code.PermissionDenied],
      ["VerifyAuditLog", () => as.verifyAuditLog({}), Code.PermissionDenied],
      ["CheckAccess on a north record", () => as.checkAccess({ question: { action: Action.READ, record: ref(north) } }), Code.NotFound],
      ["CheckAccess for another principal", () => as.checkAccess({ question: { principal: { subject: "x", roles: ["admin"] }, action: Action.READ, collection: "customers" } }), Code.PermissionDenied],
      ["ExplainAccess on a north record by phone", () => as.explainAccess({ question: { action: Action.WRITE, record: byKey("phone", str(northPhone)) } }), Code.NotFound],
    ];
    let successes = 0;
    for (const [name, call, code] of probes) {
      const e = await probe(name, call(), code).catch((err: unknown) => {
        successes++;
        throw err;
      });
      // Nothing of the record the caller did not send itself.
      expect(e.rawMessage).not.toContain(northErp);
      expect(e.rawMessage).not.toContain("someone");
    }
    expect(successes).toBe(0);
  });

  it("a north record reads exactly like a missing one", async () => {
    const rs = node.connect(RecordService, eastSales());
    const hidden = await rejection(rs.getRecord({ ref: ref(north) }));
    const missing = await rejection(rs.getRecord({ ref: ref("no-such-record") }));
    const shape = (e: ConnectError, id: string) => ({
      code: e.code,
      message: e.rawMessage.replace(id, "ID"),
      info: e.findDetails(ErrorInfoSchema).map((i) => ({ reason: i.reason, metadata: Object.fromEntries(Object.entries(i.metadata).map(([k, v]) => [k, v.replace(id, "ID")])) })),
      resource: e.findDetails(ResourceInfoSchema).map((r) => ({ ...r, resourceName: r.resourceName.replace(id, "ID"), description: r.description.replace(id, "ID") })),
    });
    expect(shape(hidden, north)).toEqual(shape(missing, "no-such-record"));
    // Same for writes: a hidden record and a missing one refuse a versioned delete alike (manager, who may delete).
    const mgr = node.connect(RecordService, eastManager());
    const hiddenDel = await rejection(mgr.deleteRecord({ ref: ref(north) }));
    const missingDel = await rejection(mgr.deleteRecord({ ref: ref("no-such-record") }));
    expect(shape(hiddenDel, north)).toEqual(shape(missingDel, "no-such-record"));
  });

  it("lists and batch gets leave north records out, on every page", async () => {
    const rs = node.grpcJs(RecordService, eastSales());
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await rs.listRecords({ collection: "customers", pageSize: 1, pageToken });
      seen.push(...page.records.map((r) => r.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toContain(east);
    expect(seen).not.toContain(north);
    const batch = await rs.batchGetRecords({ refs: [ref(east), ref(north)] });
    expect(batch.records.map((r) => r.id)).toEqual([east]);
    expect(batch.missing.map((m) => (m.target.case === "id" ? m.target.value : ""))).toEqual([north]);
  });

  it("a filter or lookup on a field the caller may not read is refused", async () => {
    const rs = node.grpcJs(RecordService, eastSales());
    const e = await rejection(rs.listRecords({ collection: "customers", filters: [{ field: "id_number", value: str("110105199001011111") }] }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("FIELD_NOT_READABLE");
  });

  it("managers see and settle only their region's tickets", async () => {
    const cs = node.grpcJs(ConflictService, eastManager());
    const listed = (await cs.listConflictTickets({ pageSize: 1000 })).tickets.map((t) => t.id);
    expect(listed).toContain(eastTicket);
    expect(listed).not.toContain(northTicket);
    expect((await rejection(cs.getConflictTicket({ ticketId: northTicket }))).code).toBe(Code.NotFound);
    expect((await rejection(cs.resolveConflictTicket({ ticketId: northTicket, choice: { case: "candidateIndex", value: 0 } }))).code).toBe(Code.NotFound);
    expect((await rejection(cs.dismissConflictTicket({ ticketId: northTicket }))).code).toBe(Code.NotFound);
    const missing = await rejection(cs.getConflictTicket({ ticketId: "no-such-ticket" }));
    const hidden = await rejection(cs.getConflictTicket({ ticketId: northTicket }));
    expect(hidden.rawMessage.replace(northTicket, "T")).toBe(missing.rawMessage.replace("no-such-ticket", "T"));
    // The north ticket is still open for the administrator.
    expect((await node.grpcJs(ConflictService, ADMIN).getConflictTicket({ ticketId: northTicket })).ticket?.status).toBe(1);
  });

  it("another tenant's administrator sees nothing of this tenant", async () => {
    const rs = node.grpcJs(RecordService, { subject: "root", tenant: "globex" });
    expect((await rejection(rs.getRecord({ ref: ref(east) }))).code).toBe(Code.NotFound);
    expect((await rs.listRecords({ collection: "customers" })).records).toEqual([]);
  });

  it("the probes are in the audit log as denied attempts, without values", async () => {
    const as = node.grpcJs(AccessService, ADMIN);
    await expect
      .poll(async () => (await as.queryAuditLog({ kind: AuditEventKind.DENIED, recordId: north, pageSize: 1000 })).entries.length, { timeout: 5000 })
      .toBeGreaterThanOrEqual(5);
    const entries = (await as.queryAuditLog({ kind: AuditEventKind.DENIED, actor: "s-east", pageSize: 1000 })).entries;
    expect(entries.map((e) => e.reason)).toEqual(expect.arrayContaining(["OUT_OF_SCOPE", "OUT_OF_SCOPE_WRITE", "ACTION_NOT_GRANTED", "FIELD_NOT_READABLE"]));
    expect(entries.every((e) => e.deviceClass === "desktop" || e.deviceClass === "mobile")).toBe(true);
    expect(JSON.stringify(entries, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain(northPhone.slice(3));
  });
});
