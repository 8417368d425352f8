// The `deltamesh` command: run a node (serve, dev), migrate a database, and
// get/put/list records for a person trying it out.
import { existsSync } from "node:fs";
import { copyFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { Command, InvalidArgumentError } from "commander";
import { DEFAULT_CONFIG_PATH } from "../config/file-source.js";
import { createLogger } from "../platform/logger.js";
import { resolveNodeConfig, type NodeConfig, type NodeConfigInput } from "../platform/node-config.js";
import { startNode } from "../platform/server.js";
import { startTelemetry, type Telemetry } from "../platform/telemetry/sdk.js";
import { migrate } from "../store/migrate.js";
import pg from "pg";
import { addClusterCommands } from "./cluster-commands.js";
import { connectRecords, parseAssignments, printRecord, refFor } from "./record-commands.js";
import { importCommand } from "./import/command.js";
import { exportCommand, tailCommand, verifyCommand } from "./sync/commands.js";

const program = new Command()
  .name("deltamesh")
  .description("Sync backbone for customer data: versioned records, conflict handling, change streams")
  .showHelpAfterError();

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("expected a port number 0-65535");
  return n;
}

interface ServeFlags {
  host?: string;
  port?: number;
  webPort?: number;
  noWeb?: boolean;
  databaseUrl?: string;
  dataDir?: string;
  config?: string;
  nodeId?: string;
  etcdEndpoints?: string;
  etcdPrefix?: string;
  etcdLeaseTtl?: number;
  advertiseAddress?: string;
  metricsPort?: number;
  healthPort?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  requireClientCert?: boolean;
  insecureDevAuth?: boolean;
  jwtIssuer?: string;
  jwtAudience?: string;
  jwtJwksFile?: string;
}

function toNodeInput(f: ServeFlags, defaults: NodeConfigInput = {}): NodeConfigInput {
  const input: NodeConfigInput = { ...defaults };
  if (f.host !== undefined) input.host = f.host;
  if (f.port !== undefined) input.grpcPort = f.port;
  if (f.webPort !== undefined) input.webPort = f.webPort;
  if (f.noWeb) input.webPort = -1;
  if (f.databaseUrl !== undefined) input.databaseUrl = f.databaseUrl;
  if (f.dataDir !== undefined) input.dataDir = f.dataDir;
  if (f.config !== undefined) input.configFile = f.config;
  if (f.nodeId !== undefined) input.nodeId = f.nodeId;
  if (f.metricsPort !== undefined) input.metricsPort = f.metricsPort;
  if (f.healthPort !== undefined) input.healthPort = f.healthPort;
  if (f.insecureDevAuth !== undefined) input.insecureDevAuth = f.insecureDevAuth;
  if (f.etcdEndpoints !== undefined || f.etcdPrefix !== undefined || f.etcdLeaseTtl !== undefined) {
    input.etcd = {
      endpoints: f.etcdEndpoints?.split(",").map((e) => e.trim()).filter(Boolean),
      prefix: f.etcdPrefix,
      leaseTtlSeconds: f.etcdLeaseTtl,
    };
  }
  if (f.advertiseAddress !== undefined) input.advertiseAddress = f.advertiseAddress;
  if (f.jwtIssuer || f.jwtAudience || f.jwtJwksFile) {
    input.auth = {
      jwt: {
        ...(f.jwtIssuer ? { issuer: f.jwtIssuer } : {}),
        ...(f.jwtAudience ? { audience: f.jwtAudience.split(",").map((a) => a.trim()) } : {}),
        ...(f.jwtJwksFile ? { jwksFile: f.jwtJwksFile } : {}),
      },
    };
  }
  if (f.tlsCert && f.tlsKey) {
    input.tls = { certFile: f.tlsCert, keyFile: f.tlsKey, caFile: f.tlsCa, requireClientCert: f.requireClientCert ?? false };
  }
  return input;
}

/** Telemetry only when something consumes it: otherwise recording stays a no-op. */
async function maybeStartTelemetry(cfg: NodeConfig, log: ReturnType<typeof createLogger>): Promise<Telemetry | null> {
  if (cfg.metricsPort < 0 && cfg.otlpEndpoint === undefined) return null;
  return startTelemetry({ instanceId: cfg.nodeId, metricsPort: cfg.metricsPort, metricsHost: cfg.host, otlp: cfg.otlpEndpoint !== undefined, log });
}

