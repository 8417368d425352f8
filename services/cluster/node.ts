// A node's part in the cluster: its config source, membership, leadership and
// coordination state, with etcd (membership under a session lease, leader
// election, config in etcd) or standalone (no etcd configured: the node is its
// own leader with term 0 and reads config from its file).
import { hostname } from "node:os";
import type { Etcd3 } from "etcd3";
import { loadFileConfigSource } from "../config/file-source.js";
import type { ConfigDocumentSource } from "../config/source.js";
import type { Logger } from "../platform/logger.js";
import { openEtcdConfigSource } from "./config-store.js";
import type { Leadership, LeadershipSource } from "./duties/runner.js";
import { LeaderElection } from "./election.js";
import { createEtcdClient, etcdUnavailable, type EtcdSettings } from "./etcd-client.js";
import { Membership, type Coordination, type MemberInfo } from "./membership.js";
import { Session } from "./session.js";
import { UNKNOWN_STREAM_STATS, type StreamStatsProvider } from "./stream-stats.js";

/** grpc.health.v1 entry of coordination: NOT_SERVING while etcd is unreachable (the node itself stays SERVING). */
export const COORDINATION_HEALTH = "deltamesh.coordination";

export interface ClusterNodeOptions {
  nodeId: string;
  /** host:port clients reach this node's native gRPC on. */
  address: string;
  services: string[];
  version: string;
  /** The node's config file: the config without etcd, the seed of an empty etcd store. */
  configFile: string;
  etcd?: EtcdSettings;
  log: Logger;
}

/** What the cluster looks like from this node. */
export interface ClusterView {
  etcdReachable: boolean;
  leader: { nodeId: string; term: bigint } | null;
  /** Every registered node; this node's entry is live. */
  members: MemberInfo[];
}

export interface ClusterNode extends LeadershipSource {
  readonly config: ConfigDocumentSource;
  readonly nodeId: string;
  coordination(): Coordination;
  onCoordinationChange(listener: (c: Coordination) => void): () => void;
  /** This node as it describes itself, now. */
  self(): MemberInfo;
  view(): Promise<ClusterView>;
  /** Where stream figures come from (the change-streaming service, once wired in). */
  setStreamStats(provider: StreamStatsProvider): void;
  /** Leaves the cluster at once (revokes the session lease: no TTL wait for a new leader). */
  close(): Promise<void>;
}

/**
 * Safety margin kept off the lease validity when bounding a duty: etcd and
 * this node measure the TTL on different clocks and PostgreSQL starts its
 * timeouts a little after the node does.
 */
export function leadershipMargin(ttlSeconds: number): number {
  return Math.min(1000, ttlSeconds * 100);
}

/** host:port to advertise when none is configured: a wildcard listen address names the host instead. */
export function defaultAddress(host: string, port: number): string {
  const name = host === "0.0.0.0" || host === "::" || host === "" ? hostname() : host;
  return name.includes(":") ? `[${name}]:${port}` : `${name}:${port}`;
}

export async function startClusterNode(opts: ClusterNodeOptions): Promise<ClusterNode> {
  return opts.etcd ? startEtcdNode(opts, opts.etcd) : startStandaloneNode(opts);
}

/** Shared by both kinds: the live self-description. */
function describer(opts: ClusterNodeOptions, config: () => ConfigDocumentSource, state: () => { coordination: Coordination; leadership: Leadership | null }) {
  const startTime = new Date().toISOString();
  let configTime = startTime;
  config().onChange(() => {
    configTime = new Date().toISOString();
  });
  let streams: StreamStatsProvider = UNKNOWN_STREAM_STATS;
  return {
    setStreamStats(p: StreamStatsProvider): void {
      streams = p;
    },
    self(): MemberInfo {
      const { coordination, leadership } = state();
      const s = streams.streamStats();
      return {
        id: opts.nodeId,
        address: opts.address,
        services: opts.services,
        version: opts.version,
        startTime,
        configRevision: config().current().revision,
        configTime,
        leader: leadership !== null,
        leaderSince: leadership ? leadership.since.toISOString() : null,
        coordination,
        streamSubscribers: s ? s.subscribers : null,
        streamLag: s ? s.lag.toString() : null,
        reportTime: new Date().toISOString(),
      };
    },
  };
}

