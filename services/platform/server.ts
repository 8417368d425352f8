// Server assembly: one node's database, config, write pipeline and services,
// served over native gRPC (grpc-js) and Connect/gRPC-Web (connect-node).
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ClusterService } from "../../gen/deltamesh/v1/cluster_pb.js";
import { ChangeService } from "../../gen/deltamesh/v1/changes_pb.js";
import { ConflictService } from "../../gen/deltamesh/v1/conflicts_pb.js";
import { DutyRunner } from "../cluster/duties/runner.js";
import { createClusterService } from "../cluster/handlers.js";
import { COORDINATION_HEALTH, defaultAddress, startClusterNode, type ClusterNode } from "../cluster/node.js";
import { randomBytes } from "node:crypto";
import { AccessService } from "../../gen/deltamesh/v1/access_pb.js";
import { AccessControl } from "../access/control.js";
import { AuditLog } from "../access/audit-log.js";
import { createAccessService } from "../access/handlers.js";
import { AuditStore } from "../store/audit-store.js";
import { DEFAULT_TENANT } from "../records/model.js";
import { createAuthenticator } from "./auth/authenticate.js";
import { RecordService, WriteRecordsRequestSchema } from "../../gen/deltamesh/v1/records_pb.js";
import { createChangeService } from "../changes/handlers.js";
import { ChangeStreams } from "../changes/streams.js";
import { AccessView } from "../changes/access-view.js";
import { onPolicyChange } from "../access/policy-changes.js";
import { createConflictService } from "../conflicts/handlers.js";
import type { ConfigSource } from "../config/source.js";
import { createRecordService } from "../records/handlers.js";
import { decodeWriteRecordsRequest } from "../records/fast-decode.js";
import { WritePipeline } from "../records/write-pipeline.js";
import { startEmbeddedPostgres, type RunningPostgres } from "../store/embedded-postgres.js";
import { ChangeReader } from "../store/change-reader.js";
import { RecordStore } from "../store/record-store.js";
import { PAGE_TOKEN_SECRET_KEY, sharedSecret } from "../store/shared-secret.js";
import { PageTokens } from "./page-token.js";
import { HealthState } from "./health.js";
import { createLogger, type Logger } from "./logger.js";
import type { NodeConfig } from "./node-config.js";
import { registerConfigRevision, registerLeaderStatus, registerOpenStreams, registerRecordCache, registerStreamLag } from "./telemetry/gauges.js";
import { rpcTelemetry } from "./telemetry/rpc.js";
import { startGrpcServer, type GrpcTls } from "./transport/grpc-server.js";
import { startWebServer } from "./transport/web-server.js";
import { VERSION } from "./version.js";
import type { RequestHook, ServedService } from "./transport/wrap.js";

export interface RunningNode {
  grpcPort: number;
  webPort: number | null;
  /** Plaintext health-only gRPC port (probes when TLS is on), null when disabled. */
  healthPort: number | null;
  databaseUrl: string;
  store: RecordStore;
  config: ConfigSource;
  /** Membership, leadership and coordination state (standalone without etcd). */
  cluster: ClusterNode;
  log: Logger;
  /** Change streams: stream statistics, and view swaps for open streams. */
  streams: ChangeStreams;
  /** Drains and stops everything; safe to call more than once. */
  stop(): Promise<void>;
}

/** The services every node hosts, by the name their health status uses. */
export const SERVED: readonly DescService[] = [RecordService, ConflictService, ChangeService, AccessService, ClusterService];

/**
 * Health name that is SERVING while the process answers at all (liveness
 * probes): unlike "", it does not fail while the database is unreachable, so
 * a database outage does not make Kubernetes restart every node.
 */
export const LIVENESS = "liveness";

