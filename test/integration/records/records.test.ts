// RecordService end to end: a real node on a real PostgreSQL, called through
// a @grpc/grpc-js client, a Connect client over gRPC/HTTP2 and a Connect
// client over HTTP/1.1 JSON. Every RPC and every bad-input case.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService, type WriteRecordsRequestSchema } from "../../../gen/deltamesh/v1/records_pb.js";
import { FieldOutcome_Status, type MutationSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { byId, byKey, enm, int, rejection, str } from "../../support/rpc.js";
import { forgedToken, refusal, tokenBytes } from "../../support/page-tokens.js";

type MutationInit = MessageInitShape<typeof MutationSchema>;

/** `region` is required in the shipped customers schema. */
const region = enm("east_china");

let node: TestNode;
let db: pg.Pool;
beforeAll(async () => {
  node = await startTestNode();
  db = new pg.Pool({ connectionString: node.node.databaseUrl, max: 2 });
});
afterAll(async () => {
  await db?.end();
  await node?.stop();
});


async function countRows(table: string, where = "true", params: unknown[] = []): Promise<number> {
  const res = await db.query<{ n: string }>(`SELECT count(*) AS n FROM ${table} WHERE ${where}`, params);
  return Number(res.rows[0]!.n);
}

let seq = 0;
const uid = (p: string) => `${p}-${process.pid}-${++seq}`;
/** A valid Chinese mobile number, distinct per call. */
const phone = () => `139${String(10_000_000 + (++seq * 7919) % 89_999_999).padStart(8, "0")}`;

const clients = [
  ["grpc-js", () => node.grpcJs(RecordService)],
  ["connect (gRPC over HTTP/2)", () => node.connect(RecordService)],
  ["connect (Connect JSON over HTTP/1.1)", () => node.connectWeb(RecordService)],
] as const;

describe.each(clients)("RecordService via %s", (_name, makeClient) => {
  let rs: ReturnType<typeof makeClient>;
  beforeAll(() => {
    rs = makeClient();
  });
  const write = (...mutations: MutationInit[]) =>
    rs.writeRecords({ mutations } as MessageInitShape<typeof WriteRecordsRequestSchema>);

  it("creates, reads and updates a record; phone numbers are normalized to E.164", async () => {
    const id = uid("c");
    const [created] = (await write({ ref: byId(id), set: { region, name: str("  Li Lei "), phone: str("138 0013 8000".replace("8000", String(1000 + seq))) }, source: "crm-desktop", device: "pc-1" })).results;
    expect(created!.created).toBe(true);
    expect(created!.version).toBe(1n);
    expect(created!.cursor).toMatch(/^c1_/);
    const got = (await rs.getRecord({ ref: byId(id) })).record!;
    expect(got.fields.name?.kind).toEqual({ case: "stringValue", value: "Li Lei" });
    expect(got.fields.phone?.kind.value).toMatch(/^\+86138001/);
    expect(got.clocks.name?.source).toBe("crm-desktop");
    expect(got.clocks.name?.device).toBe("pc-1");
    const [updated] = (await write({ ref: byId(id), set: { visits: int(3) }, expectedVersion: 1n })).results;
    expect(updated!.version).toBe(2n);
    expect(updated!.fields).toEqual([expect.objectContaining({ field: "visits", status: FieldOutcome_Status.APPLIED })]);
  });

  it("upserts by an identity key: the first write creates, the next updates the same record", async () => {
    const erp = uid("ERP");
    const first = (await write({ ref: byKey("erp_id", str(erp)), set: { region, name: str("Han Meimei") }, source: "erp" })).results[0]!;
    const second = (await write({ ref: byKey("erp_id", str(erp)), set: { level: enm("key") }, source: "erp" })).results[0]!;
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.id).toBe(first.id);
    expect(second.version).toBe(2n);
    const got = (await rs.getRecord({ ref: byKey("erp_id", str(erp)) })).record!;
    expect(got.id).toBe(first.id);
    expect(got.fields.erp_id?.kind.value).toBe(erp);
  });

  it("finds a record by a phone written in another format (identity values are normalized)", async () => {
    const p = phone();
    const { id } = (await write({ ref: byKey("phone", str(p)), set: { region, name: str("Wang") } })).results[0]!;
    const spaced = `+86 ${p.slice(0, 3)} ${p.slice(3, 7)} ${p.slice(7)}`;
    expect((await rs.getRecord({ ref: byKey("phone", str(spaced)) })).record!.id).toBe(id);
  });

  it("a stale expected_version fails with ABORTED, the current version in details, and writes nothing", async () => {
    const id = uid("c");
    await write({ ref: byId(id), set: { region, name: str("A") } });
    await write({ ref: byId(id), set: { region, name: str("B") } });
    const changesBefore = await countRows("changes", "record_id = $1", [id]);
    const err = await rejection(write({ ref: byId(id), set: { region, name: str("C") }, expectedVersion: 1n }));
    expect(err.code).toBe(Code.Aborted);
    const info = err.findDetails(ErrorInfoSchema)[0]!;
    expect(info.reason).toBe("VERSION_MISMATCH");
    expect(info.domain).toBe("deltamesh.dev");
    expect(info.metadata.current_version).toBe("2");
    expect(await countRows("changes", "record_id = $1", [id])).toBe(changesBefore);
    expect((await rs.getRecord({ ref: byId(id) })).record!.fields.name?.kind.value).toBe("B");
  });

  it("expected_version 0 creates only when the record does not exist", async () => {
    const id = uid("c");
    await write({ ref: byId(id), set: { region, name: str("A") }, expectedVersion: 0n });
    const err = await rejection(write({ ref: byId(id), set: { region, name: str("B") }, expectedVersion: 0n }));
    expect(err.code).toBe(Code.Aborted);
  });

  it("a retried client_mutation_id returns the first outcome and writes nothing", async () => {
    const id = uid("c");
    const cmid = uid("m");
    const m = { ref: byId(id), set: { region, name: str("Once") }, clientMutationId: cmid };
    const first = (await write(m)).results[0]!;
    const retry = (await write(m)).results[0]!;
    expect(retry.replayed).toBe(true);
    expect(retry.version).toBe(first.version);
    expect(retry.cursor).toBe(first.cursor);
    expect(await countRows("changes", "record_id = $1", [id])).toBe(1);
  });

  it("retries of several mutations of one record in one write each get their own first outcome and cursor", async () => {
    const id = uid("c");
    const [a, b, c] = [uid("m"), uid("m"), uid("m")];
    const batch: MutationInit[] = [
      { ref: byId(id), set: { region, name: str("One") }, clientMutationId: a },
      { ref: byId(id), set: { name: str("Two") }, clientMutationId: b },
      // Changes nothing: no change row, no cursor.
      { ref: byId(id), set: { name: str("Two") }, clientMutationId: c },
    ];
    const first = (await write(...batch)).results;
    expect(first.map((r) => r.version)).toEqual([1n, 2n, 2n]);
    expect(first[0]!.cursor).not.toBe(first[1]!.cursor);
    expect(first[2]!.cursor).toBe("");
    const retry = (await write(...batch)).results;
    expect(retry.map((r) => [r.replayed, r.version, r.cursor])).toEqual(first.map((r) => [true, r.version, r.cursor]));
    expect(await countRows("changes", "record_id = $1", [id])).toBe(2);
  });

  it("replays idempotency results stored before their seq had a column (migration 0010) with the cursor they hold", async () => {
    const id = uid("c");
    const cmid = uid("m");
    const m = { ref: byId(id), set: { region, name: str("Old") }, clientMutationId: cmid };
    const first = (await write(m)).results[0]!;
    // As a node of the previous version stored it: the cursor in the result, no seq.
    await db.query(
      `UPDATE applied_mutations SET seq = NULL, result = jsonb_set(result::jsonb, '{cursor}', to_jsonb($2::text))::json
        WHERE client_mutation_id = $1`,
      [cmid, first.cursor],
    );
    const retry = (await write(m)).results[0]!;
    expect(retry.replayed).toBe(true);
    expect(retry.cursor).toBe(first.cursor);
  });

  it("unknown collection is NOT_FOUND naming it", async () => {
    const err = await rejection(write({ ref: byId("x", "customerz"), set: { region, name: str("A") } }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain("customerz");
    expect(err.findDetails(ResourceInfoSchema)[0]?.resourceName).toBe("customerz");
  });

  it("unknown field, wrong type and an unparseable phone are INVALID_ARGUMENT with one violation each, and nothing is written", async () => {
    const id = uid("c");
    const err = await rejection(
      write(
        { ref: byId(uid("ok")), set: { region, name: str("fine") } },
        { ref: byId(id), set: { region, name: str("A"), nickname: str("x"), visits: str("three"), phone: str("12345") } },
      ),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    const violations = err.findDetails(BadRequestSchema)[0]!.fieldViolations;
    const byField = Object.fromEntries(violations.map((v) => [v.field, v]));
    expect(Object.keys(byField).sort()).toEqual(["mutations[1].set.nickname", "mutations[1].set.phone", "mutations[1].set.visits"]);
    expect(byField["mutations[1].set.nickname"]!.description).toContain("nickname");
    expect(byField["mutations[1].set.phone"]!.description).toMatch(/not a valid phone/);
    expect(await countRows("records", "id = $1", [id])).toBe(0);
    expect(await countRows("changes", "record_id = $1", [id])).toBe(0);
  });

  it("a missing required field is INVALID_ARGUMENT naming it", async () => {
    const err = await rejection(write({ ref: byId(uid("c")), set: { region: enm("east_china") } }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]!.fieldViolations.map((v) => v.field)).toContain("mutations[0].set.name");
  });

  it("a duplicate identity key is ALREADY_EXISTS naming the holder; the whole batch writes nothing", async () => {
    const p = phone();
    const holder = (await write({ ref: byId(uid("c")), set: { region, name: str("Holder"), phone: str(p) } })).results[0]!;
    const other = uid("c");
    const err = await rejection(write({ ref: byId(uid("c")), set: { region, name: str("Fine") } }, { ref: byId(other), set: { region, name: str("Dup"), phone: str(p) } }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.findDetails(ErrorInfoSchema)[0]!.metadata.holder_id).toBe(holder.id);
    expect(err.rawMessage).toContain(holder.id);
    expect(await countRows("records", "id = $1", [other])).toBe(0);
  });

  it("an empty or oversize batch is refused with INVALID_ARGUMENT", async () => {
    expect((await rejection(write())).code).toBe(Code.InvalidArgument);
    const many = Array.from({ length: 1001 }, (_, i) => ({ ref: byId(`big-${i}`), set: { region, name: str("x") } }));
    const err = await rejection(write(...many));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(ErrorInfoSchema)[0]!.reason).toBe("BATCH_TOO_LARGE");
  });

  it("a message over the size limit is RESOURCE_EXHAUSTED and the server keeps serving", async () => {
    const huge = "x".repeat(5 * 1024 * 1024);
    const err = await rejection(write({ ref: byId(uid("c")), set: { region, name: str(huge) } }));
    expect(err.code).toBe(Code.ResourceExhausted);
    const id = uid("c");
    await write({ ref: byId(id), set: { region, name: str("still fine") } });
    expect((await rs.getRecord({ ref: byId(id) })).record!.version).toBe(1n);
  });

  it("gets many records at once and lists the missing ones", async () => {
    const a = uid("c");
    const b = uid("c");
    await write({ ref: byId(a), set: { region, name: str("A") } }, { ref: byId(b), set: { region, name: str("B") } });
    const res = await rs.batchGetRecords({ refs: [byId(a), byId("nope-" + a), byId(b)] });
    expect(res.records.map((r) => r.id)).toEqual([a, b]);
    expect(res.missing.map((r) => r.target.value)).toEqual(["nope-" + a]);
  });

  it("lists a collection in stable id order, page by page, filtered by field equality", async () => {
    const tag = uid("owner");
    const ids = Array.from({ length: 7 }, (_, i) => `${tag}-${i}`);
    await write(...ids.map((id, i) => ({ ref: byId(id), set: { region, name: str(id), owner: str(i % 2 ? "other" : tag) } })));
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await rs.listRecords({ collection: "customers", pageSize: 2, pageToken, filters: [{ field: "owner", value: str(tag) }] });
      seen.push(...page.records.map((r) => r.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual(ids.filter((_, i) => i % 2 === 0));
    const err = await rejection(rs.listRecords({ collection: "customers", pageSize: 2, pageToken: "garbage" }));
    expect(err.code).toBe(Code.InvalidArgument);
    const unknown = await rejection(rs.listRecords({ collection: "customers", filters: [{ field: "shoe_size", value: int(42) }] }));
    expect(unknown.findDetails(BadRequestSchema)[0]!.fieldViolations[0]!.field).toBe("filters[0].field");
  });

  it("two filters on one field are INVALID_ARGUMENT (DUPLICATE_FILTER), not one silently dropped", async () => {
    const err = await rejection(
      rs.listRecords({ collection: "customers", filters: [{ field: "region", value: region }, { field: "region", value: enm("north_china") }] }),
    );
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => [v.field, v.reason])).toEqual([["filters[1].field", "DUPLICATE_FILTER"]]);
  });

  it("a filter on a list field matches the whole list, as a stream filter does, not any list containing it", async () => {
    const tag = uid("tag");
    const [exact, more] = [uid("c"), uid("c")];
    const tags = (...values: string[]) => ({ kind: { case: "stringListValue" as const, value: { values } } });
    await write({ ref: byId(exact), set: { region, name: str("Exact"), tags: tags(tag) } }, { ref: byId(more), set: { region, name: str("More"), tags: tags(tag, "other") } });
    const page = await rs.listRecords({ collection: "customers", filters: [{ field: "tags", value: tags(tag) }] });
    expect(page.records.map((r) => r.id)).toEqual([exact]);
  });

  it("deletes leave a tombstone: NOT_FOUND on get, visible with include_deleted and in history", async () => {
    const id = uid("c");
    await write({ ref: byId(id), set: { region, name: str("Gone") } });
    const del = await rs.deleteRecord({ ref: byId(id), source: "crm-desktop", device: "pc-9" });
    expect(del.result!.deleted).toBe(true);
    expect(del.result!.version).toBe(2n);
    expect((await rejection(rs.getRecord({ ref: byId(id) }))).code).toBe(Code.NotFound);
    expect((await rs.getRecord({ ref: byId(id), includeDeleted: true })).record!.deleted).toBe(true);
    expect((await rejection(rs.deleteRecord({ ref: byId("never-" + id) }))).code).toBe(Code.NotFound);
    const history = await rs.getRecordHistory({ ref: byId(id) });
    expect(history.changes.map((c) => [c.oldVersion, c.newVersion, c.deleted])).toEqual([
      [0n, 1n, false],
      [1n, 2n, true],
    ]);
    expect(history.changes[1]!.device).toBe("pc-9");
  });

  it("history says who changed which fields when, from which source and device, page by page", async () => {
    const id = uid("c");
    const edit = new Date("2026-01-02T03:04:05Z");
    await write({ ref: byId(id), set: { region, name: str("H") }, source: "sales-app", device: "phone-7", editTime: timestampFromDate(edit) });
    await write({ ref: byId(id), set: { visits: int(1) }, clear: [], source: "erp", device: "erp-1" });
    await write({ ref: byId(id), clear: ["visits"], source: "crm-desktop", device: "pc-2" });
    const first = await rs.getRecordHistory({ ref: byId(id), pageSize: 2 });
    expect(first.changes).toHaveLength(2);
    const rest = await rs.getRecordHistory({ ref: byId(id), pageSize: 2, pageToken: first.nextPageToken });
    const all = [...first.changes, ...rest.changes];
    expect(all.map((c) => c.source)).toEqual(["sales-app", "erp", "crm-desktop"]);
    expect(all.map((c) => c.device)).toEqual(["phone-7", "erp-1", "pc-2"]);
    expect(Object.keys(all[0]!.set).sort()).toEqual(["name", "region"]);
    expect(all[2]!.cleared).toEqual(["visits"]);
    // Each change carries the clock it gave the fields it touched.
    expect(all[0]!.clocks.name).toMatchObject({ version: 1n, source: "sales-app", device: "phone-7" });
    expect(all[0]!.clocks.name!.hlc >> 16n).toBe(BigInt(edit.getTime()));
    expect(all[2]!.clocks.visits).toMatchObject({ version: 3n, source: "crm-desktop", device: "pc-2", actor: "tester" });
    expect(all.every((c) => c.actor === "tester")).toBe(true); // the authenticated subject of the test token
    expect(rest.nextPageToken).toBe("");
  });

  it("page tokens are sealed: no record id or query in their bytes, and they still page", async () => {
    const tag = uid("sealed");
    const ids = Array.from({ length: 3 }, (_, i) => `${tag}-${i}`);
    await write(...ids.map((id) => ({ ref: byId(id), set: { region, name: str(id), owner: str(tag) } })));
    const first = await rs.listRecords({ collection: "customers", pageSize: 2, filters: [{ field: "owner", value: str(tag) }] });
    expect(first.records.map((r) => r.id)).toEqual(ids.slice(0, 2));
    const bytes = tokenBytes(first.nextPageToken);
    for (const s of [...ids, tag, "customers", "after"]) expect(bytes).not.toContain(s);
    const rest = await rs.listRecords({ collection: "customers", pageSize: 2, pageToken: first.nextPageToken, filters: [{ field: "owner", value: str(tag) }] });
    expect(rest.records.map((r) => r.id)).toEqual(ids.slice(2));
    const history = await rs.getRecordHistory({ ref: byId(ids[0]!), pageSize: 1 });
    expect(tokenBytes(history.nextPageToken)).not.toContain(ids[0]!);
  });

  it("refuses page tokens it did not issue, or holding a position it never pages by, as INVALID_PAGE_TOKEN", async () => {
    const id = uid("pt");
    await write({ ref: byId(id), set: { region, name: str("v0") } });
    await write({ ref: byId(id), set: { name: str("v1") } });
    await write({ ref: byId(`${id}-z`), set: { region, name: str("after it") } });
    // The handlers' queries: a forged token with a valid position is honoured, so the ones below fail for their position.
    const historyQuery = { collection: "customers", id };
    const listQuery = { collection: "customers", equals: {}, deleted: false };
    expect((await rs.getRecordHistory({ ref: byId(id), pageToken: forgedToken(historyQuery, "1") })).changes.length).toBeGreaterThan(0);
    expect((await rs.listRecords({ collection: "customers", pageSize: 1, pageToken: forgedToken(listQuery, id) })).records).toHaveLength(1);

    const badToken = { code: Code.InvalidArgument, reason: "INVALID_ARGUMENT", violations: ["page_token: INVALID_PAGE_TOKEN"] };
    for (const after of ["abc", "1000000000000000000000000000000", "9223372036854775808", "-1", "1.5", ""]) {
      expect(refusal(await rejection(rs.getRecordHistory({ ref: byId(id), pageToken: forgedToken(historyQuery, after) }))), after).toEqual(badToken);
    }
    for (const after of ["a\u0000b", ""]) {
      expect(refusal(await rejection(rs.listRecords({ collection: "customers", pageToken: forgedToken(listQuery, after) }))), JSON.stringify(after)).toEqual(badToken);
    }
    // A real token with one byte changed, and the old unsealed form, are refused the same way.
    const real = (await rs.getRecordHistory({ ref: byId(id), pageSize: 1 })).nextPageToken;
    const tampered = Buffer.from(real, "base64url");
    tampered[tampered.length - 20] = tampered[tampered.length - 20]! ^ 1;
    const unsealed = Buffer.from(JSON.stringify({ q: "x", after: "1" })).toString("base64url");
    for (const pageToken of [tampered.toString("base64url"), unsealed]) {
      expect(refusal(await rejection(rs.getRecordHistory({ ref: byId(id), pageToken })))).toEqual(badToken);
      expect(refusal(await rejection(rs.listRecords({ collection: "customers", pageToken })))).toEqual(badToken);
    }
  });
});

describe("write pipeline", () => {
  it("coalesces concurrent writes into fewer transactions (group commit) and gives each caller its own outcome", async () => {
    const rs = node.grpcJs(RecordService);
    const commits = async () =>
      Number((await db.query<{ n: string }>("SELECT xact_commit AS n FROM pg_stat_database WHERE datname = current_database()")).rows[0]!.n);
    const before = await commits();
    const ids = Array.from({ length: 200 }, () => uid("gc"));
    const results = await Promise.all(ids.map((id) => rs.writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str(id) } }] })));
    const after = await commits();
    expect(results.map((r) => r.results[0]!.id)).toEqual(ids);
    expect(new Set(results.map((r) => r.results[0]!.cursor)).size).toBe(200);
    // pg_stat counters are updated asynchronously; the count only needs to be far below one per write.
    expect(after - before).toBeLessThan(150);
  });

  it("concurrent writers to one record each get a distinct version and none is lost", async () => {
    const rs = node.grpcJs(RecordService);
    const id = uid("hot");
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str("hot") } }] });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        rs.writeRecords({ mutations: [{ ref: byId(id), set: { notes: str(`edit ${i}`) }, baseVersion: 0n }] }),
      ),
    );
    const versions = results.map((r) => Number(r.results[0]!.version)).sort((a, b) => a - b);
    expect(new Set(versions).size).toBe(40);
    const history = await rs.getRecordHistory({ ref: byId(id), pageSize: 100 });
    expect(history.changes.map((c) => Number(c.newVersion))).toEqual(Array.from({ length: 41 }, (_, i) => i + 1));
  });

  it("tenants never see each other's records", async () => {
    const id = uid("shared-id");
    const a = node.connect(RecordService, { tenant: "acme" });
    const b = node.connect(RecordService, { tenant: "globex" });
    await a.writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str("Acme's") } }] });
    await b.writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str("Globex's") } }] });
    expect((await a.getRecord({ ref: byId(id) })).record!.fields.name?.kind.value).toBe("Acme's");
    expect((await b.getRecord({ ref: byId(id) })).record!.fields.name?.kind.value).toBe("Globex's");
    expect((await rejection(node.connect(RecordService, { tenant: "initech" }).getRecord({ ref: byId(id) }))).code).toBe(Code.NotFound);
  });

  it("raw database errors never reach clients", async () => {
    const rs = node.connect(RecordService);
    const id = uid("c");
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str("x") } }] });
    // Break the table under the running node: the client must get a clean INTERNAL, not driver text.
    await db.query("ALTER TABLE records RENAME COLUMN fields TO fields_gone");
    try {
      const err = await rejection(rs.getRecord({ ref: byId(id) }));
      expect(err.code).toBe(Code.Internal);
      expect(err.rawMessage).not.toMatch(/column|fields_gone|relation|postgres/i);
    } finally {
      await db.query("ALTER TABLE records RENAME COLUMN fields_gone TO fields");
    }
  });
});

