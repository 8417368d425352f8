// AccessService end to end: the policy (read, compare-and-set replace that
// takes effect on every path at once, refused when invalid), check and
// explain, and the audit log (query, paging, hash-chain verification that
// catches tampering).
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService, Action, AuditEventKind, ScopeResult, type Policy } from "../../../gen/deltamesh/v1/access_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { TestNode } from "../../support/node.js";
import { byId, enm, rejection, str } from "../../support/rpc.js";
import { forgedToken, refusal, tokenBytes } from "../../support/page-tokens.js";
import { ADMIN, eastSales, FINANCE, seed, startAccessNode, uid } from "./helpers.js";

let node: TestNode;
let db: pg.Pool;
let eastId: string;
beforeAll(async () => {
  node = await startAccessNode();
  db = new pg.Pool({ connectionString: node.node.databaseUrl, max: 2 });
  eastId = await seed(node, uid("a"), { region: enm("east_china"), phone: str("+8613955501234") });
});
afterAll(async () => {
  await db?.end();
  await node?.stop();
});

const admin = () => node.connect(AccessService, ADMIN);

describe("policy", () => {
  it("reads the example policy with its revision", async () => {
    const p = await admin().getPolicy({});
    expect(Object.keys(p.policy!.roles)).toEqual(["admin", "sales", "sales_manager", "service", "finance", "erp_integration"]);
    expect(p.policy!.roles.sales!.grants[0]).toMatchObject({ collections: ["customers"], actions: [Action.READ, Action.WRITE] });
    expect(p.policy!.roles.sales!.grants[0]!.scope).toContain("principal.regions");
    expect(p.policy!.clientCertificates[0]!.principal?.subject).toBe("svc-erp");
    expect(p.revision).toBe(node.node.config.current().revision);
  });

  it("refuses a stale revision and an invalid policy, changing nothing", async () => {
    const { policy, revision } = await admin().getPolicy({});
    const stale = await rejection(admin().putPolicy({ policy, expectedRevision: "000000000000" }));
    expect(stale.code).toBe(Code.Aborted);
    expect(stale.findDetails(ErrorInfoSchema)[0]?.metadata.current_revision).toBe(revision);
    const broken = structuredClone(policy!) as Policy;
    broken.roles.sales!.grants[0]!.readFields.push("phnoe");
    broken.roles.sales!.grants[0]!.scope = "record.region in";
    const invalid = await rejection(admin().putPolicy({ policy: broken, expectedRevision: revision }));
    expect(invalid.code).toBe(Code.InvalidArgument);
    expect(invalid.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field)).toEqual(
      expect.arrayContaining(["policies.roles.sales.grants[0].read_fields[17]", "policies.roles.sales.grants[0].scope"]),
    );
    expect((await admin().getPolicy({})).revision).toBe(revision);
    expect((await rejection(admin().putPolicy({ policy }))).code).toBe(Code.InvalidArgument); // no expected revision
  });

  it("a new policy applies to the next call on every path, and the change is audited", async () => {
    const sales = node.grpcJs(RecordService, eastSales());
    expect((await sales.getRecord({ ref: byId(eastId) })).record?.id).toBe(eastId);
    const { policy, revision } = await admin().getPolicy({});
    const narrowed = structuredClone(policy!) as Policy;
    for (const g of narrowed.roles.sales!.grants) g.scope = "record.owner == principal.sub"; // revoke the region rule
    const put = await admin().putPolicy({ policy: narrowed, expectedRevision: revision });
    expect(put.revision).not.toBe(revision);
    expect((await rejection(sales.getRecord({ ref: byId(eastId) }))).code).toBe(Code.NotFound);
    expect((await sales.listRecords({ collection: "customers" })).records.map((r) => r.id)).not.toContain(eastId);
    const audit = await admin().queryAuditLog({ kind: AuditEventKind.POLICY_CHANGE });
    expect(audit.entries[0]).toMatchObject({ actor: "root", reason: "POLICY_REPLACED", details: { from_revision: revision, to_revision: put.revision } });
    // Restore.
    await admin().putPolicy({ policy, expectedRevision: put.revision });
    expect((await sales.getRecord({ ref: byId(eastId) })).record?.id).toBe(eastId);
  });

  it("only administrators read or change it", async () => {
    expect((await rejection(node.connect(AccessService, FINANCE).getPolicy({}))).code).toBe(Code.PermissionDenied);
  });
});

