// Config in etcd across three real node processes: a change applied on one
// node is live on all three within a second; a malformed one is refused and
// no node changes (also when written to etcd around deltamesh); operators use
// `deltamesh config get|apply`; GetStatus reports the cluster; the leader's
// retention runs under its term.
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { CoordinationState } from "../../../gen/deltamesh/v1/cluster_pb.js";
import { BadRequestSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { parseConfigText } from "../../../services/config/parse.js";
import { scratchDir } from "../../support/env.js";
import { rejection, str } from "../../support/rpc.js";
import { ageWholeLog, floorOf } from "./sql.js";
import { ownEntry, showNodeLogsOnFailure, startTestCluster, waitFor, type TestCluster } from "./support.js";

const run = promisify(execFile);
const BIN = fileURLToPath(new URL("../../../bin/deltamesh.mjs", import.meta.url));
const NODES = [0, 1, 2];

let c: TestCluster;
showNodeLogsOnFailure(() => c);
let etcd: Etcd3;
beforeAll(async () => {
  c = await startTestCluster("config");
  etcd = new Etcd3({ hosts: c.local.etcdEndpoint });
});
afterAll(async () => {
  etcd?.close();
  await c?.stop();
});

const configKey = () => `${c.local.etcdPrefix}config/document`;
const revisionOf = async (i: number) => (await c.admin(i).getConfig({})).revision;

/** The current document with one more collection. */
async function withCollection(name: string): Promise<string> {
  const doc = parseConfigText((await c.admin(0).getConfig({})).document) as { collections: Record<string, unknown> };
  doc.collections[name] = { fields: { note: { type: "string" } } };
  return stringify(doc);
}

const visit = (collection: string, id: string) => ({ mutations: [{ ref: { collection, target: { case: "id" as const, value: id } }, set: { note: str("hello") } }] });

describe("config in etcd", () => {
  it("a change applied on one node is live on all three within one second", async () => {
    const document = await withCollection("visits");
    for (const i of NODES) await expect(c.records(i).writeRecords(visit("visits", `before-${i}`))).rejects.toThrow();

    const calledAt = Date.now();
    const applied = await c.admin(0).applyConfig({ document });
    expect(applied.changed).toBe(true);
    for (const i of NODES) await waitFor(`node ${i} at revision ${applied.revision}`, 5000, async () => ((await revisionOf(i)) === applied.revision ? true : undefined), 50);
    // Each node stamps the moment it swapped the new config in: measured from
    // the operator's call, without the noise of polling.
    const liveAt = await Promise.all(NODES.map(async (i) => timestampDate(ownEntry(await c.status(i)).configTime!).getTime()));
    const fromCall = liveAt.map((t) => t - calledAt);
    const fromOrigin = liveAt.map((t) => t - liveAt[0]!);
    console.log(`[cluster] config change live on the three nodes ${fromCall.join(", ")} ms after the ApplyConfig call (${fromOrigin.join(", ")} ms after the applying node)`);
    for (const ms of fromCall) expect(ms).toBeLessThanOrEqual(1000);
    // Live means used: every node now accepts the new collection.
    for (const i of NODES) await c.records(i).writeRecords(visit("visits", `after-${i}`));
    // Every node reports the revision it runs, the same everywhere.
    const status = await c.status(2);
    expect(status.nodes.map((n) => n.configRevision)).toEqual([applied.revision, applied.revision, applied.revision]);
  });

  it("a malformed change is refused with every problem named, and no node changes", async () => {
    const before = await revisionOf(1);
    const doc = parseConfigText(await withCollection("broken")) as { collections: { broken: { fields: { note: { type: string } } } }; retention: Record<string, string> };
    doc.collections.broken.fields.note.type = "strng";
    doc.retention.change_log = "forever";
    const err = await rejection(c.admin(1).applyConfig({ document: stringify(doc) }));
    expect(err.code).toBe(Code.InvalidArgument);
    const fields = err.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
    expect(fields).toEqual(expect.arrayContaining(["collections.broken.fields.note.type", "retention.change_log"]));
    // A stale compare-and-set is refused too.
    const stale = await rejection(c.admin(2).applyConfig({ document: await withCollection("late"), expectedRevision: "1" }));
    expect(stale.code).toBe(Code.Aborted);

    await new Promise((r) => setTimeout(r, 1000));
    for (const i of NODES) expect(await revisionOf(i)).toBe(before);
    expect(String((await etcd.get(configKey()).exec()).kvs[0]!.mod_revision)).toBe(before);
  });

  it("a malformed document written to etcd around deltamesh is ignored by every node; the next good one is applied", async () => {
    const before = await revisionOf(0);
    await etcd.put(configKey()).value("collections: [this is: not valid");
    await new Promise((r) => setTimeout(r, 1000));
    for (const i of NODES) expect(await revisionOf(i)).toBe(before);
    for (const i of NODES) await c.records(i).writeRecords(visit("visits", `still-${i}`));

    await etcd.put(configKey()).value(await withCollection("visits_two"));
    const now = String((await etcd.get(configKey()).exec()).kvs[0]!.mod_revision);
    for (const i of NODES) await waitFor(`node ${i} at ${now}`, 2000, async () => ((await revisionOf(i)) === now ? true : undefined));
  });

  it("operators read and replace the document with `deltamesh config get` and `config apply -f`", async () => {
    const dir = await scratchDir("cli");
    const server = c.node(2).grpcAddress;
    const got = await run(process.execPath, [BIN, "config", "get", "--server", server]);
    expect(got.stderr).toContain(`# revision ${await revisionOf(2)} (from etcd)`);
    expect(parseConfigText(got.stdout)).toHaveProperty("collections.visits_two");

    const good = path.join(dir, "good.json");
    await writeFile(good, JSON.stringify(parseConfigText(await withCollection("from_cli"))));
    const applied = await run(process.execPath, [BIN, "config", "apply", "-f", good, "--server", server]);
    const rev = /applied: revision (\d+)/.exec(applied.stdout)?.[1];
    expect(rev).toBeDefined();
    for (const i of NODES) await waitFor(`node ${i} at ${rev}`, 2000, async () => ((await revisionOf(i)) === rev ? true : undefined));

    const bad = path.join(dir, "bad.yaml");
    await writeFile(bad, "collections:\n  x:\n    fields:\n      y: {type: strng}\n");
    const refused = await run(process.execPath, [BIN, "config", "apply", "-f", bad, "--server", server]).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(refused?.code).toBe(1);
    expect(refused?.stderr).toContain("collections.x.fields.y.type");
    expect(await revisionOf(0)).toBe(rev);
  });
});

describe("cluster status and leader duties", () => {
  it("GetStatus shows three connected nodes, one leader whose term the database fence holds, and the change-log bounds", async () => {
    const s = await waitFor("the fence at the leader's term", 5000, async () => {
      const st = await c.status(1);
      return st.fencedTerm === st.leaderTerm && st.leaderTerm > 0n ? st : undefined;
    });
    expect(s.nodeId).toBe("node-2");
    expect(s.coordination).toBe(CoordinationState.CONNECTED);
    expect(s.etcdReachable).toBe(true);
    expect(s.nodes.map((n) => n.nodeId)).toEqual(["node-1", "node-2", "node-3"]);
    expect(s.nodes.filter((n) => n.leader).map((n) => n.nodeId)).toEqual([s.leaderNodeId]);
    for (const n of s.nodes) {
      expect(n.address).toBe(c.local.nodes.find((x) => x.id === n.nodeId)!.grpcAddress);
      expect(n.services).toContain("deltamesh.v1.ClusterService");
      expect(n.coordination).toBe(CoordinationState.CONNECTED);
      expect(n.streamSubscribers).toBe(0); // no stream is open
      expect(n.streamLag).toBeDefined();
    }
    expect(s.changeLogTail).toBeGreaterThan(0n); // the writes above
    expect(ownEntry(s).nodeId).toBe("node-2");
    const coordination = await c.health(1).check({ service: "deltamesh.coordination" });
    expect(coordination.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("the leader deletes expired changes under its term and advances the floor that GetStatus reports", async () => {
    // Two hours pass for the whole log so far (the writes above included): all of it expires.
    const last = await ageWholeLog(c.db);
    const status = await c.status(0);
    await waitFor("retention of the aged changes", 5000, async () => ((await floorOf(c.db)) >= last ? true : undefined));
    const after = await c.status(0);
    expect(after.changeLogFloor).toBe(last);
    expect(await c.db.query("SELECT 1 FROM changes WHERE seq <= $1", [last.toString()]).then((r) => r.rowCount)).toBe(0);
    const runs = await c.db.query<{ term: string; holder: string }>(
      "SELECT DISTINCT term, holder FROM duty_runs WHERE duty = 'change_log_retention'",
    );
    expect(runs.rows).toEqual([{ term: status.leaderTerm.toString(), holder: status.leaderNodeId }]);
  });
});
