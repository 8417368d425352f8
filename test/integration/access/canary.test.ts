// The canary: sensitive values planted in a record never reach, unmasked, a
// principal who may only see them masked: not in any response (raw bytes
// included), error, log line of the node or audit entry.
import { create, toBinary } from "@bufbuild/protobuf";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService, Action, AuditEventKind } from "../../../gen/deltamesh/v1/access_pb.js";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { ConflictService } from "../../../gen/deltamesh/v1/conflicts_pb.js";
import { GetRecordRequestSchema, RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { identityHeaders, type TestNode } from "../../support/node.js";
import { byId, dec, enm, rejection, str } from "../../support/rpc.js";
import { openStream } from "../../support/streams.js";
import { ADMIN, eastManager, startAccessNode, uid } from "./helpers.js";

const CANARY = {
  phone: "+8613977001234",
  phoneLater: "+8613966005678",
  email: "canaryzq@example.com",
  wechat: "oCANARY_openid_7x",
  idNumber: "110105198807071234",
  idCandidates: ["110105197707075555", "110105196606066666"],
  birthday: "1988-07-07",
};
/** Every text whose presence would mean a canary leaked (masked forms keep only the allowed parts). */
const LEAKS = [
  CANARY.phone,
  CANARY.phone.slice(3), // national number
  CANARY.phoneLater,
  CANARY.phoneLater.slice(3),
  CANARY.email,
  "canaryzq",
  CANARY.wechat,
  CANARY.idNumber,
  "19880707",
  ...CANARY.idCandidates,
  "19770707",
  "19660606",
  CANARY.birthday,
];

const logLines: string[] = [];
let node: TestNode;
let id: string;
let ticketId: string;

const text = (v: unknown): string => JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? String(x) : x instanceof Uint8Array ? Buffer.from(x).toString("latin1") : x));
function expectNoCanary(what: string, s: string): void {
  for (const leak of LEAKS) expect(s.includes(leak), `${what} contains ${leak}`).toBe(false);
}

beforeAll(async () => {
  const log = pino({ level: "trace" }, { write: (s: string) => void logLines.push(s) });
  node = await startAccessNode({}, { log });
  id = uid("canary");
  const rs = node.grpcJs(RecordService, ADMIN);
  await rs.writeRecords({
    mutations: [
      {
        ref: byId(id),
        set: {
          name: str("Canary Co"),
          region: enm("east_china"),
          phone: str(CANARY.phone),
          email: str(CANARY.email),
          wechat_openid: str(CANARY.wechat),
          id_number: str(CANARY.idNumber),
          birthday: { kind: { case: "timestampValue", value: timestampFromDate(new Date(`${CANARY.birthday}T00:00:00Z`)) } },
          credit_limit: dec("1000"),
        },
        source: "crm-desktop",
      },
    ],
  });
  await rs.writeRecords({ mutations: [{ ref: byId(id), set: { phone: str(CANARY.phoneLater) } }] });
  // Two concurrent identity-number edits open a review ticket holding both candidates.
  await rs.writeRecords({ mutations: [{ ref: byId(id), set: { id_number: str(CANARY.idCandidates[0]!) }, baseVersion: 2n }] });
  const r = await rs.writeRecords({ mutations: [{ ref: byId(id), set: { id_number: str(CANARY.idCandidates[1]!) }, baseVersion: 2n }] });
  ticketId = r.results[0]!.fields[0]!.ticketId;
  expect(ticketId).not.toBe("");
});
afterAll(async () => {
  await node?.stop();
});