describe("check and explain", () => {
  it("answers for the caller on a stored record, a hypothetical one, or none", async () => {
    const as = node.connect(AccessService, eastSales("mobile"));
    const phone = await as.checkAccess({ question: { action: Action.READ, record: byId(eastId), field: "phone" } });
    expect(phone.decision).toMatchObject({ allowed: true, verdict: "ALLOWED", mask: "phone", allowedBy: ["policies.roles.sales.grants[0]"] });
    const north = await as.checkAccess({ question: { action: Action.WRITE, collection: "customers", recordFields: { region: enm("north_china") } } });
    expect(north.decision).toMatchObject({ allowed: false, verdict: "OUT_OF_SCOPE" });
    const exp = await as.checkAccess({ question: { action: Action.EXPORT, collection: "customers" } });
    expect(exp.decision).toMatchObject({ allowed: false, verdict: "ACTION_NOT_GRANTED" });
  });

  it("explains which grant allowed or denied, for another principal when an administrator asks", async () => {
    const e = await admin().explainAccess({
      question: { principal: { subject: "x", roles: ["sales", "finance"], attributes: { regions: { kind: { case: "values", value: { values: ["north_china"] } } } } }, action: Action.READ, record: byId(eastId), field: "credit_limit" },
    });
    expect(e.decision).toMatchObject({ allowed: true, allowedBy: ["policies.roles.finance.grants[0]"] }); // grants[1] is its write grant
    const sales0 = e.grants.find((g) => g.grant === "policies.roles.sales.grants[0]")!;
    expect(sales0).toMatchObject({ covers: true, scope: ScopeResult.NO_MATCH, fieldListed: false });
  });
});

describe("export", () => {
  it("finance exports what it may read, masked, and the export is audited first", async () => {
    const id = await seed(node, uid("x"), { region: enm("south_china"), id_number: str("110105199001011234"), phone: str("+8613955509876") });
    const pages = [];
    for await (const page of node.grpcJs(RecordService, FINANCE).exportRecords({ collection: "customers" })) pages.push(page);
    const exported = pages.flatMap((p) => p.records);
    const mine = exported.find((r) => r.id === id)!;
    expect(exported.map((r) => r.id)).toContain(eastId);
    expect(mine.fields.id_number?.kind.value).toBe("110105********1234");
    expect(mine.fields).not.toHaveProperty("phone");
    expect(mine.maskedFields).toEqual(["id_number"]);
    const audit = await admin().queryAuditLog({ kind: AuditEventKind.EXPORT, actor: "f-1" });
    const started = audit.entries.find((e) => e.reason === "");
    expect(started).toMatchObject({ collection: "customers", fields: ["id_number"] });
    await expect.poll(async () => (await admin().queryAuditLog({ kind: AuditEventKind.EXPORT, actor: "f-1" })).entries.map((e) => e.reason), { timeout: 5000 }).toContain("COMPLETED");
  });
});

