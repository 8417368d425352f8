// Fields a record hides from the caller cannot be probed: a filter or an
// identity lookup on such a field does not match the record (even when
// another record shows the field), a stream filtered on it neither snapshots
// the record nor moves it in or out of view when the hidden value changes,
// and an identity value held by a record the caller cannot see is refused
// without naming that record. The principal here is sales + finance of east
// China: finance admits every region but does not list phone, so phone is
// readable on east records (sales) and hidden on north ones.
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService, Action, AuditEventKind } from "../../../gen/deltamesh/v1/access_pb.js";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { Identity, TestNode } from "../../support/node.js";
import { byId, byKey, enm, rejection, str } from "../../support/rpc.js";
import { openStream, recordEvents } from "../../support/streams.js";
import { ADMIN, eastSales, phone, seed, startAccessNode, uid } from "./helpers.js";

let node: TestNode;
let east: string;
let eastPhone: string;
let north: string;
let northPhone: string;

const SALES_FINANCE: Identity = { subject: "sf-1", roles: ["sales", "finance"], attributes: { regions: ["east_china"], device_class: "desktop" } };
const filterBy = (value: string) => [{ field: "phone", value: str(value) }];
const records = () => [
  ["grpc-js", node.grpcJs(RecordService, SALES_FINANCE)],
  ["connect", node.connect(RecordService, SALES_FINANCE)],
] as const;
const versionOf = async (id: string) => (await node.grpcJs(RecordService, ADMIN).getRecord({ ref: byId(id) })).record!.version;
/** Writes as the administrator from the desktop CRM (the seeds' source). */
const edit = (id: string, set: Parameters<typeof seed>[2]) => node.grpcJs(RecordService, ADMIN).writeRecords({ mutations: [{ ref: byId(id), set, source: "crm-desktop" }] });
/** What a refusal says, with `id` written as ID: a hidden record must read exactly like a missing one. */
const shape = (e: ConnectError, id: string) => ({
  code: e.code,
  message: e.rawMessage.replaceAll(id, "ID"),
  info: e.findDetails(ErrorInfoSchema).map((i) => ({ reason: i.reason, metadata: Object.fromEntries(Object.entries(i.metadata).map(([k, v]) => [k, v.replaceAll(id, "ID")])) })),
  resource: e.findDetails(ResourceInfoSchema).map((r) => r.resourceName.replaceAll(id, "ID")),
});

beforeAll(async () => {
  node = await startAccessNode();
  eastPhone = phone();
  northPhone = phone();
  east = await seed(node, uid("east"), { region: enm("east_china"), phone: str(eastPhone) });
  north = await seed(node, uid("north"), { region: enm("north_china"), phone: str(northPhone) });
});
afterAll(async () => {
  await node?.stop();
});

