// Settings of one deltamesh node: where it listens, which database and config
// it uses. Read from command-line flags, then DELTAMESH_* environment
// variables, then defaults.
import { DEFAULT_CONFIG_PATH } from "../config/file-source.js";
import type { EtcdSettings } from "../cluster/etcd-client.js";
import { resolveAuthSettings, type AuthSettings, type AuthSettingsInput } from "./auth/settings.js";

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** CA bundle; with requireClientCert, clients must present a certificate it signed (mTLS). */
  caFile?: string;
  requireClientCert: boolean;
}

export interface NodeConfig {
  nodeId: string;
  host: string;
  /** Native gRPC (grpc-js) port; 0 picks a free one. */
  grpcPort: number;
  /** Connect + gRPC-Web (HTTP/1.1) port; 0 picks a free one, -1 disables it. */
  webPort: number;
  /** PostgreSQL URL; absent: start the embedded PostgreSQL in `dataDir`. */
  databaseUrl?: string;
  dataDir: string;
  /** Schema and policy file (YAML or JSON). */
  configFile: string;
  maxMessageBytes: number;
  tls?: TlsFiles;
  /** How long SIGTERM waits for in-flight calls before closing them. */
  shutdownGraceMs: number;
  /** Accept unsigned dev tokens and x-deltamesh-* identity headers without verification. Development only. */
  insecureDevAuth: boolean;
  /** Bearer-token verification, mask key, audit batching (./auth/settings.ts; DELTAMESH_JWT_*). */
  auth: AuthSettings;
  logLevel: string;
  /** etcd coordination (membership, leader election, config store); absent: a standalone node. */
  etcd?: EtcdSettings;
  /** host:port other nodes and clients reach this node's native gRPC on (default host:grpcPort). */
  advertiseAddress?: string;
  /** Prometheus scrape endpoint (`/metrics`) port; 0 picks a free one, -1 (default) disables it. */
  metricsPort: number;
  /** Plaintext gRPC listener serving only grpc.health.v1 (for kubelet probes when TLS is on); -1 (default) disables it. */
  healthPort: number;
  /** OTLP collector base URL (standard OTEL_EXPORTER_OTLP_ENDPOINT); absent: no OTLP export. */
  otlpEndpoint?: string;
  /**
   * MiB of stored JSON of the records this node keeps after writing them, so
   * the next edits of those records skip reading them (services/store/record-cache.ts;
   * the heap holds about twice that); 0 turns it off.
   */
  recordCacheMb: number;
}

export type NodeConfigInput = Partial<Omit<NodeConfig, "etcd" | "auth">> & { etcd?: Partial<EtcdSettings>; auth?: AuthSettingsInput };

/** etcd settings from input and DELTAMESH_ETCD_* variables; undefined when no endpoint is given. */
function etcdSettings(input: Partial<EtcdSettings> | undefined): EtcdSettings | undefined {
  const endpoints = input?.endpoints ?? (env("ETCD_ENDPOINTS") ?? "").split(",").map((e) => e.trim()).filter(Boolean);
  if (endpoints.length === 0) return undefined;
  const prefix = (input?.prefix ?? env("ETCD_PREFIX") ?? "/deltamesh/").trim() || "/deltamesh/";
  const leaseTtlSeconds = intFrom(input?.leaseTtlSeconds ?? env("ETCD_LEASE_TTL"), "etcd lease TTL") ?? 10;
  if (leaseTtlSeconds < 2) throw new Error(`the etcd lease TTL must be at least 2 seconds, got ${leaseTtlSeconds}`);
  return { endpoints, prefix: prefix.endsWith("/") ? prefix : `${prefix}/`, leaseTtlSeconds };
}

const env = (name: string): string | undefined => {
  const v = process.env[`DELTAMESH_${name}`];
  return v === undefined || v === "" ? undefined : v;
};

function intFrom(value: string | number | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer, got ${JSON.stringify(value)}`);
  return n;
}

function recordCacheMb(value: string | number | undefined): number {
  const mb = intFrom(value, "record cache size (MiB)") ?? 32;
  if (mb < 0) throw new Error(`the record cache size must be 0 (off) or more MiB, got ${mb}`);
  return mb;
}

export function resolveNodeConfig(input: NodeConfigInput = {}): NodeConfig {
  const certFile = input.tls?.certFile ?? env("TLS_CERT");
  const keyFile = input.tls?.keyFile ?? env("TLS_KEY");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new Error("TLS needs both a certificate and a key (DELTAMESH_TLS_CERT and DELTAMESH_TLS_KEY)");
  }
  const caFile = input.tls?.caFile ?? env("TLS_CA");
  return {
    nodeId: input.nodeId ?? env("NODE_ID") ?? `node-${process.pid}`,
    host: input.host ?? env("HOST") ?? "127.0.0.1",
    grpcPort: intFrom(input.grpcPort ?? env("GRPC_PORT"), "grpc port") ?? 50051,
    webPort: intFrom(input.webPort ?? env("WEB_PORT"), "web port") ?? 8080,
    databaseUrl: input.databaseUrl ?? env("DATABASE_URL"),
    dataDir: input.dataDir ?? env("DATA_DIR") ?? ".deltamesh",
    configFile: input.configFile ?? env("CONFIG") ?? DEFAULT_CONFIG_PATH,
    maxMessageBytes: intFrom(input.maxMessageBytes ?? env("MAX_MESSAGE_BYTES"), "max message bytes") ?? 4 * 1024 * 1024,
    tls:
      certFile && keyFile
        ? { certFile, keyFile, caFile, requireClientCert: input.tls?.requireClientCert ?? env("TLS_REQUIRE_CLIENT_CERT") === "true" }
        : undefined,
    shutdownGraceMs: intFrom(input.shutdownGraceMs ?? env("SHUTDOWN_GRACE_MS"), "shutdown grace") ?? 10_000,
    insecureDevAuth: input.insecureDevAuth ?? env("INSECURE_DEV_AUTH") === "true",
    logLevel: input.logLevel ?? env("LOG_LEVEL") ?? "info",
    etcd: etcdSettings(input.etcd),
    advertiseAddress: input.advertiseAddress ?? env("ADVERTISE_ADDRESS"),
    auth: resolveAuthSettings(input.auth),
    metricsPort: intFrom(input.metricsPort ?? env("METRICS_PORT"), "metrics port") ?? -1,
    healthPort: intFrom(input.healthPort ?? env("HEALTH_PORT"), "health port") ?? -1,
    recordCacheMb: recordCacheMb(input.recordCacheMb ?? env("RECORD_CACHE_MB")),
    // The OpenTelemetry variable, not a DELTAMESH_ one: collectors' docs and
    // operators already use it. The SDK reads the other OTEL_* variables itself.
    otlpEndpoint: input.otlpEndpoint ?? (process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || undefined),
  };
}