export async function startNode(cfg: NodeConfig, log: Logger = createLogger(cfg.logLevel, { node: cfg.nodeId })): Promise<RunningNode> {
  const health = new HealthState();
  let ready: { store: RecordStore; pipeline: WritePipeline; audit: AuditStore; streams: ChangeStreams; pageTokens: PageTokens } | null = null;
  // Joins the cluster (or runs standalone) once listening: config comes from it.
  let cluster: ClusterNode | null = null;
  // Authentication and access need config from the first call on; until the
  // cluster has handed it over, calls are refused as the node starting.
  const config = configOf(() => cluster);

  // Calls that arrive while the database is still starting get UNAVAILABLE, a
  // status every gRPC client retries; health says NOT_SERVING meanwhile.
  const readyGate: RequestHook = async () => {
    if (!ready) throw new ConnectError("the node is starting; retry shortly", Code.Unavailable);
  };
  // Access: authentication before anything else (so an unauthenticated
  // caller learns nothing, not even readiness), then enforcement per handler.
  const audit = new AuditLog(() => ready?.audit ?? null, log, { flushMs: cfg.auth.auditFlushMs });
  const access = new AccessControl(config, audit, maskHashKey(cfg, log));
  const auth = await createAuthenticator({
    settings: cfg.auth,
    insecureDev: cfg.insecureDevAuth,
    policy: () => config.current().policy,
    log,
    onFailure: (f) =>
      audit.record({
        tenant: DEFAULT_TENANT,
        actor: "",
        roles: [],
        kind: "unauthenticated",
        rpc: f.rpc,
        collection: "",
        recordIds: [],
        fields: [],
        reason: f.reason,
        device: "",
        deviceClass: "",
        peer: f.peer,
        details: {},
      }),
  });
  checkAuthConfigured(cfg, auth.verifiesTokens, log);
  const hooks: RequestHook[] = [auth.hook, readyGate];

  // Handlers reach the store and pipeline only once the database is ready
  // (the ready gate refuses calls before that).
  const deps = {
    get store() {
      return ready!.store;
    },
    get pipeline() {
      return ready!.pipeline;
    },
    get config() {
      return cluster!.config;
    },
    get cluster() {
      return cluster!;
    },
    get pool() {
      return ready!.store.pool;
    },
    get audit() {
      return ready!.audit;
    },
    get streams() {
      return ready!.streams;
    },
    get pageTokens() {
      return ready!.pageTokens;
    },
    access,
  };
  const services: ServedService[] = [
    { service: RecordService, impl: createRecordService(deps) },
    { service: ConflictService, impl: createConflictService(deps) },
    { service: ClusterService, impl: createClusterService(deps) },
    { service: AccessService, impl: createAccessService(deps) },
    { service: ChangeService, impl: createChangeService(deps) },
  ];

  const tls = cfg.tls ? await loadTls(cfg.tls) : undefined;
  const grpc = await startGrpcServer({
    host: cfg.host,
    port: cfg.grpcPort,
    services,
    hooks,
    interceptors: [rpcTelemetry],
    health,
    tls,
    maxReceiveMessageBytes: cfg.maxMessageBytes,
    log,
    fastDecoders: new Map([[WriteRecordsRequestSchema.typeName, decodeWriteRecordsRequest]]),
  });
  const web =
    cfg.webPort >= 0
      ? await startWebServer({ host: cfg.host, port: cfg.webPort, services, hooks, interceptors: [rpcTelemetry], health, tls, readMaxBytes: cfg.maxMessageBytes, log })
      : null;
  // Kubelet gRPC probes cannot speak TLS: with TLS on, they use this listener.
  const probes = cfg.healthPort >= 0 ? await startGrpcServer({ host: cfg.host, port: cfg.healthPort, services: [], health, log }) : null;
  health.setServing(LIVENESS, true);
  log.info({ grpcPort: grpc.port, webPort: web?.port ?? null, healthPort: probes?.port ?? null }, "listening");

  let embedded: RunningPostgres | null = null;
  let store: RecordStore;
  let duties: DutyRunner;
  let stopPolicyWatch = (): void => undefined;
  try {
    cluster = await startClusterNode({
      nodeId: cfg.nodeId,
      address: cfg.advertiseAddress ?? defaultAddress(cfg.host, grpc.port),
      services: SERVED.map((s) => s.typeName),
      version: VERSION,
      configFile: cfg.configFile,
      etcd: cfg.etcd,
      log,
    });
    if (config.current().policy.roles.size === 0) log.warn("the config has no policies section: every call will be refused (deny by default)");
    let url = cfg.databaseUrl;
    if (!url) {
      log.info({ dataDir: path.resolve(cfg.dataDir, "postgres") }, "no database URL configured: starting the embedded PostgreSQL");
      embedded = await startEmbeddedPostgres({ dataDir: path.join(cfg.dataDir, "postgres") });
      url = embedded.url;
    }
    store = await RecordStore.open({ url, recordCacheBytes: cfg.recordCacheMb * 1024 * 1024 });
    const tokenSecret = await pageTokenSecret(cfg, store).catch(async (e: unknown) => {
      await store.close();
      throw e;
    });
    const pageTokens = new PageTokens(tokenSecret);
    const streams = new ChangeStreams(ChangeReader.of(store), config, log);
    await streams.start().catch(async (e: unknown) => {
      await store.close();
      throw e;
    });
    ready = { store, pipeline: new WritePipeline(store, () => config.current().schemas, { commits: streams }), audit: new AuditStore(store.pool), streams, pageTokens };
    const c = cluster;
    // Open streams follow the access policy: a change of it (or of the
    // schemas it reads) swaps every stream's view, which sends the
    // enter_scope / leave_scope events that take each copy to what it may see now.
    stopPolicyWatch = onPolicyChange(c.config, (policy) => {
      const schemas = c.config.current().schemas;
      const swapped = streams.replaceViews((v) => (v instanceof AccessView ? v.rebuilt(policy, schemas) : null));
      if (swapped > 0) log.info({ streams: swapped, policyRevision: policy.revision }, "access changed: open streams switch views");
    });
    c.setStreamStats({
      streamStats() {
        const s = streams.streamStats();
        return { subscribers: s.subscribers, lag: s.tailerBehind };
      },
    });
    duties = new DutyRunner({ pool: store.pool, nodeId: cfg.nodeId, lead: c, retention: () => c.config.current().retention, log });
    duties.start();
    health.setServing("", true);
    for (const s of SERVED) health.setServing(s.typeName, true);
    // Degraded coordination is its own health entry: the node still serves.
    health.setServing(COORDINATION_HEALTH, c.coordination() !== "degraded");
    c.onCoordinationChange((state) => health.setServing(COORDINATION_HEALTH, state !== "degraded"));
    log.info({ configRevision: config.current().revision, etcd: cfg.etcd ? cfg.etcd.endpoints : null }, "ready");
  } catch (e) {
    auth.close();
    await Promise.allSettled([grpc.shutdown(0), web?.shutdown(0), probes?.shutdown(0), embedded?.stop(), cluster?.close()]);
    throw e;
  }

  const streams = ready.streams;
  const records = ready.store;
  const leads = cluster;
  const unregisterGauges = [
    registerConfigRevision(() => config.current().revision),
    registerOpenStreams(() => streams.streamStats().subscribers),
    registerStreamLag(() => streams.streamStats().maxLagMs / 1000),
    registerLeaderStatus(() => leads.leadership() !== null),
    registerRecordCache(() => records.recordCacheStats()),
  ];
  let stopping: Promise<void> | null = null;
  const databaseUrl = cfg.databaseUrl ?? embedded!.url;
  return {
    grpcPort: grpc.port,
    webPort: web?.port ?? null,
    healthPort: probes?.port ?? null,
    databaseUrl,
    store,
    config: cluster.config,
    cluster,
    log,
    streams: ready.streams,
    stop() {
      const c = cluster!;
      stopping ??= (async () => {
        log.info("shutting down: draining calls");
        // Leaves the cluster first: a successor leads without waiting out the lease.
        await duties.stop();
        stopPolicyWatch();
        for (const unregister of unregisterGauges) unregister();
        await Promise.all([grpc.shutdown(cfg.shutdownGraceMs), web?.shutdown(cfg.shutdownGraceMs), probes?.shutdown(0), c.close()]);
        await ready?.pipeline.drain();
        auth.close();
        await audit.close();
        await ready?.streams.stop();
        await store.close();
        await embedded?.stop();
        log.info("stopped");
      })();
      return stopping;
    },
  };
}

