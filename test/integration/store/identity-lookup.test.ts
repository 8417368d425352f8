// Identity lookups probe the primary key of record_keys whatever the
// statistics say. Early in a bulk import the table's statistics describe a
// nearly empty table; the planner then preferred another index that matched
// only (tenant, collection) and filtered every key for each lookup (a 500-row
// import batch took 24 s at 30,000 keys); as a join it hashed the whole
// table for every batch. The plan is checked right after statistics were
// taken on an empty table and 30,000 keys were added.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { APPLIED_INSERT_SQL, identityStatement, lockStatement, RecordStore } from "../../../services/store/record-store.js";
import { arrayLiteral } from "../../../services/store/transaction.js";
import { testDatabaseUrl } from "../../support/env.js";
import { planNodes, statementPlans, type PlanNode } from "../../support/plans.js";

const KEYS = 15_000;
let store: RecordStore;
let db: pg.Client;

beforeAll(async () => {
  const url = await testDatabaseUrl();
  store = await RecordStore.open({ url });
  db = new pg.Client(url);
  await db.connect();
  await db.query("ALTER TABLE record_keys SET (autovacuum_enabled = false)");
  await db.query("ANALYZE record_keys");
  await db.query(
    `INSERT INTO record_keys (tenant, collection, field, value, record_id)
     SELECT 'default', 'customers', f, format('"%s%s"', p, lpad(i::text, 8, '0')), 'r' || i
       FROM generate_series(1, $1::int) i, (VALUES ('erp_id', 'ERP'), ('phone', '+86139')) v(f, p)`,
    [KEYS],
  );
});
afterAll(async () => {
  await db?.end();
  await store?.close();
});

const nodes = planNodes;

