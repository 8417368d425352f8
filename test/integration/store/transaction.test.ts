// The merged-round-trip transaction (services/store/transaction.ts): inlined
// literals read back exactly as the values they stand for, whatever the
// server's standard_conforming_strings; BEGIN and COMMIT travel with the
// statements; a failure anywhere rolls back everything.
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inline, withTransaction, type SqlValue } from "../../../services/store/transaction.js";
import { testDatabaseUrl } from "../../support/env.js";

let pool: pg.Pool;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await testDatabaseUrl(), max: 2 });
  await pool.query("CREATE TABLE IF NOT EXISTS tx_test (k text PRIMARY KEY, v text)");
});
afterAll(async () => {
  await pool?.query("DROP TABLE IF EXISTS tx_test");
  await pool?.end();
});

/** Reads `value` back through an inlined literal, with the session's standard_conforming_strings set to `scs`. */
async function roundTrip(value: SqlValue, scs: "on" | "off"): Promise<unknown> {
  const client = await pool.connect();
  try {
    const res = (await client.query(
      `SET standard_conforming_strings = ${scs}; ${inline({ text: "SELECT $1::text AS v", values: [value] })}`,
    )) as unknown as pg.QueryResult[];
    return res[1]!.rows[0].v;
  } finally {
    await client.query("RESET standard_conforming_strings");
    client.release();
  }
}

describe("inlined literals", () => {
  it("read back as the same text, with standard_conforming_strings on or off", async () => {
    const tricky = ["", "'", "''", "\\", "\\'", "'\\", "a'b\\c", "--", "$1", "$$", "E'x'", "\\x41", "line\nbreak", "中文 ½ 😀", '{"a":"\\u0041\\"q\'"}'];
    for (const scs of ["on", "off"] as const) {
      for (const s of tricky) expect(await roundTrip(s, scs)).toBe(s);
    }
    await fc.assert(
      fc.asyncProperty(
        fc.string({ unit: "binary" }).filter((s) => !s.includes("\u0000")),
        fc.constantFrom("on" as const, "off" as const),
        async (s, scs) => {
          expect(await roundTrip(s, scs)).toBe(s);
        },
      ),
      { numRuns: 200 },
    );
  });

  it("writes numbers, bigints, booleans and NULL as SQL values", async () => {
    const res = await pool.query(inline({ text: "SELECT $1::float8 AS a, $2::int8 AS b, 1-$3::int AS c, $4::bool AS d, $5::text AS e", values: [-1.5, -(2n ** 62n), -2, true, null] }));
    expect(res.rows[0]).toEqual({ a: -1.5, b: String(-(2n ** 62n)), c: 3, d: true, e: null });
  });

  it("refuses what it cannot write", () => {
    expect(() => inline({ text: "SELECT $1", values: ["a\u0000b"] })).toThrow(/NUL/);
    expect(() => inline({ text: "SELECT $1", values: [Number.NaN] })).toThrow(/NaN/);
    expect(() => inline({ text: "SELECT $2", values: ["x"] })).toThrow(/\$2/);
  });
});

describe("withTransaction", () => {
  const rows = async () => (await pool.query<{ k: string; v: string }>("SELECT k, v FROM tx_test ORDER BY k")).rows;
  const put = (k: string, v: string) => ({ text: "INSERT INTO tx_test (k, v) VALUES ($1, $2)", values: [k, v] });

  it("commits statements sent with BEGIN and with COMMIT, in two round trips", async () => {
    await pool.query("TRUNCATE tx_test");
    const [first] = await withTransaction(pool, async (tx) => {
      const read = await tx.run([put("a", "1"), { text: "SELECT count(*)::int AS n FROM tx_test", values: [] }]);
      await tx.commit([put("b", "2")]);
      return read.slice(1);
    });
    expect(first!.rows).toEqual([{ n: 1 }]);
    expect(await rows()).toEqual([
      { k: "a", v: "1" },
      { k: "b", v: "2" },
    ]);
  });

  it("commits what `work` left open, and rolls everything back when a statement fails", async () => {
    await pool.query("TRUNCATE tx_test");
    await withTransaction(pool, (tx) => tx.run([put("a", "1")]));
    expect(await rows()).toEqual([{ k: "a", v: "1" }]);
    await expect(
      withTransaction(pool, async (tx) => {
        await tx.run([put("b", "2")]);
        await tx.commit([put("c", "3"), put("a", "duplicate")]);
      }),
    ).rejects.toThrow(/duplicate key/);
    expect(await rows()).toEqual([{ k: "a", v: "1" }]);
    // The connection went back to the pool usable (not left in an aborted transaction).
    await Promise.all([pool.query("SELECT 1"), pool.query("SELECT 1")]);
    expect(pool.totalCount).toBeGreaterThan(0);
  });

  it("rolls back when `work` throws after its statements", async () => {
    await pool.query("TRUNCATE tx_test");
    await expect(
      withTransaction(pool, async (tx) => {
        await tx.run([put("a", "1")]);
        throw new Error("work failed");
      }),
    ).rejects.toThrow("work failed");
    expect(await rows()).toEqual([]);
  });
});
