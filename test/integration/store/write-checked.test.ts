// The checked write (migration 0012): existing records are locked in the
// global lock order, one probe each, and updated only at the
// versions the node merged from; a record that moved fails the whole call
// with the stale-read serialization failure and writes nothing.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { arrayLiteral } from "../../../services/store/transaction.js";
import { isStaleRead } from "../../../services/store/pg-errors.js";
import { RecordStore } from "../../../services/store/record-store.js";
import { testDatabaseUrl } from "../../support/env.js";
import { planNodes, statementPlans } from "../../support/plans.js";

let store: RecordStore;
let db: pg.Client;
const TENANT = "t-checked";
const IDS = ["c-1", "c-2", "c-3"];

beforeAll(async () => {
  const url = await testDatabaseUrl();
  store = await RecordStore.open({ url });
  db = new pg.Client(url);
  await db.connect();
  // Statistics of an empty table, then a tiny one: what makes the planner
  // hash the input and scan the table (taking rows in table order).
  await db.query("ALTER TABLE records SET (autovacuum_enabled = false)");
  await db.query("ANALYZE records");
  await db.query(
    `INSERT INTO records (tenant, collection, id, version, fields, clocks, create_time, update_time)
     SELECT $1, 'customers', id, 3, '{"name": "old"}', '{}', now(), now() FROM unnest($2::text[]) id`,
    [TENANT, IDS],
  );
});
afterAll(async () => {
  await db?.end();
  await store?.close();
});

const nodes = planNodes;

/** Calls the function with only existing records (ids in the given order), expected versions as given. */
async function update(ids: string[], expected: (number | null)[], names: string[]) {
  const existing = [
    arrayLiteral(ids.map(() => TENANT)),
    arrayLiteral(ids.map(() => "customers")),
    arrayLiteral(ids),
    arrayLiteral(expected),
    arrayLiteral(expected.map((v) => (v ?? 0) + 1)),
    arrayLiteral(ids.map(() => false)),
    arrayLiteral(ids.map(() => 1_790_000_000_000)),
    names.map((n) => JSON.stringify({ name: n })).join("\u001e"),
    ids.map(() => "{}").join("\u001e"),
  ];
  const params = existing.map((_, i) => `$${i + 1}`).join(", ");
  return db.query(`SELECT * FROM deltamesh_apply_writes_checked(${params}, 0, ${"NULL, ".repeat(9 + 5 + 5 + 14)} NULL)`, existing);
}

async function stored(): Promise<string[]> {
  const res = await db.query<{ row: string }>(
    "SELECT id || ' v' || version || ' ' || (fields ->> 'name') AS row FROM records WHERE tenant = $1 ORDER BY id",
    [TENANT],
  );
  return res.rows.map((r) => r.row);
}

describe("deltamesh_apply_writes_checked", () => {
  it("updates records at the versions given, locking them in the global order, even in a tiny table", async () => {
    // Given out of order: the function sorts them.
    const plans = await statementPlans(db, () => update(["c-3", "c-1", "c-2"], [3, 3, 3], ["new 3", "new 1", "new 2"]).then(() => undefined), {
      commit: true,
    });
    expect(await stored()).toEqual(["c-1 v4 new 1", "c-2 v4 new 2", "c-3 v4 new 3"]);
    // The lock: the input sorted, then for each record in that order a probe
    // that locks it (a join the planner reorders would take them in table order).
    const lock = plans.find((p) => /FOR UPDATE/.test(p["Query Text"]));
    expect(lock).toBeDefined();
    const loop = nodes(lock!.Plan).find((n) => n["Node Type"] === "Nested Loop");
    expect(loop).toBeDefined();
    const [outer, inner] = loop!.Plans!;
    expect(nodes(outer!).map((n) => n["Node Type"])).toContain("Sort");
    const probe = nodes(inner!);
    expect(probe.map((n) => n["Node Type"])).toContain("LockRows");
    expect(probe.filter((n) => n["Relation Name"] === "records")).toHaveLength(1);
  });

  it("writes nothing when one record moved past the version given, with the stale-read serialization failure", async () => {
    const before = await stored();
    const err = await update(IDS, [4, 3, 4], ["x", "y", "z"]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "40001", hint: "deltamesh: stale read" });
    expect(isStaleRead(err)).toBe(true);
    expect(await stored()).toEqual(before);
  });

  it("writes nothing for a record that no longer exists", async () => {
    const before = await stored();
    const err = await update(["c-1", "c-gone"], [4, 1], ["x", "y"]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isStaleRead(err)).toBe(true);
    expect(await stored()).toEqual(before);
    const gone = await db.query("SELECT 1 FROM records WHERE tenant = $1 AND id = 'c-gone'", [TENANT]);
    expect(gone.rowCount).toBe(0);
  });

  it("refuses columns of different lengths before writing", async () => {
    const before = await stored();
    await expect(update(IDS, [4, 4], ["x", "y", "z"])).rejects.toMatchObject({ code: "22023" });
    expect(await stored()).toEqual(before);
  });
});