describe("identity lookups", () => {
  it("probe record_keys by its primary key, even with statistics of an empty table", async () => {
    const lookups = Array.from({ length: 1500 }, (_, i) => ({
      tenant: "default",
      collection: "customers",
      field: i % 2 === 0 ? "erp_id" : "phone",
      // Half present, half new (as in an import of new customers).
      value: `${i % 2 === 0 ? "ERP" : "+86139"}${String(i < 750 ? i * 10 + 1 : KEYS + i).padStart(8, "0")}`,
    }));
    const { text, values } = identityStatement(lookups);
    const res = await db.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${text}`, [...values]);
    const onKeys = nodes(res.rows[0]!["QUERY PLAN"][0].Plan).filter((n) => n["Relation Name"] === "record_keys");
    expect(onKeys.map((n) => `${n["Node Type"]} ${n["Index Name"] ?? ""}`.trim())).toEqual(["Index Scan record_keys_pkey"]);

    // And the lookup finds exactly the keys that exist.
    const found = await db.query<{ value: string; record_id: string | null }>(text, [...values]);
    expect(found.rows.filter((r) => r.record_id !== null).length).toBe(750);
  });

  it("lock records by primary-key probes, by id and by identity value alike", async () => {
    const ids = Array.from({ length: 500 }, (_, i) => ({ tenant: "default", collection: "customers", id: `r${i * 7 + 1}` }));
    const holders = Array.from({ length: 500 }, (_, i) => ({
      tenant: "default",
      collection: "customers",
      field: "erp_id",
      value: `ERP${String(i * 13 + 1).padStart(8, "0")}`,
    }));
    const lock = lockStatement(ids, holders);
    const res = await db.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${lock.text}`, [...lock.values]);
    const plan = nodes(res.rows[0]!["QUERY PLAN"][0].Plan);
    const access = (table: string) => plan.filter((n) => n["Relation Name"] === table).map((n) => `${n["Node Type"]} ${n["Index Name"] ?? ""}`.trim());
    expect(access("record_keys")).toEqual(["Index Scan record_keys_pkey"]);
    expect(access("records")).toEqual(["Index Scan records_pkey"]);
  });

  // The current write function (0012, which has 0011 write the keys), and
  // the 0011 and 0009 ones that nodes of previous versions still call during an upgrade.
  type Removal = { tenant: string; collection: string; field: string; value: string; record_id: string };
  const removalColumns = (removals: Removal[]) =>
    (["tenant", "collection", "field", "value", "record_id"] as const).map((c) => arrayLiteral(removals.map((r) => r[c])));
  const removalCalls: [string, (removals: Removal[]) => [string, string[]]][] = [
    [
      "deltamesh_apply_writes_checked",
      (removals) => [
        `SELECT * FROM deltamesh_apply_writes_checked(${"NULL, ".repeat(10 + 5)} 0, ${"NULL, ".repeat(9)} $1, $2, $3, $4, $5, ${"NULL, ".repeat(5 + 14)} NULL)`,
        removalColumns(removals),
      ],
    ],
    [
      "deltamesh_apply_writes_columns",
      (removals) => [
        `SELECT * FROM deltamesh_apply_writes_columns(0, ${"NULL, ".repeat(9)} $1, $2, $3, $4, $5, ${"NULL, ".repeat(5 + 14)} NULL)`,
        removalColumns(removals),
      ],
    ],
    ["deltamesh_apply_writes_timed", (removals) => ["SELECT * FROM deltamesh_apply_writes_timed(NULL, NULL, $1::json, NULL, NULL, NULL)", [JSON.stringify(removals)]]],
  ];
  it.each(removalCalls)("remove keys by primary-key probes inside the write function %s, and record_keys has no other index", async (_name, call) => {
    const indexes = await db.query<{ indexname: string }>("SELECT indexname FROM pg_indexes WHERE tablename = 'record_keys'");
    expect(indexes.rows.map((r) => r.indexname)).toEqual(["record_keys_pkey"]);
    // Plans of the statements the function runs, as auto_explain reports them to this session.
    const plans = await statementPlans(
      db,
      async () => {
        const removals = Array.from({ length: 500 }, (_, i) => ({
          tenant: "default",
          collection: "customers",
          field: "phone",
          value: JSON.stringify(`+86139${String(i * 11 + 1).padStart(8, "0")}`),
          record_id: `r${i * 11 + 1}`,
        }));
        const before = await db.query<{ n: string }>("SELECT count(*) AS n FROM record_keys");
        const [sql, params] = call(removals);
        await db.query(sql, params);
        const after = await db.query<{ n: string }>("SELECT count(*) AS n FROM record_keys");
        expect(Number(before.rows[0]!.n) - Number(after.rows[0]!.n)).toBe(removals.length);
      },
      { commit: false },
    );
    const removal = plans.find((p) => /DELETE FROM record_keys/.test(p["Query Text"]));
    expect(removal).toBeDefined();
    const onKeys = nodes(removal!.Plan).filter((n) => n["Relation Name"] === "record_keys");
    expect(onKeys.map((n) => n["Node Type"])).not.toContain("Seq Scan");
    expect(onKeys.map((n) => `${n["Node Type"]} ${n["Index Name"] ?? ""}`.trim())).toContain("Index Scan record_keys_pkey");
  });

  it("find the seq of each idempotency row's change by an index probe of the change log, even with statistics of an empty log", async () => {
    await db.query("BEGIN");
    try {
      await db.query("ALTER TABLE changes SET (autovacuum_enabled = false)");
      await db.query("ANALYZE changes");
      await db.query(
        `INSERT INTO changes (tenant, collection, record_id, old_version, new_version, delta, created, deleted, actor, source, device, client_mutation_id)
         SELECT 'default', 'customers', 'r' || (i % 5000), i / 5000, i / 5000 + 1, '{}', false, false, 'a', 's', '', ''
           FROM generate_series(1, 30000) i`,
      );
      const n = Array.from({ length: 500 }, (_, i) => i);
      const params = [
        arrayLiteral(n.map(() => "default")),
        arrayLiteral(n.map((i) => `m${i}`)),
        n.map(() => "{}").join("\u001e"),
        arrayLiteral(n.map(() => "customers")),
        arrayLiteral(n.map((i) => `r${i * 7}`)),
        arrayLiteral(n.map(() => 3)),
      ];
      const res = await db.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(`EXPLAIN (FORMAT JSON) ${APPLIED_INSERT_SQL}`, params);
      const onChanges = nodes(res.rows[0]!["QUERY PLAN"][0].Plan).filter((n) => n["Relation Name"] === "changes");
      expect(onChanges.length).toBeGreaterThan(0);
      expect(onChanges.map((n) => n["Node Type"])).not.toContain("Seq Scan");
      expect(onChanges.map((n) => n["Node Type"]).every((t) => t.startsWith("Index"))).toBe(true);
    } finally {
      await db.query("ROLLBACK");
    }
  });
});
