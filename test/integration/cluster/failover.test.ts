// Leadership and membership under failure, with three real node processes and
// a real etcd: kill -9 the leader, freeze it past its lease (SIGSTOP) and wake
// it (SIGCONT), restart etcd. Writes keep working throughout (and a stream on
// the killed leader resumes on another node without loss); the database
// shows that no ex-leader's duty write landed after its successor's claim.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ClusterService, CoordinationState } from "../../../gen/deltamesh/v1/cluster_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { replicate } from "../../../clients/typescript/replicate.js";
import { startTestNode } from "../../support/node.js";
import { copyJson, serverCopy } from "../../support/streams.js";
import { rejection } from "../../support/rpc.js";
import { ageWholeLog, count, floorOf } from "./sql.js";
import { TTL_S, customer, ownEntry, showNodeLogsOnFailure, startTestCluster, waitFor, writeLoad, type TestCluster } from "./support.js";

let c: TestCluster;
showNodeLogsOnFailure(() => c);
beforeAll(async () => {
  c = await startTestCluster("failover");
});
afterAll(async () => {
  await c?.stop();
});

const others = (i: number) => [0, 1, 2].filter((j) => j !== i);

/** Waits until node `via` names a leader other than `old` whose term the database fence holds; returns its index and term. */
async function newLeader(via: number, old: number, timeoutMs: number): Promise<{ index: number; term: bigint }> {
  return waitFor(`a new leader (seen by node ${via})`, timeoutMs, async () => {
    const s = await c.status(via);
    const index = c.local.nodes.findIndex((n) => n.id === s.leaderNodeId);
    return index >= 0 && index !== old && s.fencedTerm === s.leaderTerm ? { index, term: s.leaderTerm } : undefined;
  });
}

