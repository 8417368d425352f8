// The field reads behind the schema-change check, on a real PostgreSQL: every
// live value visited once across many cursor pages, tombstones and other
// collections left out, JSON null counted as no value, tallies exact.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordStore } from "../../../services/store/record-store.js";
import { forEachLiveValue, liveRecordsWithout, recordsWith, type RecordRef } from "../../../services/store/stored-fields.js";
import type { StoredValue } from "../../../services/schema/types.js";
import { testDatabaseUrl } from "../../support/env.js";

const LIVE = 2_345;
let store: RecordStore;
let db: pg.Pool;

beforeAll(async () => {
  const url = await testDatabaseUrl();
  store = await RecordStore.open({ url });
  db = new pg.Pool({ connectionString: url, max: 1 });
  // Live customers r1..r2345 with visits = i (every 10th has none, every 100th a JSON null),
  // tombstones in two tenants, and an orders collection with the same field name.
  await db.query(
    `INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
     SELECT 'default', 'customers', 'r' || i, 1,
            CASE WHEN i % 100 = 0 THEN jsonb_build_object('visits', null) WHEN i % 10 = 0 THEN '{}'::jsonb ELSE jsonb_build_object('visits', i) END,
            '{}'::json, false, now(), now()
       FROM generate_series(1, $1::int) i
     UNION ALL SELECT t, 'customers', 'gone-' || t, 2, '{"visits": 1}'::jsonb, '{}'::json, true, now(), now() FROM unnest(ARRAY['default', 'acme']) t
     UNION ALL SELECT 'default', 'orders', 'o1', 1, '{"visits": 7}'::jsonb, '{}'::json, false, now(), now()
     UNION ALL SELECT 'acme', 'customers', 'a1', 1, '{}'::jsonb, '{}'::json, false, now(), now()
     UNION ALL SELECT 'default', 'leads', v.id, 1, v.f::jsonb, '{}'::json, false, now(), now()
       FROM (VALUES ('l1', '{"name": ""}'), ('l2', '{"name": []}'), ('l3', '{"name": "Li"}'), ('l4', '{"name": ["x"]}')) v(id, f)`,
    [LIVE],
  );
});
afterAll(async () => {
  await db?.end();
  await store?.close();
});

describe("stored field reads", () => {
  it("visit each live value of the collection once, over several cursor pages", async () => {
    const seen: [RecordRef, StoredValue][] = [];
    await forEachLiveValue(store.pool, "customers", "visits", (r, v) => seen.push([r, v]));
    const expected = Array.from({ length: LIVE }, (_, k) => k + 1).filter((i) => i % 10 !== 0);
    expect(seen.length).toBe(expected.length);
    expect(new Set(seen.map(([r]) => r.id)).size).toBe(expected.length);
    expect(seen.map(([r, v]) => [r.tenant, r.id, v]).sort((a, b) => (a[2] as number) - (b[2] as number))).toEqual(
      expected.map((i) => ["default", `r${i}`, i]),
    );
  });

  it("count live records without a value (absent or null), and records with one, tombstones included", async () => {
    const without = await liveRecordsWithout(store.pool, "customers", "visits");
    expect(without.count).toBe(Math.floor(LIVE / 10) + 1);
    expect(without.examples).toEqual([
      { tenant: "acme", id: "a1" },
      { tenant: "default", id: "r10" },
      { tenant: "default", id: "r100" },
    ]);
    const withValue = await recordsWith(store.pool, "customers", "visits");
    expect(withValue.count).toBe(LIVE - Math.floor(LIVE / 10) + 2);
    expect(withValue.examples).toEqual([
      { tenant: "acme", id: "gone-acme" },
      { tenant: "default", id: "gone-default" },
      { tenant: "default", id: "r1" },
    ]);
    expect(await recordsWith(store.pool, "customers", "nobody_has_this")).toEqual({ count: 0, examples: [] });
  });

  it("count an empty string or list as no value for a required field, as writes do", async () => {
    expect(await liveRecordsWithout(store.pool, "leads", "name")).toEqual({ count: 2, examples: [{ tenant: "default", id: "l1" }, { tenant: "default", id: "l2" }] });
    expect((await recordsWith(store.pool, "leads", "name")).count).toBe(4);
  });
});
