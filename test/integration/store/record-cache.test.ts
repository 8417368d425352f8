// Two nodes writing the same records, each merging from the records it
// wrote last without reading them again (services/store/record-cache.ts,
// migration 0012). What one node kept goes stale when the other writes: the
// write must notice, write nothing, and retry under lock, so no edit is lost
// and every record's change log climbs one version at a time.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_CONFIG_PATH, readConfigFile } from "../../../services/config/file-source.js";
import { WritePipeline } from "../../../services/records/write-pipeline.js";
import type { MutationInput, StoredRecord } from "../../../services/records/model.js";
import type { StoredValue } from "../../../services/schema/types.js";
import { RecordStore } from "../../../services/store/record-store.js";
import { testDatabaseUrl } from "../../support/env.js";

interface TestNode {
  store: RecordStore;
  pipeline: WritePipeline;
}

const TENANT = `t-cache-${process.pid}`;
let nodes: [TestNode, TestNode];
let db: pg.Pool;
let url: string;

beforeAll(async () => {
  url = await testDatabaseUrl();
  const schemas = (await readConfigFile(DEFAULT_CONFIG_PATH)).schemas;
  const open = async (): Promise<TestNode> => {
    const store = await RecordStore.open({ url });
    return { store, pipeline: new WritePipeline(store, () => schemas) };
  };
  nodes = [await open(), await open()];
  db = new pg.Pool({ connectionString: url, max: 2 });
});
afterAll(async () => {
  await db?.end();
  for (const n of nodes ?? []) await n.store.close();
});

const str = (value: string): StoredValue => value;

async function write(node: TestNode, id: string | { erpId: string }, set: Record<string, StoredValue>, baseVersion = 0, expectedVersion?: number) {
  const m: MutationInput = {
    ...(expectedVersion === undefined ? {} : { expectedVersion }),
    collection: "customers",
    target: typeof id === "string" ? { id } : { identity: { field: "erp_id", value: id.erpId } },
    set,
    clear: [],
    baseVersion,
    clientMutationId: "",
    source: "crm",
    device: "",
    delete: false,
  };
  const [result] = await node.pipeline.write({ tenant: TENANT, actor: "tester", mutations: [m] });
  return result!;
}

async function stored(id: string): Promise<Pick<StoredRecord, "version" | "fields">> {
  const res = await db.query<{ version: string; fields: Record<string, StoredValue> }>(
    "SELECT version, fields FROM records WHERE tenant = $1 AND collection = 'customers' AND id = $2",
    [TENANT, id],
  );
  return { version: Number(res.rows[0]!.version), fields: res.rows[0]!.fields };
}

/** The record's change rows as old -> new version, in log order. */
async function versionSteps(id: string): Promise<string[]> {
  const res = await db.query<{ step: string }>(
    "SELECT old_version || '->' || new_version AS step FROM changes WHERE tenant = $1 AND record_id = $2 ORDER BY seq",
    [TENANT, id],
  );
  return res.rows.map((r) => r.step);
}

