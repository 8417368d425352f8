// The change-log ordering race: many writers, some deliberately slow, some
// rolling back, against a reader that tails with `seq > cursor`. With the
// sequencing lock the reader misses nothing; with naive inserts it does,
// which proves the test can see the failure it guards against.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PoolClient } from "pg";
import { RecordStore } from "../../../services/store/record-store.js";
import { appendChanges, type ChangeRow, type SequencingMode } from "../../../services/store/sequencing.js";
import { testDatabaseUrl } from "../../support/env.js";

const stores: RecordStore[] = [];
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
});

async function openStore(mode: SequencingMode): Promise<RecordStore> {
  const store = await RecordStore.open({ url: await testDatabaseUrl(), sequencing: mode, maxConnections: 24 });
  stores.push(store);
  return store;
}

function row(tenant: string, recordId: string): ChangeRow {
  return {
    tenant,
    collection: "customers",
    recordId,
    oldVersion: 0,
    newVersion: 1,
    delta: { set: {}, cleared: [], clocks: {}, decisions: [] },
    created: true,
    deleted: false,
    actor: "race",
    source: "test",
    device: "test",
    clientMutationId: "",
  };
}

async function inTransaction(store: RecordStore, work: (c: PoolClient) => Promise<void>, commit = true): Promise<void> {
  const client = await store.pool.connect();
  try {
    await client.query("BEGIN");
    await work(client);
    await client.query(commit ? "COMMIT" : "ROLLBACK");
  } finally {
    client.release();
  }
}

/** Tails the log like the stream tailer does, until `stop()` and one last read. */
function startReader(store: RecordStore) {
  const seen: bigint[] = [];
  let cursor = 0n;
  let running = true;
  const done = (async () => {
    for (;;) {
      const wasRunning = running;
      const page = await store.readChanges(cursor, 500);
      for (const c of page) seen.push(c.seq);
      if (page.length > 0) cursor = page[page.length - 1]!.seq;
      if (!wasRunning && page.length === 0) return;
      if (page.length === 0) await new Promise((r) => setTimeout(r, 1));
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await done;
    },
  };
}

async function committedSeqs(store: RecordStore): Promise<bigint[]> {
  const res = await store.pool.query<{ seq: string }>("SELECT seq FROM changes ORDER BY seq");
  return res.rows.map((r) => BigInt(r.seq));
}

/** Writers of which a third sleep up to 120 ms between sequencing and commit, and a tenth roll back. */
async function race(store: RecordStore, mode: SequencingMode, writers: number, txPerWriter: number): Promise<{ seen: bigint[]; committed: bigint[] }> {
  const reader = startReader(store);
  await Promise.all(
    Array.from({ length: writers }, async (_, w) => {
      for (let t = 0; t < txPerWriter; t++) {
        const slow = (w + t) % 3 === 0;
        const rollback = (w * 7 + t) % 10 === 0;
        await inTransaction(
          store,
          async (c) => {
            await appendChanges(c, [row("race", `w${w}-t${t}-a`), row("race", `w${w}-t${t}-b`)], mode);
            if (slow) await c.query("SELECT pg_sleep($1)", [Math.random() * 0.12]);
          },
          !rollback,
        );
      }
    }),
  );
  await reader.stop();
  return { seen: reader.seen, committed: await committedSeqs(store) };
}

describe("change-log ordering", () => {
  let locked: RecordStore;
  let naive: RecordStore;
  beforeAll(async () => {
    [locked, naive] = await Promise.all([openStore("commit-lock"), openStore("none")]);
  });

  it("a slow transaction holding a lower seq is never skipped with the sequencing lock", async () => {
    for (const [store, expectSkip] of [
      [locked, false],
      [naive, true],
    ] as const) {
      const reader = startReader(store);
      const before = (await committedSeqs(store)).length;
      let releaseSlow!: () => void;
      const slowMayCommit = new Promise<void>((r) => (releaseSlow = r));
      const slow = inTransaction(store, async (c) => {
        await appendChanges(c, [row("det", "slow")], expectSkip ? "none" : "commit-lock");
        await slowMayCommit;
      });
      await new Promise((r) => setTimeout(r, 50));
      // A fast writer starts after the slow one drew its seq. With the lock it
      // waits for the slow commit; without, it commits first with a higher seq.
      const fast = inTransaction(store, (c) => appendChanges(c, [row("det", "fast")], expectSkip ? "none" : "commit-lock").then(() => undefined));
      await new Promise((r) => setTimeout(r, 150));
      releaseSlow();
      await Promise.all([slow, fast]);
      await reader.stop();
      const committed = await committedSeqs(store);
      expect(committed.length).toBe(before + 2);
      const missed = committed.filter((s) => !reader.seen.includes(s));
      if (expectSkip) expect(missed.length).toBe(1);
      else expect(missed).toEqual([]);
    }
  });

  it("races 16 writers (slow and rolled-back transactions included) against a tailing reader without a gap", async () => {
    const { seen, committed } = await race(locked, "commit-lock", 16, 25);
    expect(committed.length).toBeGreaterThan(600);
    expect(seen).toEqual(committed);
  });

  it("the same race loses rows when seqs are read naively without the lock", async () => {
    const { seen, committed } = await race(naive, "none", 16, 25);
    const seenSet = new Set(seen);
    const missed = committed.filter((s) => !seenSet.has(s));
    expect(missed.length).toBeGreaterThan(0);
  });
});