/** The config of the cluster node once it has joined; before that, calls are told to retry. */
function configOf(cluster: () => ClusterNode | null): ConfigSource {
  const source = (): ConfigSource => {
    const c = cluster();
    if (!c) throw new ConnectError("the node is starting; retry shortly", Code.Unavailable);
    return c.config;
  };
  return {
    current: () => source().current(),
    onChange: (listener) => source().onChange(listener),
    putSection: (name, value, expectedRevision) => source().putSection(name, value, expectedRevision),
    close: async () => undefined,
  };
}

async function loadTls(t: NonNullable<NodeConfig["tls"]>): Promise<GrpcTls> {
  return {
    certChain: await readFile(t.certFile),
    privateKey: await readFile(t.keyFile),
    rootCerts: t.caFile ? await readFile(t.caFile) : undefined,
    requireClientCert: t.requireClientCert,
  };
}

/**
 * A serving node must be able to tell who calls: bearer tokens configured, or
 * client certificates verified by a CA (mapped by the policy). Otherwise it
 * refuses to start rather than refuse every call; only the explicit
 * development mode runs without, and says so loudly.
 */
function checkAuthConfigured(cfg: NodeConfig, verifiesTokens: boolean, log: Logger): void {
  if (cfg.insecureDevAuth) {
    log.warn(
      "INSECURE DEVELOPMENT AUTH: unsigned tokens and x-deltamesh-* headers are trusted, and calls without credentials act as a development identity " +
        `with roles [${cfg.auth.devRoles.join(", ")}]. Never run this in production.`,
    );
    return;
  }
  if (!verifiesTokens && !cfg.tls?.caFile) {
    throw new Error(
      "no authentication configured: set DELTAMESH_JWT_ISSUER, DELTAMESH_JWT_AUDIENCE and DELTAMESH_JWT_JWKS_FILE (bearer tokens), " +
        "or a client CA (DELTAMESH_TLS_CA, mTLS with policies.client_certificates); for local development only, --insecure-dev-auth",
    );
  }
}

/**
 * The secret page tokens are sealed with (under a key of their own derived
 * from it): the configured mask secret every node shares, or else one the
 * nodes share through the database (generated once), never a per-node random
 * key, so a token from one node opens on any other.
 */
async function pageTokenSecret(cfg: NodeConfig, store: RecordStore): Promise<Uint8Array> {
  if (cfg.auth.maskHashKey) return new TextEncoder().encode(cfg.auth.maskHashKey);
  return sharedSecret(store.pool, PAGE_TOKEN_SECRET_KEY);
}

/** The secret keying `hash` masks; without one, a random key (hashes then differ across nodes and restarts). */
function maskHashKey(cfg: NodeConfig, log: Logger): Uint8Array {
  if (cfg.auth.maskHashKey) return new TextEncoder().encode(cfg.auth.maskHashKey);
  if (!cfg.insecureDevAuth) log.warn("DELTAMESH_MASK_HASH_KEY is not set: hash masks use a random key and are not stable across nodes or restarts");
  return cfg.insecureDevAuth ? new TextEncoder().encode("deltamesh-development-mask-key") : randomBytes(32);
}
