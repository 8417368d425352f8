// How the write pipeline forms batches while another batch commits: a small
// batch waits for the commit ahead of it (it could not commit before it
// anyway) and then goes out with everything that arrived meanwhile; a batch
// at least half full goes out at once.
import { afterEach, describe, expect, it } from "vitest";
import { WritePipeline, type WriteRequest } from "../../../services/records/write-pipeline.js";
import type { RecordStore, WriteTx } from "../../../services/store/record-store.js";
import { usePipelineStore } from "../../support/pipeline-store.js";

const db = usePipelineStore();

/** Held transactions are let go after each test, passed or failed, so the store can close. */
const releases: (() => void)[] = [];
afterEach(() => {
  for (const release of releases.splice(0)) release();
});

let n = 0;
/** A request of `mutations` plain writes of fresh customers. */
const request = (mutations: number): WriteRequest => ({
  tenant: "default",
  actor: "test",
  mutations: Array.from({ length: mutations }, () => {
    const id = `group-commit-${++n}`;
    return { collection: "customers", target: { id }, set: { name: `Customer ${id}`, region: "east_china" }, clear: [], baseVersion: 0, clientMutationId: "", source: "crm", device: "", delete: false };
  }),
});

/**
 * A store whose first batch transaction stops as it begins to write (the
 * pipeline then counts it as committing) until `release()`; every batch's
 * mutation count is recorded as it begins to write.
 */
function heldStore() {
  const batches: number[] = [];
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  releases.push(release);
  let reached!: () => void;
  const firstWriting = new Promise<void>((resolve) => (reached = resolve));
  const held: RecordStore = Object.create(db.store) as RecordStore;
  held.writeTransaction = <T,>(work: (tx: WriteTx) => Promise<T>) =>
    db.store.writeTransaction((tx) =>
      work({
        ...tx,
        apply: async (effects, opts) => {
          batches.push(effects.changes.length);
          if (batches.length === 1) {
            reached();
            await released;
          }
          return tx.apply(effects, opts);
        },
      }),
    );
  return { held, batches, firstWriting, release };
}

/** Lets the pipeline react to what was queued: a few turns of the event loop and a database round trip. */
const settle = async () => {
  await db.store.pool.query("SELECT 1");
  await new Promise((resolve) => setTimeout(resolve, 20));
};

describe("group commit", () => {
  it("holds small requests arriving during a commit, then sends them out as one batch", async () => {
    const { held, batches, firstWriting, release } = heldStore();
    const pipeline = new WritePipeline(held, () => db.schemas, { maxBatchMutations: 8 });
    const first = pipeline.write(request(1));
    await firstWriting;
    const later = [pipeline.write(request(1)), pipeline.write(request(1)), pipeline.write(request(1))];
    await settle();
    expect(batches, "no batch of 1–3 mutations formed while the first committed").toEqual([1]);
    release();
    await Promise.all([first, ...later]);
    expect(batches).toEqual([1, 3]);
  });

  it("sends a batch out during a commit once it is at least half full", async () => {
    const { held, batches, firstWriting, release } = heldStore();
    const pipeline = new WritePipeline(held, () => db.schemas, { maxBatchMutations: 8 });
    const first = pipeline.write(request(1));
    await firstWriting;
    const later = [pipeline.write(request(3)), pipeline.write(request(1))];
    await settle();
    // The first request alone (3 of 8) waited; the second brought the queue to half.
    expect(batches).toEqual([1, 4]);
    release();
    await Promise.all([first, ...later]);
    expect(batches).toEqual([1, 4]);
  });

  it("with nothing in flight, sends a single mutation out at once", async () => {
    const { held, batches, release } = heldStore();
    release();
    const pipeline = new WritePipeline(held, () => db.schemas, { maxBatchMutations: 8 });
    const results = await pipeline.write(request(1));
    expect(results).toHaveLength(1);
    expect(batches).toEqual([1]);
  });
});
