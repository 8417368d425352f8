// Mass assignment and write rights: a write touching any field outside the
// writer's rights changes nothing at all; server-owned parts of a record
// (tenant, actor, version, clocks, the delete flag) cannot be set by a write.
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import type { TestNode } from "../../support/node.js";
import { bool, byId, byKey, dec, enm, rejection, str } from "../../support/rpc.js";
import { ADMIN, eastManager, eastSales, FINANCE, seed, startAccessNode, uid } from "./helpers.js";

let node: TestNode;
let db: pg.Pool;
beforeAll(async () => {
  node = await startAccessNode();
  db = new pg.Pool({ connectionString: node.node.databaseUrl, max: 2 });
});
afterAll(async () => {
  await db?.end();
  await node?.stop();
});

/** The stored row and its change count, straight from PostgreSQL. */
async function stored(id: string) {
  const rec = await db.query<{ version: string; fields: Record<string, unknown>; clocks: unknown }>("SELECT version, fields, clocks FROM records WHERE id = $1", [id]);
  const changes = await db.query<{ n: string }>("SELECT count(*) AS n FROM changes WHERE record_id = $1", [id]);
  return { row: rec.rows[0], changes: Number(changes.rows[0]!.n) };
}

describe("mass assignment", () => {
  it("a write mixing allowed and forbidden fields is refused whole and changes nothing", async () => {
    const id = await seed(node, uid("m"), { region: enm("east_china"), credit_limit: dec("1000"), notes: str("before") });
    const before = await stored(id);
    const rs = node.grpcJs(RecordService, eastSales());
    const e = await rejection(
      rs.writeRecords({ mutations: [{ ref: byId(id), set: { notes: str("after"), credit_limit: dec("999999"), id_number: str("110105199001011234") }, clear: ["erp_id"] }] }),
    );
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("FIELD_NOT_WRITABLE");
    expect(e.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.field).sort()).toEqual([
      "mutations[0].clear",
      "mutations[0].set.credit_limit",
      "mutations[0].set.id_number",
    ]);
    expect(await stored(id)).toEqual(before);
  });

  it("one forbidden mutation in a batch: none of the batch is written", async () => {
    const a = await seed(node, uid("m"), { region: enm("east_china") });
    const b = await seed(node, uid("m"), { region: enm("east_china") });
    const [beforeA, beforeB] = [await stored(a), await stored(b)];
    const rs = node.grpcJs(RecordService, eastSales());
    const fresh = uid("m");
    const e = await rejection(
      rs.writeRecords({
        mutations: [
          { ref: byId(a), set: { notes: str("ok") } },
          { ref: byId(fresh), set: { name: str("new"), region: enm("east_china") } },
          { ref: byId(b), set: { credit_limit: dec("5") } },
        ],
      }),
    );
    expect(e.code).toBe(Code.PermissionDenied);
    expect(await stored(a)).toEqual(beforeA);
    expect(await stored(b)).toEqual(beforeB);
    expect((await stored(fresh)).row).toBeUndefined();
  });

  it("a forbidden field is refused even when the merge would keep the current value", async () => {
    const id = await seed(node, uid("m"), { region: enm("east_china"), credit_limit: dec("1") });
    const before = await stored(id);
    // credit_limit is source_priority: a blind sales write would lose anyway, but it must not even be tried.
    const e = await rejection(node.grpcJs(RecordService, eastSales()).writeRecords({ mutations: [{ ref: byId(id), set: { credit_limit: dec("2") }, source: "erp" }] }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(await stored(id)).toEqual(before);
  });

  it("an upsert by an identity key the writer may not set creates nothing", async () => {
    const erp = uid("ERP");
    const e = await rejection(node.grpcJs(RecordService, eastSales()).writeRecords({ mutations: [{ ref: byKey("erp_id", str(erp)), set: { name: str("x"), region: enm("east_china") } }] }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect((await db.query("SELECT 1 FROM record_keys WHERE value = $1", [JSON.stringify(erp)])).rowCount).toBe(0);
  });

  it("server-owned parts cannot be written: the delete flag, unknown fields, tenant and actor", async () => {
    const id = await seed(node, uid("m"), { region: enm("east_china") });
    const rs = node.grpcJs(RecordService, { ...eastSales(), tenant: "default" });
    const e = await rejection(rs.writeRecords({ mutations: [{ ref: byId(id), set: { _deleted: bool(true), tenant: str("globex"), version: str("99") } }] }));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => v.reason)).toEqual(["UNKNOWN_FIELD", "UNKNOWN_FIELD", "UNKNOWN_FIELD"]);
    // The actor of a change is the authenticated subject, whatever the request says about its source or device.
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { notes: str("n") }, source: "erp", device: "admin-console" }] });
    const got = (await node.grpcJs(RecordService, ADMIN).getRecord({ ref: byId(id) })).record!;
    expect(got.tenant).toBe("default");
    expect(got.clocks.notes?.actor).toBe("s-east");
  });
});

describe("scope on writes", () => {
  it("moving a record out of the writer's scope is refused and nothing changes", async () => {
    const id = await seed(node, uid("s"), { region: enm("east_china") });
    const before = await stored(id);
    const rs = node.grpcJs(RecordService, eastSales());
    const e = await rejection(rs.writeRecords({ mutations: [{ ref: byId(id), set: { region: enm("north_china"), notes: str("moving") }, baseVersion: BigInt(before.row!.version) }] }));
    expect(e.code).toBe(Code.PermissionDenied);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("OUT_OF_SCOPE_WRITE");
    expect(await stored(id)).toEqual(before);
  });

  it("handing a record to oneself keeps it in scope: the owner rule admits it anywhere", async () => {
    const id = await seed(node, uid("s"), { region: enm("east_china") });
    const rs = node.grpcJs(RecordService, eastSales());
    const v = BigInt((await stored(id)).row!.version);
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { owner: str("s-east") }, baseVersion: v }] });
    const r = await rs.writeRecords({ mutations: [{ ref: byId(id), set: { region: enm("north_china") }, baseVersion: v + 1n }] });
    expect(r.results[0]!.version).toBe(v + 2n);
    expect((await rs.getRecord({ ref: byId(id) })).record!.fields.region?.kind.value).toBe("north_china");
  });

  it("deletes need the delete right and scope", async () => {
    const east = await seed(node, uid("d"), { region: enm("east_china") });
    expect((await rejection(node.grpcJs(RecordService, eastSales()).deleteRecord({ ref: byId(east) }))).code).toBe(Code.PermissionDenied);
    expect((await rejection(node.grpcJs(RecordService, FINANCE).deleteRecord({ ref: byId(east) }))).code).toBe(Code.PermissionDenied);
    const r = await node.grpcJs(RecordService, eastManager()).deleteRecord({ ref: byId(east) });
    expect(r.result?.deleted).toBe(true);
  });

  it("finance writes only invoicing fields, anywhere", async () => {
    const id = await seed(node, uid("f"), { region: enm("south_china") });
    const rs = node.grpcJs(RecordService, FINANCE);
    await rs.writeRecords({ mutations: [{ ref: byId(id), set: { invoice_title: str("Canary Co Ltd") } }] });
    expect((await rejection(rs.writeRecords({ mutations: [{ ref: byId(id), set: { name: str("renamed") } }] }))).code).toBe(Code.PermissionDenied);
  });
});
