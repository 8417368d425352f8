// Server assembly: one node's database, config, write pipeline and services,
// served over native gRPC (grpc-js) and Connect/gRPC-Web (connect-node).
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ConflictService } from "../../gen/deltamesh/v1/conflicts_pb.js";
import { RecordService } from "../../gen/deltamesh/v1/records_pb.js";
import { createConflictService } from "../conflicts/handlers.js";
import { loadFileConfigSource } from "../config/file-source.js";
import type { ConfigSource } from "../config/source.js";
import { createRecordService } from "../records/handlers.js";
import { WritePipeline } from "../records/write-pipeline.js";
import { startEmbeddedPostgres, type RunningPostgres } from "../store/embedded-postgres.js";
import { RecordStore } from "../store/record-store.js";
import { HealthState } from "./health.js";
import { createLogger, type Logger } from "./logger.js";
import type { NodeConfig } from "./node-config.js";
import { ANONYMOUS, principalKey } from "./principal.js";
import { registerConfigRevision } from "./telemetry/gauges.js";
import { rpcTelemetry } from "./telemetry/rpc.js";
import { startGrpcServer, type GrpcTls } from "./transport/grpc-server.js";
import { startWebServer } from "./transport/web-server.js";
import type { RequestHook, ServedService } from "./transport/wrap.js";

export interface RunningNode {
  grpcPort: number;
  webPort: number | null;
  /** Plaintext health-only gRPC port (probes when TLS is on), null when disabled. */
  healthPort: number | null;
  databaseUrl: string;
  store: RecordStore;
  config: ConfigSource;
  log: Logger;
  /** Drains and stops everything; safe to call more than once. */
  stop(): Promise<void>;
}

/** The services every node hosts, by the name their health status uses. */
export const SERVED: readonly DescService[] = [RecordService, ConflictService];

/**
 * Health name that is SERVING while the process answers at all (liveness
 * probes): unlike "", it does not fail while the database is unreachable, so
 * a database outage does not make Kubernetes restart every node.
 */
export const LIVENESS = "liveness";

export async function startNode(cfg: NodeConfig, log: Logger = createLogger(cfg.logLevel, { node: cfg.nodeId })): Promise<RunningNode> {
  const config = await loadFileConfigSource(cfg.configFile, { watch: true });
  const health = new HealthState();
  let ready: { store: RecordStore; pipeline: WritePipeline } | null = null;

  // Calls that arrive while the database is still starting get UNAVAILABLE, a
  // status every gRPC client retries; health says NOT_SERVING meanwhile.
  const readyGate: RequestHook = async () => {
    if (!ready) throw new ConnectError("the node is starting; retry shortly", Code.Unavailable);
  };
  const devIdentity: RequestHook = async (ctx) => {
    const subject = ctx.requestHeader.get("x-deltamesh-subject");
    const tenant = ctx.requestHeader.get("x-deltamesh-tenant");
    ctx.values.set(principalKey, { ...ANONYMOUS, subject: subject || ANONYMOUS.subject, tenant: tenant || ANONYMOUS.tenant });
  };
  const hooks: RequestHook[] = [readyGate, ...(cfg.insecureDevAuth ? [devIdentity] : [])];
  if (cfg.insecureDevAuth) log.warn("INSECURE development auth: caller identity is taken from x-deltamesh-* headers unverified");

  // Handlers reach the store and pipeline only once the database is ready
  // (the ready gate refuses calls before that).
  const deps = {
    get store() {
      return ready!.store;
    },
    get pipeline() {
      return ready!.pipeline;
    },
    config,
  };
  const services: ServedService[] = [
    { service: RecordService, impl: createRecordService(deps) },
    { service: ConflictService, impl: createConflictService(deps) },
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
  try {
    let url = cfg.databaseUrl;
    if (!url) {
      log.info({ dataDir: path.resolve(cfg.dataDir, "postgres") }, "no database URL configured: starting the embedded PostgreSQL");
      embedded = await startEmbeddedPostgres({ dataDir: path.join(cfg.dataDir, "postgres") });
      url = embedded.url;
    }
    store = await RecordStore.open({ url });
    ready = { store, pipeline: new WritePipeline(store, () => config.current().schemas) };
    health.setServing("", true);
    for (const s of SERVED) health.setServing(s.typeName, true);
    log.info({ configRevision: config.current().revision }, "ready");
  } catch (e) {
    await Promise.allSettled([grpc.shutdown(0), web?.shutdown(0), probes?.shutdown(0), embedded?.stop(), config.close()]);
    throw e;
  }

  const unregisterRevision = registerConfigRevision(() => config.current().revision);
  let stopping: Promise<void> | null = null;
  const databaseUrl = cfg.databaseUrl ?? embedded!.url;
  return {
    grpcPort: grpc.port,
    webPort: web?.port ?? null,
    healthPort: probes?.port ?? null,
    databaseUrl,
    store,
    config,
    log,
    stop() {
      stopping ??= (async () => {
        log.info("shutting down: draining calls");
        unregisterRevision();
        await Promise.all([grpc.shutdown(cfg.shutdownGraceMs), web?.shutdown(cfg.shutdownGraceMs), probes?.shutdown(0)]);
        await ready?.pipeline.drain();
        await store.close();
        await embedded?.stop();
        await config.close();
        log.info("stopped");
      })();
      return stopping;
    },
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