describe("leader failover", () => {
  it("kill -9 the leader: another node leads within the lease TTL + 1 s, the dead node leaves the member list, writes go on, its stream resumes elsewhere", async () => {
    const old = await c.leaderIndex(0);
    const [a, b] = others(old) as [number, number];
    // A replica streaming from the node about to die, with another node to resume on.
    const replica = replicate("customers", { clients: [c.changes(old), c.changes(a)], retryMinMs: 50 });
    await replica.ready;
    const load = [writeLoad(c.records(a), "kill-a"), writeLoad(c.records(b), "kill-b")];
    await new Promise((r) => setTimeout(r, 300));

    const killedAt = Date.now();
    c.node(old).signal("SIGKILL");
    const next = await newLeader(a, old, (TTL_S + 10) * 1000);
    const since = timestampDate(ownEntry(await c.status(next.index)).leaderSince!).getTime();
    const gap = since - killedAt;
    console.log(`[cluster] kill -9 of the leader: new leader elected ${gap} ms later (lease TTL ${TTL_S * 1000} ms)`);
    expect(gap).toBeLessThanOrEqual(TTL_S * 1000 + 1000);

    const members = await waitFor("the dead node gone from membership", 3000, async () => {
      const s = await c.status(b);
      return s.nodes.length === 2 ? s.nodes.map((n) => n.nodeId) : undefined;
    });
    expect(members).not.toContain(c.node(old).id);
    for (const l of load) {
      const r = await l.stop();
      expect(r.failed).toEqual([]);
      expect(r.ok).toBeGreaterThan(0);
    }
    // The stream moved to a live node and lost nothing: the copy equals the database.
    const [last] = (await c.records(a).writeRecords({ mutations: [customer("kill-last")] })).results;
    await replica.waitForCursor(last!.cursor);
    expect(copyJson(replica.records.values())).toEqual(await serverCopy(c.records(b), "customers"));
    expect(replica.stats.reconnects).toBeGreaterThan(0);
    expect(replica.stats.unknownRecordUpserts).toBe(0);
    await replica.close();

    // Back on the same port, it rejoins as a follower.
    await c.node(old).start();
    const s = await waitFor("three members again", 5000, async () => {
      const st = await c.status(old);
      return st.nodes.length === 3 ? st : undefined;
    });
    expect(s.leaderNodeId).toBe(c.node(next.index).id);
    expect(ownEntry(s).leader).toBe(false);
  });

  it("stop the leader cleanly (SIGTERM): it drains, exits 0 and hands leadership over without waiting out its lease", async () => {
    const old = await c.leaderIndex(0);
    const [a, b] = others(old) as [number, number];
    const load = [writeLoad(c.records(a), "term-a"), writeLoad(c.records(b), "term-b")];
    const stoppedAt = Date.now();
    await c.node(old).stop();
    expect(c.node(old).process?.exitCode).toBe(0);
    const next = await newLeader(a, old, (TTL_S + 10) * 1000);
    const gap = timestampDate(ownEntry(await c.status(next.index)).leaderSince!).getTime() - stoppedAt;
    console.log(`[cluster] clean stop of the leader: new leader elected ${gap} ms after SIGTERM (lease TTL ${TTL_S * 1000} ms)`);
    expect(gap).toBeLessThan(TTL_S * 1000);
    for (const l of load) expect((await l.stop()).failed).toEqual([]);
    await c.node(old).start();
    await waitFor("three members again", 5000, async () => ((await c.status(old)).nodes.length === 3 ? true : undefined));
  });

  it("SIGSTOP the leader past its lease, SIGCONT it: no duty write of the old term is accepted after the new leader's claim", async () => {
    const old = await c.leaderIndex(0);
    const oldTerm = (await c.status(old)).leaderTerm;
    const [a, b] = others(old) as [number, number];
    const load = [writeLoad(c.records(a), "stop-a"), writeLoad(c.records(b), "stop-b")];

    c.node(old).signal("SIGSTOP");
    const next = await newLeader(a, old, (TTL_S + 10) * 1000);
    expect(next.term).toBeGreaterThan(oldTerm);
    // The new leader does duty work under its term while the old one is frozen.
    const floor1 = await ageWholeLog(c.db);
    await waitFor("retention by the new leader", 5000, async () => ((await floorOf(c.db)) >= floor1 ? true : undefined));

    // The old leader wakes up believing nothing happened, with expired changes to delete.
    const floor2 = await ageWholeLog(c.db);
    const wokeAt = Date.now();
    c.node(old).signal("SIGCONT");
    await waitFor("retention after the wake-up", 5000, async () => ((await floorOf(c.db)) >= floor2 ? true : undefined));
    await new Promise((r) => setTimeout(r, 1500)); // several duty intervals for the woken node to try

    const firstNew = await c.db.query<{ id: string }>("SELECT min(id) AS id FROM duty_runs WHERE term = $1", [next.term.toString()]);
    expect(firstNew.rows[0]!.id).not.toBeNull();
    expect(await count(c.db, "SELECT count(*) AS n FROM duty_runs WHERE term = $1 AND id > $2", [oldTerm.toString(), firstNew.rows[0]!.id])).toBe(0);
    expect(await count(c.db, "SELECT count(*) AS n FROM duty_runs WHERE term < $1 AND id > $2", [next.term.toString(), firstNew.rows[0]!.id])).toBe(0);
    const fence = await c.db.query<{ term: string }>("SELECT term FROM leader_fence");
    expect(BigInt(fence.rows[0]!.term)).toBe(next.term);

    // The woken node follows, and still serves.
    const woken = await waitFor("the woken node to rejoin as a follower", 10_000, async () => {
      const s = await c.status(old);
      return s.nodes.length === 3 && !ownEntry(s).leader && s.coordination === CoordinationState.CONNECTED ? s : undefined;
    });
    expect(woken.leaderNodeId).toBe(c.node(next.index).id);
    await c.records(old).writeRecords({ mutations: [customer("woken")] });
    const said = (await readFile(c.node(old).logFile, "utf8"))
      .split("\n")
      .filter((l) => l.includes(`"node":"${c.node(old).id}"`) && /leader|fenced|expired|refused/.test(l))
      .map((l) => JSON.parse(l) as { time: number; msg: string; err?: { message?: string } })
      .filter((l) => l.time >= wokeAt)
      .map((l) => `+${l.time - wokeAt} ms ${l.msg}${l.err?.message ? ` (${l.err.message})` : ""}`);
    console.log(`[cluster] the frozen ex-leader after SIGCONT:\n  ${said.join("\n  ")}`);
    for (const l of load) expect((await l.stop()).failed).toEqual([]);
  });

  it("freeze the leader in the middle of a duty transaction: the database cuts it, the successor claims, none of the frozen writes land", async () => {
    const old = await c.leaderIndex(0);
    const oldTerm = (await c.status(old)).leaderTerm;
    const [a] = others(old) as [number, number];
    const load = writeLoad(c.records(a), "mid-a");
    // Hold the floor row so the leader's next retention transaction stops
    // half-way: changes deleted, floor not yet raised, fence row locked.
    const blocker = await c.db.connect();
    await blocker.query("BEGIN");
    await blocker.query("INSERT INTO deltamesh_meta (key, value) VALUES ('change_log_floor', '0') ON CONFLICT (key) DO NOTHING");
    await blocker.query("SELECT value FROM deltamesh_meta WHERE key = 'change_log_floor' FOR UPDATE");
    const pending = await ageWholeLog(c.db);
    await waitFor("the leader's retention to block on the floor row", 5000, async () =>
      (await count(c.db, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%deltamesh_meta%'")) > 0 ? true : undefined,
    );
    c.node(old).signal("SIGSTOP");
    const frozenAt = Date.now();
    await blocker.query("COMMIT");
    blocker.release();

    const next = await newLeader(a, old, (TTL_S + 10) * 1000);
    const claimed = await c.db.query<{ claimed_at: Date }>("SELECT claimed_at FROM leader_fence");
    console.log(
      `[cluster] leader frozen mid-transaction: successor's term claimed in the database ${claimed.rows[0]!.claimed_at.getTime() - frozenAt} ms after the freeze (lease TTL ${TTL_S * 1000} ms)`,
    );
    await waitFor("retention by the successor", 5000, async () => ((await floorOf(c.db)) >= pending ? true : undefined));
    c.node(old).signal("SIGCONT");
    await new Promise((r) => setTimeout(r, 1000));

    // Everything retention did to these changes was done under the new term.
    const runs = await c.db.query<{ term: string }>(
      "SELECT DISTINCT term FROM duty_runs WHERE duty = 'change_log_retention' AND (detail->>'floor')::bigint >= $1",
      [pending.toString()],
    );
    expect(runs.rows).toEqual([{ term: next.term.toString() }]);
    const firstNew = await c.db.query<{ id: string }>("SELECT min(id) AS id FROM duty_runs WHERE term = $1", [next.term.toString()]);
    expect(await count(c.db, "SELECT count(*) AS n FROM duty_runs WHERE term = $1 AND id > $2", [oldTerm.toString(), firstNew.rows[0]!.id])).toBe(0);
    await waitFor("the woken node to follow", 10_000, async () => {
      const s = await c.status(old);
      return s.nodes.length === 3 && !ownEntry(s).leader ? true : undefined;
    });
    expect((await load.stop()).failed).toEqual([]);
  });

  it("restart etcd with an outage longer than the lease: no node crashes, writes go on, no duties run while etcd is down, everything recovers", async () => {
    const leaderBefore = await c.leaderIndex(0);
    const load = [0, 1, 2].map((i) => writeLoad(c.records(i), `etcd-${i}`));
    await c.local.stopEtcd();
    // Every node notices and says so in its health, but keeps serving.
    for (const i of [0, 1, 2]) {
      await waitFor(`node ${i} degraded`, 10_000, async () =>
        (await c.health(i).check({ service: "deltamesh.coordination" })).status === HealthCheckResponse_ServingStatus.NOT_SERVING ? true : undefined,
      );
      expect((await c.health(i).check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
    // The leader's lease validity has run out by now: expired changes stay put.
    await new Promise((r) => setTimeout(r, TTL_S * 1000));
    const floorBefore = await floorOf(c.db);
    const pending = await ageWholeLog(c.db);
    await new Promise((r) => setTimeout(r, 800));
    expect(await floorOf(c.db)).toBe(floorBefore);
    const status = await c.status(1);
    expect(status.etcdReachable).toBe(false);
    expect(status.coordination).toBe(CoordinationState.DEGRADED);
    // Config cannot change meanwhile, and the client is told so in domain terms.
    const refused = await rejection(c.admin(2).applyConfig({ document: (await c.admin(2).getConfig({})).document + "\n# edit\n" }));
    expect(refused.code).toBe(Code.Unavailable);
    expect(refused.findDetails(ErrorInfoSchema)[0]?.reason).toBe("ETCD_UNAVAILABLE");
    // A node started now waits for etcd (not serving meanwhile) and joins when it returns.
    const late = startTestNode({
      nodeId: "node-late",
      databaseUrl: c.local.databaseUrl,
      etcd: { endpoints: [c.local.etcdEndpoint], prefix: c.local.etcdPrefix, leaseTtlSeconds: TTL_S },
    });
    await c.local.startEtcd();

    // Back: sessions, leadership, membership and duties recover by themselves.
    const recovered = await waitFor("the cluster to recover", 20_000, async () => {
      const all = await Promise.all([0, 1, 2].map((i) => c.status(i)));
      const ids = c.local.nodes.map((n) => n.id);
      const ok = all.every(
        (s) => s.etcdReachable && s.coordination === CoordinationState.CONNECTED && ids.every((id) => s.nodes.some((n) => n.nodeId === id)) && s.leaderNodeId !== "",
      );
      return ok ? all : undefined;
    });
    expect(new Set(recovered.map((s) => s.leaderNodeId)).size).toBe(1);
    const joined = await late;
    try {
      const s = await waitFor("the late node in the member list", 10_000, async () => {
        const st = await c.status(0);
        return st.nodes.some((n) => n.nodeId === "node-late") ? st : undefined;
      });
      const revisions = new Set(s.nodes.map((n) => n.configRevision));
      expect(revisions.size).toBe(1);
      expect(ownEntry(await joined.connect(ClusterService).getStatus({})).configRevision).toBe([...revisions][0]);
    } finally {
      await joined.stop();
    }
    console.log(`[cluster] after the etcd restart the leader is ${recovered[0]!.leaderNodeId} (before: ${c.node(leaderBefore).id})`);
    await waitFor("retention after recovery", 10_000, async () => ((await floorOf(c.db)) >= pending ? true : undefined));
    for (const i of [0, 1, 2]) {
      expect(c.node(i).process?.exitCode).toBeNull();
      expect((await c.health(i).check({ service: "deltamesh.coordination" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
    for (const l of load) {
      const r = await l.stop();
      expect(r.failed).toEqual([]);
      expect(r.ok).toBeGreaterThan(0);
    }
  });
});