async function runUntilSignalled(input: NodeConfigInput, banner: (grpc: number, web: number | null, db: string) => string): Promise<void> {
  const cfg = resolveNodeConfig(input);
  const log = createLogger(cfg.logLevel, { node: cfg.nodeId });
  const telemetry = await maybeStartTelemetry(cfg, log);
  const node = await startNode(cfg, log).catch(async (e: unknown) => {
    await telemetry?.shutdown();
    throw e;
  });
  process.stdout.write(banner(node.grpcPort, node.webPort, node.databaseUrl) + "\n");
  if (telemetry?.metricsPort != null) process.stdout.write(`metrics on :${telemetry.metricsPort}/metrics\n`);
  if (node.healthPort !== null) process.stdout.write(`health (probes) on :${node.healthPort}\n`);
  const shutdown = (signal: string) => {
    node.log.info({ signal }, "signal received");
    // Telemetry last: it flushes the spans of the drain itself.
    node.stop().then(() => telemetry?.shutdown()).then(
      () => process.exit(0),
      (e: unknown) => {
        node.log.error({ err: e }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => shutdown("SIGTERM"));
  process.once("SIGINT", () => shutdown("SIGINT"));
}

async function devConfigCopy(dataDir: string): Promise<string> {
  const file = path.resolve(dataDir, "config.yaml");
  if (!existsSync(file)) {
    await mkdir(path.dirname(file), { recursive: true });
    await copyFile(DEFAULT_CONFIG_PATH, file);
  }
  return file;
}

function serveOptions(cmd: Command): Command {
  return cmd
    .option("--host <host>", "address to listen on")
    .option("--port <n>", "native gRPC port (0: any free port)", port)
    .option("--web-port <n>", "Connect/gRPC-Web HTTP/1.1 port (0: any free port)", port)
    .option("--no-web", "do not serve Connect/gRPC-Web")
    .option("--database-url <url>", "PostgreSQL URL (default: embedded PostgreSQL in --data-dir)")
    .option("--data-dir <dir>", "folder for the embedded PostgreSQL")
    .option("--config <file>", "schema/policy file (YAML or JSON)")
    .option("--node-id <id>", "this node's name in the cluster")
    .option("--etcd-endpoints <urls>", "etcd client URLs, comma-separated (cluster mode; or DELTAMESH_ETCD_ENDPOINTS)")
    .option("--etcd-prefix <prefix>", "etcd key prefix of this deployment (default /deltamesh/)")
    .option("--etcd-lease-ttl <seconds>", "session lease TTL: how fast a dead node is replaced (default 10)", (v) => Number(v))
    .option("--advertise-address <host:port>", "address other nodes and clients reach this node's gRPC on")

    .option("--metrics-port <n>", "Prometheus /metrics port (0: any free port; default off)", port)
    .option("--health-port <n>", "plaintext gRPC health-only port for probes when TLS is on (default off)", port);
}

serveOptions(program.command("serve").description("run a node (settings from flags or DELTAMESH_* variables)"))
  .option("--tls-cert <file>", "server certificate (PEM)")
  .option("--tls-key <file>", "server private key (PEM)")
  .option("--tls-ca <file>", "CA bundle for client certificates")
  .option("--require-client-cert", "require client certificates (mTLS)")
  .option("--jwt-issuer <iss>", "accepted bearer-token issuer (or DELTAMESH_JWT_ISSUER)")
  .option("--jwt-audience <aud,...>", "accepted bearer-token audiences (or DELTAMESH_JWT_AUDIENCE)")
  .option("--jwt-jwks-file <file>", "JWK set verifying bearer tokens, re-read when it changes (or DELTAMESH_JWT_JWKS_FILE)")
  .option("--insecure-dev-auth", "trust unsigned tokens and x-deltamesh-* identity headers; calls without credentials act as an admin (development only)")
  .action(async (flags: ServeFlags & { web?: boolean }) => {
    await runUntilSignalled(toNodeInput({ ...flags, noWeb: flags.web === false }), (g, w) =>
      `deltamesh serving gRPC on :${g}${w === null ? "" : `, Connect/gRPC-Web on :${w}`}`,
    );
  });

serveOptions(program.command("dev").description("run a development node on the embedded PostgreSQL, with dev auth"))
  .action(async (flags: ServeFlags & { web?: boolean }) => {
    const input = toNodeInput({ ...flags, noWeb: flags.web === false }, { insecureDevAuth: true, dataDir: ".deltamesh" });
    // A dev node edits its own copy of the example config (policy writes land
    // there), never the shipped file.
    input.configFile ??= await devConfigCopy(input.dataDir ?? ".deltamesh");
    await runUntilSignalled(input, (g, w, db) =>
      [
        `deltamesh dev node ready`,
        `  gRPC:           127.0.0.1:${g}`,
        ...(w === null ? [] : [`  Connect/gRPC-Web: http://127.0.0.1:${w}`]),
        `  database:       ${db.replace(/:[^:@/]*@/, ":***@")}`,
        `  config:         ${input.configFile} (hot-reloaded on save)`,
        `  auth:           INSECURE development mode: calls without credentials act as "dev" with roles [${resolveNodeConfig(input).auth.devRoles.join(", ")}]`,
        `  try:            npx deltamesh put customers name="Li Lei" phone="138 0013 8000" region=east_china --server 127.0.0.1:${g}`,
      ].join("\n"),
    );
  });

program
  .command("migrate")
  .description("apply pending database migrations and exit")
  .option("--database-url <url>", "PostgreSQL URL (or DELTAMESH_DATABASE_URL)")
  .action(async (flags: { databaseUrl?: string }) => {
    const url = flags.databaseUrl ?? process.env.DELTAMESH_DATABASE_URL;
    if (!url) throw new InvalidArgumentError("--database-url or DELTAMESH_DATABASE_URL is required");
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      const applied = await migrate(pool);
      process.stdout.write(applied.length ? `applied migrations ${applied.join(", ")}\n` : "database is up to date\n");
    } finally {
      await pool.end();
    }
  });

function clientOptions(cmd: Command): Command {
  return cmd
    .option("--server <host:port>", "node's gRPC address", process.env.DELTAMESH_SERVER ?? "127.0.0.1:50051")
    .option("--config <file>", "schema file, to type the values you give")
    .option("--token <jwt>", "bearer token (or DELTAMESH_TOKEN)", process.env.DELTAMESH_TOKEN)
    .option("--tenant <tenant>", "tenant (dev auth)")
    .option("--as <subject>", "caller subject (dev auth)")
    .option("--roles <role,...>", "caller roles (dev auth; default: the dev node's, admin)")
    .option("--attributes <attrs>", 'caller attributes (dev auth), e.g. "regions=[east_china]; device_class=mobile"');
}

interface ClientFlags {
  server: string;
  config?: string;
  token?: string;
  tenant?: string;
  as?: string;
  roles?: string;
  attributes?: string;
}

clientOptions(program.command("get <collection> [id]").description("print one record, by id or --key field=value"))
  .option("--key <field=value>", "identity key, e.g. phone=13800138000")
  .action(async (collection: string, id: string | undefined, flags: ClientFlags & { key?: string }) => {
    const { client, schemas } = await connectRecords(flags);
    const res = await client.getRecord({ ref: refFor(schemas, collection, id, flags.key) });
    printRecord(schemas, res.record!);
  });

clientOptions(program.command("put <collection> <assignments...>").description("create or update a record: field=value ..."))
  .option("--id <id>", "record id (default: a new id, or the record holding --key)")
  .option("--key <field=value>", "upsert by identity key")
  .option("--expected-version <n>", "apply only at this version", (v) => Number(v))
  .option("--source <source>", "source system", "cli")
  .action(async (collection: string, assignments: string[], flags: ClientFlags & { id?: string; key?: string; expectedVersion?: number; source: string }) => {
    const { client, schemas } = await connectRecords(flags);
    const schema = schemas.collections.get(collection);
    const ref = flags.id || flags.key ? refFor(schemas, collection, flags.id, flags.key) : refFor(schemas, collection, crypto.randomUUID());
    const res = await client.writeRecords({
      mutations: [
        {
          ref,
          set: schema ? parseAssignments(schema, assignments) : {},
          expectedVersion: flags.expectedVersion === undefined ? undefined : BigInt(flags.expectedVersion),
          source: flags.source,
          device: "cli",
        },
      ],
    });
    const r = res.results[0]!;
    process.stdout.write(`${r.created ? "created" : "updated"} ${r.collection}/${r.id} at version ${r.version}\n`);
  });

clientOptions(program.command("list <collection>").description("list records, optionally filtered: --where field=value"))
  .option("--where <field=value...>", "equality filters")
  .option("--limit <n>", "page size", (v) => Number(v), 20)
  .action(async (collection: string, flags: ClientFlags & { where?: string[]; limit: number }) => {
    const { client, schemas } = await connectRecords(flags);
    const schema = schemas.collections.get(collection);
    const where = schema ? parseAssignments(schema, flags.where ?? []) : {};
    const res = await client.listRecords({
      collection,
      pageSize: flags.limit,
      filters: Object.entries(where).map(([field, value]) => ({ field, value })),
    });
    for (const r of res.records) printRecord(schemas, r);
    if (res.nextPageToken) process.stdout.write("(more records: raise --limit)\n");
  });

addClusterCommands(program, process.env.DELTAMESH_SERVER ?? "127.0.0.1:50051");
importCommand(clientOptions(program.command("import <file>")));
exportCommand(clientOptions(program.command("export <collection>")));
tailCommand(clientOptions(program.command("tail <collection>")));
verifyCommand(clientOptions(program.command("verify <collection>")));

program.parseAsync(process.argv).catch((e: unknown) => {
  const err = e as { code?: unknown; rawMessage?: string; message?: string };
  process.stderr.write(`deltamesh: ${err.rawMessage ?? err.message ?? String(e)}\n`);
  process.exit(1);
});