describe("audit log", () => {
  it("pages newest first and filters", async () => {
    const sales = node.grpcJs(RecordService, eastSales());
    for (let i = 0; i < 3; i++) await rejection(sales.deleteRecord({ ref: byId(eastId) }));
    // Denials are written in batches: wait for these three.
    const deletes = async () => (await admin().queryAuditLog({ kind: AuditEventKind.DENIED, actor: "s-east", pageSize: 1000 })).entries.filter((e) => e.details.action === "delete");
    await expect.poll(async () => (await deletes()).length, { timeout: 5000 }).toBe(3);
    const first = await admin().queryAuditLog({ kind: AuditEventKind.DENIED, actor: "s-east", pageSize: 2 });
    const second = await admin().queryAuditLog({ kind: AuditEventKind.DENIED, actor: "s-east", pageSize: 2, pageToken: first.nextPageToken });
    const seqs = [...first.entries, ...second.entries].map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => (a > b ? -1 : 1)));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(first.entries.every((e) => e.details.action === "delete" && e.reason === "ACTION_NOT_GRANTED")).toBe(true);
  });

  const clients = [
    ["grpc-js", () => node.grpcJs(AccessService, ADMIN)],
    ["connect", () => node.connect(AccessService, ADMIN)],
  ] as const;

  it.each(clients)("refuses page tokens it did not issue, or holding a position it never pages by, as INVALID_PAGE_TOKEN (%s)", async (_name, client) => {
    const as = client();
    // The handler's query: a forged token with a valid position is honoured, so the ones below fail for their position.
    const query = { a: "", k: 0, c: "", r: "" };
    await as.queryAuditLog({ pageToken: forgedToken(query, "5") });
    const badToken = { code: Code.InvalidArgument, reason: "INVALID_ARGUMENT", violations: ["page_token: INVALID_PAGE_TOKEN"] };
    for (const after of ["x", "", "0", "1e3", "9007199254740992", "99999999999999999999"]) {
      expect(refusal(await rejection(as.queryAuditLog({ pageToken: forgedToken(query, after) }))), after).toEqual(badToken);
    }
    const real = (await as.queryAuditLog({ pageSize: 1 })).nextPageToken;
    const tampered = Buffer.from(real, "base64url");
    tampered[tampered.length - 1] = tampered[tampered.length - 1]! ^ 1;
    expect(refusal(await rejection(as.queryAuditLog({ pageSize: 1, pageToken: tampered.toString("base64url") })))).toEqual(badToken);
    expect(tokenBytes(real)).not.toMatch(/"after"|"q"/);
  });

  it.each(clients)("since or until outside the Timestamp range is INVALID_ARGUMENT naming it (%s)", async (_name, client) => {
    const as = client();
    const outOfRange = (field: string) => ({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT", violations: [`${field}: OUT_OF_RANGE`] });
    expect(refusal(await rejection(as.queryAuditLog({ since: { seconds: 10n ** 13n, nanos: 0 } })))).toEqual(outOfRange("since"));
    expect(refusal(await rejection(as.queryAuditLog({ since: { seconds: -(10n ** 13n), nanos: 0 } })))).toEqual(outOfRange("since"));
    expect(refusal(await rejection(as.queryAuditLog({ until: { seconds: 10n ** 13n, nanos: 0 } })))).toEqual(outOfRange("until"));
    expect(refusal(await rejection(as.queryAuditLog({ until: { seconds: 0n, nanos: -1 } })))).toEqual(outOfRange("until"));
    expect((await as.queryAuditLog({ since: { seconds: 253_402_300_799n, nanos: 0 } })).entries).toEqual([]);
  });

  it.each(clients)("text the database cannot store is INVALID_ARGUMENT, with none of the database's words (%s)", async (_name, client) => {
    const e = await rejection(client().queryAuditLog({ actor: "a\u0000b" }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("UNSTORABLE_TEXT");
    expect(e.rawMessage).not.toMatch(/0x00|UTF8|encoding|postgres|sequence/i);
  });

  it("the hash chain verifies, and any edit or removal of an entry is found", async () => {
    const intact = await admin().verifyAuditLog({});
    expect(intact).toMatchObject({ intact: true });
    expect(intact.entriesChecked).toBeGreaterThan(3n);
    expect(intact.headHash).toMatch(/^[0-9a-f]{64}$/);

    const original = (await db.query<{ actor: string }>("SELECT actor FROM audit_log WHERE tenant = 'default' AND seq = 2")).rows[0]!.actor;
    await db.query("UPDATE audit_log SET actor = 'someone-else' WHERE tenant = 'default' AND seq = 2");
    const edited = await admin().verifyAuditLog({});
    expect(edited).toMatchObject({ intact: false, firstBadSeq: 2n });
    expect(edited.problem).toContain("changed");
    await db.query("UPDATE audit_log SET actor = $1 WHERE tenant = 'default' AND seq = 2", [original]);
    expect((await admin().verifyAuditLog({})).intact).toBe(true);

    await db.query("DELETE FROM audit_log WHERE tenant = 'default' AND seq = 3");
    const removed = await admin().verifyAuditLog({});
    expect(removed).toMatchObject({ intact: false, firstBadSeq: 4n });
  });
});
