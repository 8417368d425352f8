// A deltamesh server in its own process (`deltamesh serve`), for tests that
// kill nodes or read a server's own memory and CPU, and for benchmarks.
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

export interface ServerProcess {
  grpcAddress: string;
  process: ChildProcess;
  pid: number;
  /** Resident memory of the server process, bytes (from /proc). */
  rssBytes(): Promise<number>;
  /** CPU time the server process has used (user + system), ms (from /proc). */
  cpuMs(): Promise<number>;
  /** SIGKILL, wait for exit. */
  kill(): Promise<void>;
  /** SIGTERM, wait for exit. */
  stop(): Promise<void>;
}

export interface ServerProcessOptions {
  databaseUrl: string;
  args?: string[];
  env?: Record<string, string>;
  /** Server output (stderr lines). */
  onLog?: (line: string) => void;
}

const CLK_TCK = 100;

export async function startServerProcess(opts: ServerProcessOptions): Promise<ServerProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(REPO, "services/cli/main.ts"), "serve", "--database-url", opts.databaseUrl, "--port", "0", "--no-web", ...(opts.args ?? [])],
    { cwd: REPO, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DELTAMESH_LOG_LEVEL: "warn", ...opts.env } },
  );
  child.stderr!.on("data", (d: Buffer) => opts.onLog?.(d.toString().trimEnd()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /gRPC on :(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code} before listening`)));
  });
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    await exited;
  };
  const stat = () => readFile(`/proc/${child.pid}/stat`, "utf8");
  return {
    grpcAddress: `127.0.0.1:${port}`,
    process: child,
    pid: child.pid!,
    async rssBytes() {
      const status = await readFile(`/proc/${child.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
    },
    async cpuMs() {
      // Fields after the command name: utime is the 14th, stime the 15th field overall.
      const text = await stat();
      const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
    },
    kill: () => signal("SIGKILL"),
    stop: () => signal("SIGTERM"),
  };
}
