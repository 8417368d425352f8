// What the integration global setup started (test/support/global-setup.ts),
// as tests use it.
import { randomBytes } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import path from "node:path";
import { inject } from "vitest";
import { createDatabase } from "./create-database.js";

/** A new, empty database on the shared test PostgreSQL; migrations run when a store opens it. */
export async function testDatabaseUrl(): Promise<string> {
  return createDatabase(inject("postgresAdminUrl"), `t_${randomBytes(6).toString("hex")}`);
}

export function testEtcdEndpoint(): string {
  return inject("etcdEndpoint");
}

/** A unique prefix for etcd keys, so test files sharing the etcd never collide. */
export function testEtcdPrefix(label = "t"): string {
  return `/deltamesh-test/${label}-${randomBytes(4).toString("hex")}/`;
}

/** A fresh scratch folder under this run's state folder. */
export async function scratchDir(label = "tmp"): Promise<string> {
  return mkdtemp(path.join(inject("stateDir"), `${label}-`));
}
