// A three-node cluster of real `deltamesh serve` processes for the cluster
// tests (deploy/local/cluster.ts), on the shared test PostgreSQL (a database
// of its own) and an etcd of its own (the tests restart it), with clients
// per node and the waits and background writers the proofs need.
import { readFile, writeFile } from "node:fs/promises";
import { afterEach } from "vitest";
import path from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { ClusterService, type GetStatusResponse, type NodeStatus } from "../../../gen/deltamesh/v1/cluster_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { startLocalCluster, type LocalCluster, type LocalNode } from "../../../deploy/local/cluster.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { scratchDir, testDatabaseUrl } from "../../support/env.js";
import { enm, str } from "../../support/rpc.js";

/** Lease TTL of the test clusters, seconds: short, so failovers take seconds. */
export const TTL_S = 2;

/** Retention in the test config: anything planted over an hour old is expired; duties run five times a second. */
export const TEST_RETENTION = "\nretention:\n  change_log: 1h\n  conflict_tickets: 1h\n  idempotency: 1h\n  interval: 200ms\n";

/** Lines of each node's log shown when a test fails. */
const LOG_TAIL_LINES = 60;

/**
 * When a test of this file fails, prints the end of every node's log: the
 * cluster's folder is deleted with the run's state, and a failure that shows
 * up once in CI is otherwise left without the nodes' side of the story.
 */
export function showNodeLogsOnFailure(cluster: () => TestCluster | undefined): void {
  afterEach(async (ctx) => {
    const c = cluster();
    if (ctx.task.result?.state !== "fail" || !c) return;
    for (const n of c.local.nodes) {
      const text = await readFile(n.logFile, "utf8").catch((e: Error) => `(no log: ${e.message})`);
      const tail = text.trimEnd().split("\n").slice(-LOG_TAIL_LINES).join("\n");
      console.error(`--- ${n.id} (${n.grpcAddress}), last ${LOG_TAIL_LINES} lines of ${n.logFile} after "${ctx.task.name}" failed:\n${tail}`);
    }
  });
}

export interface TestCluster {
  local: LocalCluster;
  db: pg.Pool;
  node(i: number): LocalNode;
  records(i: number): Client<typeof RecordService>;
  changes(i: number): Client<typeof ChangeService>;
  admin(i: number): Client<typeof ClusterService>;
  health(i: number): Client<typeof Health>;
  status(i: number): Promise<GetStatusResponse>;
  /** Index of the node `status` names leader (asked of node `via`). */
  leaderIndex(via: number): Promise<number>;
  stop(): Promise<void>;
}

export async function startTestCluster(label: string): Promise<TestCluster> {
  const dir = await scratchDir(label);
  const configFile = path.join(dir, "config.yaml");
  await writeFile(configFile, (await readFile(DEFAULT_CONFIG_PATH, "utf8")) + TEST_RETENTION);
  const databaseUrl = await testDatabaseUrl();
  const local = await startLocalCluster({
    dataDir: dir,
    databaseUrl,
    leaseTtlSeconds: TTL_S,
    configFile,
    logLevel: process.env.DELTAMESH_TEST_LOG ?? "info",
  });
  const db = new pg.Pool({ connectionString: databaseUrl, max: 3 });
  const transport = (i: number) => createGrpcTransport({ baseUrl: `http://${local.nodes[i]!.grpcAddress}` });
  const memo = <T>(make: (i: number) => T) => {
    const made = new Map<number, T>();
    return (i: number): T => {
      if (!made.has(i)) made.set(i, make(i));
      return made.get(i)!;
    };
  };
  const admin = memo((i) => createClient(ClusterService, transport(i)));
  const self: TestCluster = {
    local,
    db,
    node: (i) => local.nodes[i]!,
    records: memo((i) => createClient(RecordService, transport(i))),
    changes: memo((i) => createClient(ChangeService, transport(i))),
    admin,
    health: memo((i) => createClient(Health, transport(i))),
    status: (i) => admin(i).getStatus({}, { timeoutMs: 5000 }),
    async leaderIndex(via) {
      const s = await self.status(via);
      return local.nodes.findIndex((n) => n.id === s.leaderNodeId);
    },
    async stop() {
      await db.end();
      await local.stop();
    },
  };
  return self;
}

/** The node's own entry in a status it answered. */
export function ownEntry(s: GetStatusResponse): NodeStatus {
  const me = s.nodes.find((n) => n.nodeId === s.nodeId);
  if (!me) throw new Error(`status of ${s.nodeId} lists no entry for it`);
  return me;
}

/** Polls `probe` until it returns a value other than undefined; fails after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, everyMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

let uid = 0;
/** A valid new customer. */
export function customer(label: string) {
  return { ref: { collection: "customers", target: { case: "id" as const, value: `${label}-${process.pid}-${++uid}` } }, set: { name: str("Li Lei"), region: enm("east_china") } };
}

export interface WriteLoad {
  /** Stops writing; resolves with the counts (every failure's message). */
  stop(): Promise<{ ok: number; failed: string[] }>;
}

/** Writes one customer after another through `client`, reading each back, until stopped. */
export function writeLoad(client: Client<typeof RecordService>, label: string): WriteLoad {
  let running = true;
  let ok = 0;
  const failed: string[] = [];
  const loop = (async () => {
    while (running) {
      try {
        const m = customer(label);
        await client.writeRecords({ mutations: [m] }, { timeoutMs: 5000 });
        const read = await client.getRecord({ ref: m.ref }, { timeoutMs: 5000 });
        if (read.record?.id !== m.ref.target.value) throw new Error(`read back ${read.record?.id ?? "nothing"}`);
        ok++;
      } catch (e) {
        failed.push(e instanceof Error ? e.message : String(e));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { ok, failed };
    },
  };
}