describe("records a node keeps", () => {
  it("merge without a lock until another node writes; then the write is retried under lock and loses nothing", async () => {
    const [a, b] = nodes;
    const id = "c-two-nodes";
    await write(a, id, { name: str("a1"), notes: str("n1"), region: str("east_china") });
    const before = a.store.recordCacheStats();
    expect((await write(a, id, { name: str("a2") })).version).toBe(2);
    expect(a.store.recordCacheStats().unlockedBatches).toBe(before.unlockedBatches + 1);

    // Node b changes the record; what node a kept (version 2) is now stale.
    expect((await write(b, id, { notes: str("from b") })).version).toBe(3);
    const result = await write(a, id, { name: str("a3") });
    expect(result.version).toBe(4);
    expect(a.store.recordCacheStats()).toMatchObject({ unlockedBatches: before.unlockedBatches + 2, retriedUnderLock: before.retriedUnderLock + 1 });
    expect(await stored(id)).toEqual({ version: 4, fields: { name: "a3", notes: "from b", region: "east_china" } });
    // The stale attempt wrote nothing: one change row per version.
    expect(await versionSteps(id)).toEqual(["0->1", "1->2", "2->3", "3->4"]);

    // The retry committed version 4, which node a keeps again.
    await write(a, id, { name: str("a4") });
    expect(a.store.recordCacheStats()).toMatchObject({ unlockedBatches: before.unlockedBatches + 3, retriedUnderLock: before.retriedUnderLock + 1 });
    expect(await stored(id)).toEqual({ version: 5, fields: { name: "a4", notes: "from b", region: "east_china" } });
  });

  it("decide nothing on a stale record: an edit that seemed to change nothing is written", async () => {
    const [a, b] = nodes;
    const id = "c-unchanged";
    await write(a, id, { name: str("same"), region: str("east_china") });
    await write(b, id, { name: str("other") });
    // On what node a kept, name is already "same"; in the database it is not.
    const result = await write(a, id, { name: str("same") });
    expect(result.version).toBe(3);
    expect((await stored(id)).fields.name).toBe("same");
    expect(await versionSteps(id)).toEqual(["0->1", "1->2", "2->3"]);
  });

  it("refuse nothing on a stale record: a base version only the other node has seen is accepted", async () => {
    const [a, b] = nodes;
    const id = "c-refusal";
    await write(a, id, { name: str("a1"), region: str("east_china") });
    const before = a.store.recordCacheStats();
    await write(b, id, { notes: str("b") });
    // The client read version 2 from node b and edits on node a, which kept version 1.
    const result = await write(a, id, { name: str("a2") }, 2);
    expect(result.version).toBe(3);
    expect(await stored(id)).toEqual({ version: 3, fields: { name: "a2", notes: "b", region: "east_china" } });
    // Refused on the kept record; the write found it stale (writing nothing) and the retry, under lock, applied it.
    expect(a.store.recordCacheStats()).toMatchObject({ unlockedBatches: before.unlockedBatches + 1, retriedUnderLock: before.retriedUnderLock + 1 });
    // A refusal that stands is still a refusal: base version 9 is ahead of the record.
    await expect(write(a, id, { name: str("a3") }, 9)).rejects.toMatchObject({ kind: "failed_precondition" });
    expect((await stored(id)).version).toBe(3);
  });

  it("do not let a node apply two writes of a record out of the order they came in", async () => {
    const [a] = nodes;
    const ids = Array.from({ length: 60 }, (_, i) => `c-order-${i}`);
    for (const id of ids) await write(a, id, { name: str("kept"), region: str("east_china") });
    // Each pair goes out in one tick: the first in a batch merged from the
    // kept record, the second in the next batch, formed while the first commits.
    const outcomes = await Promise.all(
      ids.map(async (id) => {
        const [first, second] = await Promise.all([write(a, id, { notes: str("first") }), write(a, id, { notes: str("second") })]);
        return { id, first: first.version, second: second.version, notes: (await stored(id)).fields.notes };
      }),
    );
    expect(outcomes.filter((o) => o.notes !== "second" || o.second !== o.first + 1)).toEqual([]);
    // A client chaining expected versions without waiting for each answer.
    const chained = await Promise.all(
      ids.slice(0, 20).map(async (id) => {
        const { version } = await stored(id);
        return Promise.all([write(a, id, { name: str("v+1") }, 0, version), write(a, id, { name: str("v+2") }, 0, version + 1)]);
      }),
    );
    expect(chained.flat()).toHaveLength(40);
  });

  it("keep every record's versions a chain under concurrent writes from both nodes", async () => {
    const ids = Array.from({ length: 6 }, (_, i) => `c-race-${i}`);
    for (const id of ids) await write(nodes[0], id, { name: str("start"), region: str("east_china") });
    const writesPerNode = 60;
    const results = await Promise.all(
      nodes.flatMap((node, n) =>
        Array.from({ length: writesPerNode }, (_, k) => write(node, ids[(k * 7 + n) % ids.length]!, { notes: str(`node ${n} write ${k}`) })),
      ),
    );
    expect(results).toHaveLength(2 * writesPerNode);
    const retriedUnderLock = nodes[0].store.recordCacheStats().retriedUnderLock + nodes[1].store.recordCacheStats().retriedUnderLock;
    let total = 0;
    for (const id of ids) {
      const steps = await versionSteps(id);
      const { version } = await stored(id);
      // Each write moved the record up by one from the version the one before left.
      expect(steps).toEqual(Array.from({ length: version }, (_, v) => `${v}->${v + 1}`));
      total += version - 1;
    }
    expect(total).toBe(2 * writesPerNode);
    // Both nodes kept records the other moved: some writes had to be retried.
    expect(retriedUnderLock).toBeGreaterThan(0);
  });

  it("are only those addressed by id: a bulk load upserting by ERP id keeps nothing", async () => {
    const [a] = nodes;
    const before = a.store.recordCacheStats();
    const created = await write(a, { erpId: "ERP-CACHE-1" }, { name: str("by key"), region: str("east_china") });
    expect(created.created).toBe(true);
    await write(a, { erpId: "ERP-CACHE-1" }, { name: str("by key again") });
    expect(a.store.recordCacheStats()).toEqual(before);
  });

  it("are not used by a node that keeps none", async () => {
    const store = await RecordStore.open({ url, recordCacheBytes: 0 });
    try {
      const schemas = (await readConfigFile(DEFAULT_CONFIG_PATH)).schemas;
      const node = { store, pipeline: new WritePipeline(store, () => schemas) };
      await write(node, "c-no-cache", { name: str("x"), region: str("east_china") });
      await write(node, "c-no-cache", { name: str("y") });
      expect(store.recordCacheStats()).toEqual({ records: 0, unlockedBatches: 0, retriedUnderLock: 0 });
      expect(await stored("c-no-cache")).toEqual({ version: 2, fields: { name: "y", region: "east_china" } });
    } finally {
      await store.close();
    }
  });
});
