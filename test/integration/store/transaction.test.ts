// The merged-round-trip transaction (services/store/transaction.ts): several
// statements in one message with one Sync, parameters passed as parameters;
// BEGIN and COMMIT travel with the statements; a failure anywhere rolls back
// everything.
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPipeline, withTransaction, type SqlValue } from "../../../services/store/transaction.js";
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

const rows = async () => (await pool.query<{ k: string; v: string }>("SELECT k, v FROM tx_test ORDER BY k")).rows;
const put = (k: string, v: string) => ({ text: "INSERT INTO tx_test (k, v) VALUES ($1, $2)", values: [k, v] });

async function pipeline(statements: { text: string; values: SqlValue[] }[]): Promise<pg.QueryResult[]> {
  const client = await pool.connect();
  try {
    return await runPipeline(client, statements);
  } finally {
    client.release();
  }
}

describe("pipelines", () => {
  it("answer each statement in order, with its parameters as sent", async () => {
    const [a, b, c] = await pipeline([
      { text: "SELECT $1::text AS s, $2::int8 AS n, $3::bool AS t, $4::text AS z", values: ["it's \\ 中文 😀", -(2n ** 62n), true, null] },
      { text: "SELECT 1 AS one WHERE false", values: [] },
      { text: "SELECT generate_series(1, $1::int) AS i", values: [3] },
    ]);
    expect(a!.rows).toEqual([{ s: "it's \\ 中文 😀", n: String(-(2n ** 62n)), t: true, z: null }]);
    expect(b!.rows).toEqual([]);
    expect(c!.rows.map((r: { i: number }) => r.i)).toEqual([1, 2, 3]);
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: "binary" }).filter((s) => !s.includes("\u0000")), async (s) => {
        const [r] = await pipeline([{ text: "SELECT $1::text AS v", values: [s] }]);
        expect(r!.rows[0].v).toBe(s);
      }),
      { numRuns: 100 },
    );
  });

  it("are atomic: after a failing statement nothing of the pipeline is kept and the rest is skipped", async () => {
    await pool.query("TRUNCATE tx_test");
    await expect(pipeline([put("a", "1"), { text: "SELECT 1 / $1::int", values: [0] }, put("b", "2")])).rejects.toThrow(/division by zero/);
    expect(await rows()).toEqual([]);
    // And the connection is usable afterwards.
    expect((await pipeline([put("c", "3")])).length).toBe(1);
    expect(await rows()).toEqual([{ k: "c", v: "3" }]);
  });
});

describe("withTransaction", () => {
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
    // Both pooled connections answer (neither went back left in an aborted transaction).
    const answers = await Promise.all([pool.query("SELECT 1 AS one"), pool.query("SELECT 1 AS one")]);
    expect(answers.map((r) => r.rows)).toEqual([[{ one: 1 }], [{ one: 1 }]]);
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
