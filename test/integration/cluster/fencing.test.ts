// Fenced duty transactions and the duties' SQL on a real PostgreSQL: a stale
// term is refused and none of its writes land; a frozen transaction is cut by
// the server so a successor is not blocked; retention deletes a prefix of the
// log and advances the floor; expiry and purges touch only old rows.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isFenceRejection, readFence, runFenced } from "../../../services/store/fencing.js";
import { RecordStore } from "../../../services/store/record-store.js";
import { changeLogBounds, deleteExpiredChanges, expireOpenTickets, purgeAppliedMutations } from "../../../services/store/retention.js";
import { testDatabaseUrl } from "../../support/env.js";
import { count, floorOf, plantAppliedMutation, plantChanges, plantTicket } from "./sql.js";

const HOUR = 3_600_000;
let store: RecordStore;
let db: pg.Pool;
beforeAll(async () => {
  const url = await testDatabaseUrl();
  store = await RecordStore.open({ url });
  db = new pg.Pool({ connectionString: url, max: 4 });
});
afterAll(async () => {
  await db?.end();
  await store?.close();
});

const token = (term: bigint, budgetMs = 5000) => ({ term, holder: `node-${term}`, budgetMs });
const marker = async (c: pg.PoolClient, key: string) => {
  await c.query("INSERT INTO deltamesh_meta (key, value) VALUES ($1, 'x')", [key]);
  return { affected: 1, value: key };
};

describe("fenced transactions", () => {
  it("accept the same or a higher term, refuse a lower one and roll its writes back", async () => {
    await runFenced(store.pool, token(10n), "claim", async () => ({ affected: 1, value: 0 }));
    await runFenced(store.pool, token(10n), "test", (c) => marker(c, "fence-a"));
    await runFenced(store.pool, token(12n), "claim", async () => ({ affected: 1, value: 0 }));
    const stale = await runFenced(store.pool, token(10n), "test", (c) => marker(c, "fence-b")).catch((e: unknown) => e);
    expect(isFenceRejection(stale)).toBe(true);
    expect(await count(db, "SELECT count(*) AS n FROM deltamesh_meta WHERE key = 'fence-b'")).toBe(0);
    expect(await count(db, "SELECT count(*) AS n FROM deltamesh_meta WHERE key = 'fence-a'")).toBe(1);
    const fence = await readFence(store.pool);
    expect(fence).toMatchObject({ term: 12n, holder: "node-12" });
    // The duty record of every committed transaction carries its term; the refused one left none.
    expect(await count(db, "SELECT count(*) AS n FROM duty_runs WHERE term = 10 AND id > (SELECT min(id) FROM duty_runs WHERE term = 12)")).toBe(0);
  });

  it("cut a transaction frozen past its budget, so the next term claims without waiting for it", async () => {
    const base = (await readFence(store.pool))!.term;
    let release!: () => void;
    const frozen = runFenced(store.pool, token(base + 1n, 600), "test", async (c) => {
      await c.query("SELECT 1");
      await new Promise<void>((r) => (release = r)); // holds the fence row, idle in transaction
      return marker(c, "fence-frozen");
    }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await runFenced(store.pool, token(base + 2n), "claim", async () => ({ affected: 1, value: 0 }));
    const waited = Date.now() - t0;
    release();
    const outcome = await frozen;
    expect(outcome).toBeInstanceOf(Error);
    expect(await count(db, "SELECT count(*) AS n FROM deltamesh_meta WHERE key = 'fence-frozen'")).toBe(0);
    // Cut by the server at its 600 ms budget (the claim started ~200 ms in); generous bound for a loaded machine.
    expect(waited).toBeLessThan(5000);
    console.log(`[cluster] a frozen duty transaction blocked its successor's claim for ${waited} ms (budget 600 ms)`);
  });
});

describe("leader duties' SQL", () => {
  const fenced = <T>(work: (c: pg.PoolClient) => Promise<{ affected: number; value: T }>) =>
    readFence(store.pool).then((f) => runFenced(store.pool, token(f?.term ?? 0n), "test", work));

  it("retention deletes the oldest changes in bounded batches and advances the floor", async () => {
    const old = await plantChanges(db, 5, 2 * HOUR);
    const young = await plantChanges(db, 2, 0);
    const first = await fenced((c) => deleteExpiredChanges(c, HOUR, 3));
    expect(first.deleted).toBe(3);
    expect(await floorOf(db)).toBe(old[2]);
    const second = await fenced((c) => deleteExpiredChanges(c, HOUR, 3));
    expect(second.deleted).toBe(2);
    expect(second.floor).toBe(old[4]);
    const third = await fenced((c) => deleteExpiredChanges(c, HOUR, 3));
    expect(third.deleted).toBe(0);
    expect(await count(db, "SELECT count(*) AS n FROM changes WHERE seq = ANY($1::bigint[])", [young.map(String)])).toBe(2);
    const bounds = await changeLogBounds(store.pool);
    expect(bounds).toEqual({ floor: old[4], tail: young[1] });
  });

  it("retention stops at the first change inside the window, so it only ever deletes a prefix", async () => {
    const before = await floorOf(db);
    const young = await plantChanges(db, 1, 0);
    const oldAfter = await plantChanges(db, 2, 2 * HOUR); // out of order in time: must wait behind the young one
    const res = await fenced((c) => deleteExpiredChanges(c, HOUR, 100));
    expect(res.deleted).toBe(0);
    expect(await floorOf(db)).toBe(before);
    expect(await count(db, "SELECT count(*) AS n FROM changes WHERE seq = ANY($1::bigint[])", [[...young, ...oldAfter].map(String)])).toBe(3);
  });

  it("expiry dismisses only old open tickets and records why", async () => {
    await plantTicket(db, "t-old", 2 * HOUR);
    await plantTicket(db, "t-new", 0);
    expect(await fenced((c) => expireOpenTickets(c, HOUR, 100))).toBe(1);
    const rows = await db.query<{ id: string; status: string; resolution: { by: string; reason: string } | null }>(
      "SELECT id, status, resolution FROM conflict_tickets WHERE id IN ('t-old', 't-new') ORDER BY id",
    );
    expect(rows.rows).toEqual([
      { id: "t-new", status: "open", resolution: null },
      { id: "t-old", status: "dismissed", resolution: expect.objectContaining({ by: "deltamesh:ticket-expiry", reason: "EXPIRED", ttl_ms: HOUR }) },
    ]);
  });

  it("the idempotency purge forgets only results past the window", async () => {
    await plantAppliedMutation(db, "m-old", 2 * HOUR);
    await plantAppliedMutation(db, "m-new", 0);
    expect(await fenced((c) => purgeAppliedMutations(c, HOUR, 100))).toBe(1);
    const left = await db.query<{ id: string }>("SELECT client_mutation_id AS id FROM applied_mutations WHERE client_mutation_id IN ('m-old', 'm-new')");
    expect(left.rows.map((r) => r.id)).toEqual(["m-new"]);
  });
});
