// A real etcd server process on free loopback ports, for tests and local
// clusters. etcd has no npm package: the binary comes from Debian's
// `etcd-server` (scripts/test.sh installs it when missing).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { freeLoopbackPort } from "../../services/store/embedded-postgres.js";

export interface EtcdOptions {
  dataDir: string;
  name?: string;
  /** Fixed client port (restart on the same address); 0 or absent picks a free one. */
  clientPort?: number;
  peerPort?: number;
}

export interface RunningEtcd {
  endpoint: string;
  clientPort: number;
  peerPort: number;
  process: ChildProcess;
  /** SIGTERM, wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL, wait for exit. */
  kill(): Promise<void>;
}

const CANDIDATES = [process.env.ETCD_BIN, "/usr/bin/etcd", "/usr/local/bin/etcd"].filter((p): p is string => !!p);

export function etcdBinary(): string {
  const found = CANDIDATES.find((p) => existsSync(p));
  if (!found) {
    throw new Error("etcd not found: install Debian's etcd-server (`apt-get install -y etcd-server`) or set ETCD_BIN");
  }
  return found;
}

export async function startEtcd(opts: EtcdOptions): Promise<RunningEtcd> {
  const name = opts.name ?? "test";
  const clientPort = opts.clientPort || (await freeLoopbackPort());
  const peerPort = opts.peerPort || (await freeLoopbackPort());
  await mkdir(opts.dataDir, { recursive: true });
  const client = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    etcdBinary(),
    [
      `--name=${name}`,
      `--data-dir=${opts.dataDir}`,
      `--listen-client-urls=${client}`,
      `--advertise-client-urls=${client}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=${name}=${peer}`,
      "--log-level=error",
      "--logger=zap",
      // Tests restart etcd and kill nodes: keep elections and lease checks snappy.
      "--heartbeat-interval=50",
      "--election-timeout=500",
    ],
    { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch === "arm64" ? "arm64" : "" } },
  );
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`etcd exited with ${child.exitCode}: ${stderr}`);
    try {
      const res = await fetch(`${client}/health`);
      if (res.ok && ((await res.json()) as { health?: string }).health === "true") break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`etcd did not become healthy on ${client}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  return {
    endpoint: client,
    clientPort,
    peerPort,
    process: child,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
  };
}

export async function removeDir(dir: string): Promise<void> {
  await rm(path.resolve(dir), { recursive: true, force: true });
}