describe("a field hidden on a record cannot be probed by filters or identity lookups", () => {
  it("ListRecords and ExportRecords filtered on it leave the record out", async () => {
    // The north record is in scope, without its phone.
    const got = await node.grpcJs(RecordService, SALES_FINANCE).getRecord({ ref: byId(north) });
    expect(got.record!.fields).not.toHaveProperty("phone");
    expect(got.record!.fields.region?.kind.value).toBe("north_china");
    for (const [client, rs] of records()) {
      expect((await rs.listRecords({ collection: "customers", filters: filterBy(northPhone) })).records.map((r) => r.id), client).toEqual([]);
      // The phone is readable on east records: the same filter finds them.
      expect((await rs.listRecords({ collection: "customers", filters: filterBy(eastPhone) })).records.map((r) => r.id), client).toEqual([east]);
      const exported: string[] = [];
      for await (const m of rs.exportRecords({ collection: "customers", filters: filterBy(northPhone) })) exported.push(...m.records.map((r) => r.id));
      expect(exported, client).toEqual([]);
    }
  });

  it("GetRecord, BatchGetRecords and GetRecordHistory by it answer like a missing record", async () => {
    const missingPhone = phone();
    for (const [client, rs] of records()) {
      const hidden = await rejection(rs.getRecord({ ref: byKey("phone", str(northPhone)) }));
      const missing = await rejection(rs.getRecord({ ref: byKey("phone", str(missingPhone)) }));
      expect(hidden.code, client).toBe(Code.NotFound);
      expect(shape(hidden, northPhone), client).toEqual(shape(missing, missingPhone));
      expect((await rejection(rs.getRecordHistory({ ref: byKey("phone", str(northPhone)) }))).code, client).toBe(Code.NotFound);
      const batch = await rs.batchGetRecords({ refs: [byKey("phone", str(northPhone)), byKey("phone", str(eastPhone))] });
      expect(batch.records.map((r) => r.id), client).toEqual([east]);
      expect(batch.missing.map((m) => (m.target.case === "identity" ? m.target.value.value?.kind.value : "")), client).toEqual([northPhone]);
      expect((await rs.getRecord({ ref: byKey("phone", str(eastPhone)) })).record!.id, client).toBe(east);
    }
  });

  it("WriteRecords upserting by it answers like a missing record and writes nothing", async () => {
    // Finance may write invoice_title on north records, but not find them by a phone it cannot read there.
    const before = await versionOf(north);
    for (const [client, rs] of records()) {
      const err = await rejection(rs.writeRecords({ mutations: [{ ref: byKey("phone", str(northPhone)), set: { invoice_title: str("Probe Co.") } }] }));
      expect(err.code, client).toBe(Code.NotFound);
      expect(err.rawMessage, client).not.toContain(north);
    }
    expect(await versionOf(north)).toBe(before);
    const [byEast] = (await node.grpcJs(RecordService, SALES_FINANCE).writeRecords({ mutations: [{ ref: byKey("phone", str(eastPhone)), set: { invoice_title: str("East Co.") } }] })).results;
    expect(byEast!.id).toBe(east);
  });

  it("CheckAccess and ExplainAccess by it answer NOT_FOUND", async () => {
    for (const as of [node.grpcJs(AccessService, SALES_FINANCE), node.connect(AccessService, SALES_FINANCE)]) {
      expect((await rejection(as.checkAccess({ question: { action: Action.READ, record: byKey("phone", str(northPhone)) } }))).code).toBe(Code.NotFound);
      expect((await rejection(as.explainAccess({ question: { action: Action.READ, record: byKey("phone", str(northPhone)) } }))).code).toBe(Code.NotFound);
      expect((await as.checkAccess({ question: { action: Action.READ, record: byKey("phone", str(eastPhone)) } })).decision?.allowed).toBe(true);
    }
  });

  it("the lookups are audited as denied reads of the hidden field", async () => {
    const as = node.grpcJs(AccessService, ADMIN);
    await expect
      .poll(async () => (await as.queryAuditLog({ kind: AuditEventKind.DENIED, actor: "sf-1", recordId: north, pageSize: 1000 })).entries.length, { timeout: 5000 })
      .toBeGreaterThanOrEqual(3);
    const entries = (await as.queryAuditLog({ kind: AuditEventKind.DENIED, actor: "sf-1", recordId: north, pageSize: 1000 })).entries;
    expect(entries.every((e) => e.reason === "FIELD_NOT_READABLE" && e.fields.join() === "phone")).toBe(true);
  });
});