async function startStandaloneNode(opts: ClusterNodeOptions): Promise<ClusterNode> {
  const config = await loadFileConfigSource(opts.configFile, { watch: true, log: opts.log });
  // Alone, the node leads for good: term 0, below every etcd term, so a
  // standalone node pointed at a database an etcd cluster runs is fenced off.
  const leadership: Leadership = { term: 0n, since: new Date(), budgetMs: () => 30_000 };
  const d = describer(opts, () => config, () => ({ coordination: "standalone", leadership }));
  return {
    config,
    nodeId: opts.nodeId,
    coordination: () => "standalone",
    onCoordinationChange: () => () => undefined,
    leadership: () => leadership,
    onLeadershipChange: () => () => undefined,
    self: d.self,
    setStreamStats: d.setStreamStats,
    async view() {
      return { etcdReachable: false, leader: { nodeId: opts.nodeId, term: 0n }, members: [d.self()] };
    },
    close: () => config.close(),
  };
}

async function startEtcdNode(opts: ClusterNodeOptions, etcd: EtcdSettings): Promise<ClusterNode> {
  const { log } = opts;
  const client: Etcd3 = createEtcdClient(etcd);
  let config: ConfigDocumentSource;
  try {
    config = await openEtcdConfigSource({ client, prefix: etcd.prefix, seedFile: opts.configFile, log });
  } catch (e) {
    client.close();
    throw e;
  }
  const session = new Session(client, etcd.leaseTtlSeconds, log);
  const election = new LeaderElection(client, etcd.prefix, opts.nodeId, session, log);
  const margin = leadershipMargin(etcd.leaseTtlSeconds);

  let since: { term: bigint; at: Date } | null = null;
  const leadership = (): Leadership | null => {
    const term = election.myTerm();
    if (term === null) return null;
    if (since?.term !== term) since = { term, at: new Date() };
    return { term, since: since.at, budgetMs: () => session.validForMs() - margin };
  };
  const coordination = (): Coordination => (session.snapshot().state === "connected" ? "connected" : "degraded");

  const d = describer(opts, () => config, () => ({ coordination: coordination(), leadership: leadership() }));
  const membership = new Membership(client, etcd.prefix, session, d.self, log);

  const leadListeners = new Set<() => void>();
  const coordListeners = new Set<(c: Coordination) => void>();
  let lastCoordination = coordination();
  let wasLeader: bigint | null = null;
  // Tells listeners and republishes the entry when leadership or coordination changed.
  const changed = (): void => {
    const c = coordination();
    const term = leadership()?.term ?? null;
    const leadChanged = term !== wasLeader;
    const coordChanged = c !== lastCoordination;
    if (!leadChanged && !coordChanged) return;
    if (leadChanged) {
      log.info({ term: term?.toString() ?? null }, term === null ? "not the leader" : "this node is the leader");
      wasLeader = term;
      for (const l of [...leadListeners]) l();
    }
    if (coordChanged) {
      lastCoordination = c;
      for (const l of [...coordListeners]) l(c);
    }
    void membership.publish();
  };
  session.onChange(changed);
  election.onChange(changed);
  config.onChange(() => void membership.publish());
  // Leadership also ends silently when the lease validity runs out (etcd
  // unreachable): look at it between renewals too.
  const tick = setInterval(changed, 250);
  tick.unref();

  session.start();
  election.start();
  membership.start();

  return {
    config,
    nodeId: opts.nodeId,
    coordination,
    onCoordinationChange(l) {
      coordListeners.add(l);
      return () => coordListeners.delete(l);
    },
    leadership,
    onLeadershipChange(l) {
      leadListeners.add(l);
      return () => leadListeners.delete(l);
    },
    self: d.self,
    setStreamStats: d.setStreamStats,
    async view() {
      const me = d.self();
      try {
        const [members] = await Promise.all([membership.list(), election.refresh()]);
        const l = election.leader();
        const leader = l && { nodeId: l.nodeId, term: l.term };
        const others = members.filter((m) => m.id !== me.id);
        return { etcdReachable: true, leader, members: [...others, me].sort((a, b) => a.id.localeCompare(b.id)) };
      } catch (e) {
        log.debug({ err: etcdUnavailable(e) }, "cluster view without etcd");
        const l = election.leader();
        return { etcdReachable: false, leader: l && { nodeId: l.nodeId, term: l.term }, members: [me] };
      }
    },
    async close() {
      clearInterval(tick);
      await membership.close();
      await election.close();
      await session.close();
      await config.close();
      client.close();
    },
  };
}
