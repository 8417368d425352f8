// The TypeScript client helper against real nodes: a replica loads a
// snapshot and follows changes, resumes on another node when its node stops,
// re-snapshots on CURSOR_EXPIRED, and its digest check finds (and repairs)
// exactly the bucket of a deliberately corrupted copy.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicate, type Replica } from "../../../clients/typescript/replicate.js";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import type { MutationSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { bucketOf } from "../../../services/changes/digest.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { logTail, simulateRetention } from "../../support/retention.js";
import { byId, enm, int, str } from "../../support/rpc.js";
import { copyJson, serverCopy } from "../../support/streams.js";

type MutationInit = MessageInitShape<typeof MutationSchema>;

let n = 0;
const uid = (p: string) => `${p}-${++n}`;
const customer = (id: string, region = "east_china", visits = 0): MutationInit => ({
  ref: byId(id),
  set: { name: str(`Customer ${id}`), region: enm(region), visits: int(visits) },
  source: "crm-desktop",
});

describe("replicate()", () => {
  let a: TestNode;
  let b: TestNode;
  const replicas: Replica[] = [];
  beforeAll(async () => {
    a = await startTestNode();
    b = await startTestNode({ databaseUrl: a.node.databaseUrl });
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.close()));
    await b?.stop();
    await a?.stop();
  });
  const rec = (t: TestNode = a) => t.grpcJs(RecordService);

  it("loads a snapshot, follows changes, and equals the server's records", async () => {
    const ids = Array.from({ length: 30 }, () => uid("rep"));
    await rec().writeRecords({ mutations: ids.map((id) => customer(id)) });
    const replica = replicate("customers", { clients: a.grpcJs(ChangeService) });
    replicas.push(replica);
    await replica.ready;
    const more = ids.slice(0, 10).map((id, i) => ({ ref: byId(id), set: { visits: int(i + 1) }, baseVersion: 1n, source: "pos" }));
    const [last] = (await rec().writeRecords({ mutations: more })).results.slice(-1);
    await rec().deleteRecord({ ref: byId(ids[29]!) });
    const [after] = (await rec().writeRecords({ mutations: [customer(uid("rep-new"))] })).results;
    await replica.waitForCursor(after!.cursor);
    expect(last).toBeDefined();
    expect(copyJson(replica.records.values())).toEqual(await serverCopy(rec(), "customers"));
    expect(replica.stats.unknownRecordUpserts).toBe(0);
    expect(replica.stats.snapshots).toBe(1);
  });

  it("resumes on another node from its cursor when its node goes away, losing and repeating nothing", async () => {
    const t = await startTestNode({ databaseUrl: a.node.databaseUrl });
    const seen = new Map<string, number>();
    const replica = replicate("customers", {
      clients: [t.grpcJs(ChangeService), b.grpcJs(ChangeService)],
      filters: [{ field: "region", value: enm("north_china") }],
      onEvent: (ev) => {
        if (ev.kind.case === "upsert") {
          const k = `${ev.kind.value.id}@${ev.kind.value.version}`;
          seen.set(k, (seen.get(k) ?? 0) + 1);
        }
      },
    });
    replicas.push(replica);
    await replica.ready;
    const ids = Array.from({ length: 10 }, () => uid("fail"));
    await rec().writeRecords({ mutations: ids.map((id) => customer(id, "north_china")) });
    const stopping = t.stop();
    for (let v = 1; v <= 5; v++) {
      await rec().writeRecords({ mutations: ids.map((id) => ({ ref: byId(id), set: { visits: int(v) }, baseVersion: BigInt(v), source: "pos" })) });
    }
    await stopping;
    const [end] = (await rec().writeRecords({ mutations: [customer(uid("fail-end"), "north_china")] })).results;
    await replica.waitForCursor(end!.cursor);
    expect(replica.stats.reconnects).toBeGreaterThanOrEqual(1);
    expect(copyJson(replica.records.values())).toEqual(await serverCopy(rec(), "customers", [{ field: "region", value: enm("north_china") }]));
    for (const id of ids) for (let v = 1; v <= 6; v++) expect(seen.get(`${id}@${v}`), `${id}@${v}`).toBe(1);
    expect(replica.stats.unknownRecordUpserts).toBe(0);
  });

  it("finds a deliberately corrupted bucket with the digest, repairs only it, while writes continue", async () => {
    const replica = replicate("customers", { clients: [a.grpcJs(ChangeService)] });
    replicas.push(replica);
    await replica.ready;
    const clean = await replica.verify({ bucketCount: 32 });
    expect(clean.mismatched).toEqual([]);

    // Corrupt one record's version and drop another in a different bucket.
    const ids = [...replica.records.keys()];
    const victim = ids[0]!;
    const dropped = ids.find((id) => bucketOf(id, 32) !== bucketOf(victim, 32))!;
    replica.records.get(victim)!.version += 7n;
    replica.records.delete(dropped);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await rec().writeRecords({ mutations: [customer(uid("during"), "east_china", i)] });
    })();
    const result = await replica.verify({ bucketCount: 32 });
    writing = false;
    await writer;
    expect(result.mismatched.sort()).toEqual([bucketOf(victim, 32), bucketOf(dropped, 32)].sort());
    expect(result.repairedRecords).toBeGreaterThan(0);
    expect((await replica.verify({ bucketCount: 32 })).mismatched).toEqual([]);
    const [end] = (await rec().writeRecords({ mutations: [customer(uid("end"))] })).results;
    await replica.waitForCursor(end!.cursor);
    expect(copyJson(replica.records.values())).toEqual(await serverCopy(rec(), "customers"));
  });

  it("loads a fresh snapshot when its cursor has expired", async () => {
    const t = await startTestNode();
    try {
      const client = t.grpcJs(RecordService);
      const [first] = (await client.writeRecords({ mutations: [customer(uid("exp"))] })).results;
      await client.writeRecords({ mutations: [customer(uid("exp")), customer(uid("exp"))] });
      await simulateRetention(t.node.databaseUrl, await logTail(t.node.databaseUrl));
      const errors: string[] = [];
      const replica = replicate("customers", { clients: t.grpcJs(ChangeService), cursor: first!.cursor, onError: (e) => errors.push(e.rawMessage) });
      replicas.push(replica);
      const [end] = (await client.writeRecords({ mutations: [customer(uid("exp-after"))] })).results;
      await replica.waitForCursor(end!.cursor);
      expect(replica.stats.snapshots).toBe(1);
      expect(errors.some((e) => e.includes("retention"))).toBe(true);
      expect(copyJson(replica.records.values())).toEqual(await serverCopy(client, "customers"));
      await replica.close();
    } finally {
      await t.stop();
    }
  });
});