describe("canary values for a principal who sees them masked (east manager, phone app)", () => {
  const me = eastManager("mobile");

  it("every response and error carries masks, never the values", async () => {
    const rs = node.grpcJs(RecordService, me);
    const cs = node.grpcJs(ConflictService, me);
    const as = node.grpcJs(AccessService, me);
    const got = (await rs.getRecord({ ref: byId(id) })).record!;
    expect(got.fields.phone?.kind.value).toBe("+86 139****5678");
    expect(got.fields.email?.kind.value).toBe("c***@example.com");
    expect(got.fields.id_number?.kind.value).toMatch(/^110105\*{8}\d{4}$/);
    expect(got.fields.birthday?.kind).toEqual({ case: "stringValue", value: "***" });
    expect(got.fields.wechat_openid?.kind.value).toMatch(/^[0-9a-f]{32}$/);
    expect(got.maskedFields.sort()).toEqual(["birthday", "email", "id_number", "phone", "wechat_openid"]);

    const responses: [string, unknown][] = [
      ["GetRecord", got],
      ["BatchGetRecords", await rs.batchGetRecords({ refs: [byId(id)] })],
      ["ListRecords", await rs.listRecords({ collection: "customers", filters: [{ field: "region", value: enm("east_china") }] })],
      ["GetRecordHistory", await rs.getRecordHistory({ ref: byId(id) })],
      ["WriteRecords", await rs.writeRecords({ mutations: [{ ref: byId(id), set: { notes: str("called back") } }] })],
      ["ListConflictTickets", await cs.listConflictTickets({ recordId: id })],
      ["GetConflictTicket", await cs.getConflictTicket({ ticketId })],
      ["ExplainAccess", await as.explainAccess({ question: { action: Action.READ, record: byId(id), field: "phone" } })],
      ["GetCaller", await as.getCaller({})],
    ];
    const history = responses[3]![1] as Awaited<ReturnType<typeof rs.getRecordHistory>>;
    expect(history.changes[0]!.set.phone?.kind.value).toBe("+86 139****1234");
    expect(history.changes[0]!.maskedFields).toContain("phone");
    const ticket = (responses[6]![1] as Awaited<ReturnType<typeof cs.getConflictTicket>>).ticket!;
    expect(ticket.candidates.every((c) => c.masked && /^110105\*{8}\d{4}$/.test(String(c.value?.kind.value)))).toBe(true);

    const errors: [string, unknown][] = [
      ["write a field it may not write", await rejection(rs.writeRecords({ mutations: [{ ref: byId(id), set: { credit_limit: dec("1") } }] }))],
      ["a filter of the wrong type", await rejection(rs.listRecords({ collection: "customers", filters: [{ field: "credit_limit", value: str("x") }] }))],
      ["a stale expected version", await rejection(rs.writeRecords({ mutations: [{ ref: byId(id), set: { notes: str("x") }, expectedVersion: 1n }] }))],
      ["export without the right", await rejection((async () => { for await (const _ of rs.exportRecords({ collection: "customers" })) { /* drain */ } })())],
      ["policy without admin", await rejection(as.getPolicy({}))],
      ["a missing record", await rejection(rs.getRecord({ ref: byId("missing-canary") }))],
    ];
    for (const [what, v] of [...responses, ...errors]) expectNoCanary(what, text(v));
    // The detector detects: the administrator's copy does hold the values.
    const adminCopy = text(await node.grpcJs(RecordService, ADMIN).getRecord({ ref: byId(id) }));
    expect(adminCopy).toContain(CANARY.phoneLater);
    expect(adminCopy).toContain(CANARY.wechat);
    for (const [what, v] of responses) {
      const msg = v as { $typeName?: string };
      expect(msg.$typeName, what).toBeDefined();
    }
  });

  it("change streams carry masks, never the values: snapshot, live upserts, digests", async () => {
    const s = openStream(node.grpcJs(ChangeService, me), { collections: [{ collection: "customers" }], start: { case: "snapshot", value: {} } });
    try {
      await s.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));
      const from = s.events.length;
      await node.grpcJs(RecordService, ADMIN).writeRecords({ mutations: [{ ref: byId(id), set: { phone: str(CANARY.phoneLater), notes: str("stream") }, source: "crm-desktop" }] });
      await s.until((e) => e.slice(from).some((x) => x.kind.case === "upsert" && x.kind.value.id === id));
      const mine = s.events.filter((e) => (e.kind.case === "snapshotRecord" && e.kind.value.record!.id === id) || (e.kind.case === "upsert" && e.kind.value.id === id));
      expect(mine.length).toBe(2);
      expect(text(mine)).toContain("139****5678");
      const bucket = await node.grpcJs(ChangeService, me).getDigestBucket({ collection: "customers", bucketCount: 1, bucket: 0 });
      expect(bucket.records.some((r) => r.id === id)).toBe(true);
      expectNoCanary("stream events", text(s.events));
      expectNoCanary("digest bucket", text(bucket));
    } finally {
      s.close();
    }
  });

  it("the raw bytes of the wire carry no canary (gRPC binary and Connect JSON)", async () => {
    const headers = identityHeaders(me);
    const json = await fetch(`${node.webUrl}/deltamesh.v1.RecordService/ListRecords`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify({ collection: "customers", pageSize: 1000 }),
    });
    expect(json.status).toBe(200);
    const body = await json.text();
    expect(body).toContain("139****");
    expectNoCanary("Connect JSON body", body);
    const proto = await fetch(`${node.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "POST",
      headers: { "content-type": "application/proto", ...headers },
      body: toBinary(GetRecordRequestSchema, create(GetRecordRequestSchema, { ref: byId(id) })),
    });
    expect(proto.status).toBe(200);
    expectNoCanary("Connect binary body", Buffer.from(await proto.arrayBuffer()).toString("latin1"));
  });

  it("the audit log names fields and records, never values; in-clear reads are audited", async () => {
    // The same manager on the desktop sees phone and email in clear: that read is audited.
    await node.grpcJs(RecordService, eastManager("desktop")).getRecord({ ref: byId(id) });
    const as = node.grpcJs(AccessService, ADMIN);
    await expect
      .poll(async () => (await as.queryAuditLog({ kind: AuditEventKind.READ_UNMASKED, recordId: id, actor: "m-east" })).entries.length, { timeout: 5000 })
      .toBeGreaterThan(0);
    const unmasked = (await as.queryAuditLog({ kind: AuditEventKind.READ_UNMASKED, recordId: id, actor: "m-east" })).entries[0]!;
    expect(unmasked).toMatchObject({ actor: "m-east", deviceClass: "desktop", collection: "customers", recordIds: [id], fields: ["email", "phone"] });
    // The mobile reads above showed no sensitive field in clear: none of them is audited as such.
    const all = (await as.queryAuditLog({ pageSize: 1000 })).entries;
    expect(all.filter((e) => e.kind === AuditEventKind.READ_UNMASKED && e.deviceClass === "mobile")).toEqual([]);
    expectNoCanary("audit log", text(all));
  });

  it("the node's log lines hold no canary", async () => {
    await node.node.stop(); // flush everything the node would log
    expect(logLines.length).toBeGreaterThan(0);
    expectNoCanary("node log", logLines.join("\n"));
  });
});