describe("a stream filtered on a field hidden on a record", () => {
  for (const client of ["grpc-js", "connect"] as const) {
    it(`never shows the record, nor moves it in or out of view when the hidden value changes (${client})`, async () => {
      const p = phone();
      const id = await seed(node, uid("north"), { region: enm("north_china"), phone: str(p) });
      const cs = client === "grpc-js" ? node.grpcJs(ChangeService, SALES_FINANCE) : node.connect(ChangeService, SALES_FINANCE);
      const query = { collection: "customers", filters: filterBy(p) };
      expect((await cs.getDigest({ ...query, bucketCount: 1 })).recordCount).toBe(0n);
      const s = openStream(cs, { collections: [query], start: { case: "snapshot", value: {} } });
      try {
        await s.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
        expect(recordEvents(s.events)).toEqual(["snapshot_end 0"]);
        const from = s.events.length;
        await edit(id, { phone: str(phone()) }); // out of the filter: no leave
        await edit(id, { phone: str(p) }); // back in: no enter
        await edit(id, { region: enm("east_china") }); // now shows its phone: in view
        await s.until((e) => recordEvents(e.slice(from)).length >= 1);
        expect(recordEvents(s.events.slice(from))).toEqual([`enter ${id}@4`]);
      } finally {
        s.close();
      }
    });
  }
});

describe("IDENTITY_KEY_TAKEN by a record the caller cannot see", () => {
  for (const client of ["grpc-js", "connect"] as const) {
    const rsOf = (who: Identity) => (client === "grpc-js" ? node.grpcJs(RecordService, who) : node.connect(RecordService, who));

    it(`an out-of-scope holder is not named anywhere, and the refusal is audited; a visible holder still is (${client})`, async () => {
      const rs = rsOf(eastSales("desktop"));
      const e = await rejection(rs.writeRecords({ mutations: [{ ref: byId(east), set: { phone: str(northPhone) }, baseVersion: await versionOf(east) }] }));
      expect(e.code).toBe(Code.AlreadyExists);
      expect(e.rawMessage).toBe("this phone is already taken by a record you cannot see");
      const info = e.findDetails(ErrorInfoSchema);
      expect(info.map((i) => i.reason)).toEqual(["IDENTITY_KEY_TAKEN"]);
      expect(info[0]!.metadata).toEqual({ collection: "customers", field: "phone", mutation_index: "0" });
      const violations = e.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations);
      expect(violations.map((v) => [v.field, v.reason])).toEqual([["mutations[0].set.phone", "IDENTITY_KEY_TAKEN"]]);
      expect(JSON.stringify([e.rawMessage, info, violations, e.findDetails(ResourceInfoSchema)])).not.toContain(north);
      // Nothing was written.
      expect((await node.grpcJs(RecordService, ADMIN).getRecord({ ref: byId(east) })).record!.fields.phone?.kind.value).toBe(eastPhone);
      const as = node.grpcJs(AccessService, ADMIN);
      await expect
        .poll(async () => (await as.queryAuditLog({ kind: AuditEventKind.DENIED, actor: "s-east", recordId: north, pageSize: 1000 })).entries.map((x) => x.reason), { timeout: 5000 })
        .toContain("OUT_OF_SCOPE");

      // A holder the caller can see is named, as before.
      const p = phone();
      const other = await seed(node, uid("east"), { region: enm("east_china"), phone: str(p) });
      const seen = await rejection(rs.writeRecords({ mutations: [{ ref: byId(east), set: { phone: str(p) }, baseVersion: await versionOf(east) }] }));
      expect(seen.code).toBe(Code.AlreadyExists);
      expect(seen.findDetails(ErrorInfoSchema)[0]!.metadata.holder_id).toBe(other);
      expect(seen.rawMessage).toContain(other);
      expect(seen.findDetails(ResourceInfoSchema)[0]!.resourceName).toBe(`customers/${other}`);
    });

    it(`an in-scope holder hiding the field is not named either (${client})`, async () => {
      const e = await rejection(rsOf(SALES_FINANCE).writeRecords({ mutations: [{ ref: byId(east), set: { phone: str(northPhone) }, baseVersion: await versionOf(east) }] }));
      expect(e.code).toBe(Code.AlreadyExists);
      expect(e.findDetails(ErrorInfoSchema)[0]!.reason).toBe("IDENTITY_KEY_TAKEN");
      expect(e.findDetails(ErrorInfoSchema)[0]!.metadata).not.toHaveProperty("holder_id");
      expect(e.rawMessage).not.toContain(north);
    });
  }
});
