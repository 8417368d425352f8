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

const UPDATE_MS = 1_790_000_000_000;

interface Checked {
  id: string;
  version: number;
  /** Update time to check too (epoch ms); absent: version only. */
  updateMs?: number;
}

/**
 * Calls the function with existing records to update (given out of order
 * on purpose: it sorts them), each to `name` at its version + 1, and records
 * only to check.
 */
async function update(records: (Checked & { name: string })[], check: Checked[] = []) {
  const existing = [
    arrayLiteral(records.map(() => TENANT)),
    arrayLiteral(records.map(() => "customers")),
    arrayLiteral(records.map((r) => r.id)),
    arrayLiteral(records.map((r) => r.version)),
    arrayLiteral(records.map((r) => r.updateMs ?? null)),
    arrayLiteral(records.map((r) => r.version + 1)),
    arrayLiteral(records.map(() => false)),
    arrayLiteral(records.map(() => UPDATE_MS)),
    records.map((r) => JSON.stringify({ name: r.name })).join("\u001e"),
    records.map(() => "{}").join("\u001e"),
  ];
  const checks =
    check.length === 0
      ? [null, null, null, null, null]
      : [
          arrayLiteral(check.map(() => TENANT)),
          arrayLiteral(check.map(() => "customers")),
          arrayLiteral(check.map((r) => r.id)),
          arrayLiteral(check.map((r) => r.version)),
          arrayLiteral(check.map((r) => r.updateMs ?? null)),
        ];
  const params = [...(records.length === 0 ? existing.map(() => null) : existing), ...checks];
  const placeholders = params.map((_, i) => `$${i + 1}`).join(", ");
  return db.query(`SELECT * FROM deltamesh_apply_writes_checked(${placeholders}, 0, ${"NULL, ".repeat(9 + 5 + 5 + 14)} NULL)`, params);
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
    const plans = await statementPlans(
      db,
      async () => {
        await update([
          { id: "c-3", version: 3, name: "new 3" },
          { id: "c-1", version: 3, name: "new 1" },
          { id: "c-2", version: 3, name: "new 2" },
        ]);
      },
      { commit: true },
    );
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
    const err = await update([
      { id: "c-1", version: 4, name: "x" },
      { id: "c-2", version: 3, name: "y" },
      { id: "c-3", version: 4, name: "z" },
    ]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "40001", hint: "deltamesh: stale read" });
    expect(isStaleRead(err)).toBe(true);
    expect(await stored()).toEqual(before);
  });

  it("writes nothing for a record that no longer exists", async () => {
    const before = await stored();
    const err = await update([
      { id: "c-1", version: 4, name: "x" },
      { id: "c-gone", version: 1, name: "y" },
    ]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isStaleRead(err)).toBe(true);
    expect(await stored()).toEqual(before);
    const gone = await db.query("SELECT 1 FROM records WHERE tenant = $1 AND id = 'c-gone'", [TENANT]);
    expect(gone.rowCount).toBe(0);
  });

  it("checks records it does not write, and the update time where one is given", async () => {
    const before = await stored();
    const times = await db.query<{ id: string; ms: string }>(
      "SELECT id, (extract(epoch FROM update_time) * 1000)::bigint AS ms FROM records WHERE tenant = $1 ORDER BY id",
      [TENANT],
    );
    const ms = new Map(times.rows.map((r) => [r.id, Number(r.ms)]));
    // Version right, update time not: the same version written again by someone else.
    const moved = await update([{ id: "c-1", version: 4, name: "x" }], [{ id: "c-2", version: 4, updateMs: ms.get("c-2")! + 1 }]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isStaleRead(moved)).toBe(true);
    const gone = await update([], [{ id: "c-2", version: 5 }]).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isStaleRead(gone)).toBe(true);
    expect(await stored()).toEqual(before);
    // Both as they are: the written one is updated, the checked one left.
    await update([{ id: "c-1", version: 4, updateMs: ms.get("c-1")!, name: "x" }], [{ id: "c-2", version: 4, updateMs: ms.get("c-2")! }]);
    expect(await stored()).toEqual(["c-1 v5 x", "c-2 v4 new 2", "c-3 v4 new 3"]);
  });

  it("refuses columns of different lengths before writing", async () => {
    const before = await stored();
    const bad = [null, null, null, null, null, null, null, null, null, null, arrayLiteral([TENANT]), "{customers}", "{c-1}", "{5,6}", "{NULL}"];
    await expect(
      db.query(`SELECT * FROM deltamesh_apply_writes_checked(${bad.map((_, i) => `$${i + 1}`).join(", ")}, 0, ${"NULL, ".repeat(9 + 5 + 5 + 14)} NULL)`, bad),
    ).rejects.toMatchObject({ code: "22023" });
    expect(await stored()).toEqual(before);
  });
});
