// The leader-duty loop's rules on a real PostgreSQL, driven by a leadership
// the test controls: duties run only while leading with enough lease left,
// a term is claimed before any duty, a term the database refuses is dropped.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_RETENTION } from "../../../services/cluster/duties/settings.js";
import { DutyRunner, MIN_DUTY_BUDGET_MS, type Leadership, type LeadershipSource } from "../../../services/cluster/duties/runner.js";
import { createLogger } from "../../../services/platform/logger.js";
import { runFenced } from "../../../services/store/fencing.js";
import { RecordStore } from "../../../services/store/record-store.js";
import { testDatabaseUrl } from "../../support/env.js";
import { count, floorOf, plantChanges } from "./sql.js";
import { waitFor } from "./support.js";

const HOUR = 3_600_000;

/** A leadership the test sets by hand. */
class Lead implements LeadershipSource {
  current: Leadership | null = null;
  readonly #listeners = new Set<() => void>();
  set(term: bigint | null, budgetMs = 5000): void {
    this.current = term === null ? null : { term, since: new Date(), budgetMs: () => budgetMs };
    for (const l of this.#listeners) l();
  }
  leadership(): Leadership | null {
    return this.current;
  }
  onLeadershipChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

let store: RecordStore;
let db: pg.Pool;
let runner: DutyRunner;
const lead = new Lead();
beforeAll(async () => {
  const url = await testDatabaseUrl();
  store = await RecordStore.open({ url });
  db = new pg.Pool({ connectionString: url, max: 2 });
  runner = new DutyRunner({
    pool: store.pool,
    nodeId: "runner",
    lead,
    retention: () => ({ ...DEFAULT_RETENTION, changeLogMs: HOUR, intervalMs: 100 }),
    log: createLogger(process.env.DELTAMESH_TEST_LOG ?? "silent"),
  });
  runner.start();
});
afterAll(async () => {
  await runner?.stop();
  await db?.end();
  await store?.close();
});

const settle = () => new Promise((r) => setTimeout(r, 400));

describe("the duty runner", () => {
  it("does nothing while not leading", async () => {
    await plantChanges(db, 3, 2 * HOUR);
    await settle();
    expect(await count(db, "SELECT count(*) AS n FROM duty_runs")).toBe(0);
    expect(await floorOf(db)).toBe(0n);
  });

  it("claims its term first, then runs the duties under it", async () => {
    lead.set(7n);
    await waitFor("retention under term 7", 3000, async () => ((await floorOf(db)) > 0n ? true : undefined));
    const runs = await db.query<{ term: string; duty: string }>("SELECT term, duty FROM duty_runs ORDER BY id");
    expect(runs.rows[0]).toEqual({ term: "7", duty: "claim" });
    expect(runs.rows.map((r) => r.term)).toEqual(runs.rows.map(() => "7"));
    expect(runner.claimedTerm()).toBe(7n);
  });

  it("starts no transaction with less lease left than the minimum", async () => {
    lead.set(7n, MIN_DUTY_BUDGET_MS - 1);
    await settle();
    const floor = await floorOf(db);
    const seqs = await plantChanges(db, 2, 2 * HOUR);
    await settle();
    expect(await floorOf(db)).toBe(floor);
    lead.set(7n);
    await waitFor("retention once the lease is renewed", 3000, async () => ((await floorOf(db)) >= seqs[1]! ? true : undefined));
  });

  it("drops a term the database refuses, and never writes under it", async () => {
    await runFenced(store.pool, { term: 20n, holder: "someone-else", budgetMs: 5000 }, "claim", async () => ({ affected: 1, value: 0 }));
    lead.set(9n);
    const seqs = await plantChanges(db, 2, 2 * HOUR);
    await settle();
    expect(runner.claimedTerm()).toBeNull();
    expect(await count(db, "SELECT count(*) AS n FROM duty_runs WHERE term = 9")).toBe(0);
    expect(await count(db, "SELECT count(*) AS n FROM changes WHERE seq = ANY($1::bigint[])", [seqs.map(String)])).toBe(2);
    // A newer term works again.
    lead.set(21n);
    await waitFor("retention under term 21", 3000, async () => ((await floorOf(db)) >= seqs[1]! ? true : undefined));
    lead.set(null);
  });

  it("stops as soon as its round in flight ends, without sleeping out the interval", async () => {
    const url = await testDatabaseUrl();
    const own = await RecordStore.open({ url });
    const blocker = new pg.Client({ connectionString: url });
    await blocker.connect();
    const leading = new Lead();
    leading.set(1n, 30_000);
    const slow = new DutyRunner({
      pool: own.pool,
      nodeId: "slow",
      lead: leading,
      retention: () => ({ ...DEFAULT_RETENTION, intervalMs: 10 * 60_000 }),
      log: createLogger(process.env.DELTAMESH_TEST_LOG ?? "silent"),
    });
    try {
      // The round's last duty purges old duty records: lock one, so the
      // round waits inside that duty's transaction when stop() comes.
      await own.pool.query(
        "INSERT INTO duty_runs (term, holder, duty, affected, detail, run_at) VALUES (0, 'earlier', 'ticket_expiry', 1, '{}', now() - interval '90 days')",
      );
      await blocker.query("BEGIN; SELECT 1 FROM duty_runs WHERE holder = 'earlier' FOR UPDATE");
      slow.start();
      await waitFor("the purge waiting on the locked record", 3000, async () =>
        (await count(own.pool, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")) > 0 ? true : undefined,
      );
      const stopped = slow.stop().then(() => "stopped");
      await blocker.query("COMMIT");
      const overdue = new Promise((r) => setTimeout(() => r("still sleeping"), 5000));
      expect(await Promise.race([stopped, overdue])).toBe("stopped");
      // The round in flight was let finish, not cut.
      expect(await count(own.pool, "SELECT count(*) AS n FROM duty_runs WHERE holder = 'earlier'")).toBe(0);
    } finally {
      await slow.stop();
      await blocker.end();
      await own.close();
    }
  });
});
