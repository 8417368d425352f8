// `deltamesh import` as a user runs it: a separate process against a real
// node, killed with SIGKILL halfway through 100,000 generated customer rows
// (malformed phones, missing required fields and keys, repeated keys), then
// run again. The database must hold each valid row exactly once and the
// report must list each bad row with its reason.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { scratchDir } from "../../support/env.js";
import { writeCustomerCsv, type ImportExpectation } from "../../support/import-data.js";
import { bearerToken, startTestNode, type TestNode } from "../../support/node.js";

const BIN = fileURLToPath(new URL("../../../bin/deltamesh.mjs", import.meta.url));
const TENANT = "importer";
const ROWS = 100_000;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the import; `killWhen` sees each progress line and may SIGKILL the process. */
async function runImport(node: TestNode, file: string, killWhen?: (settled: number) => boolean): Promise<Run> {
  const child = spawn(
    process.execPath,
    [BIN, "import", file, "--collection", "customers", "--key", "erp_id", "--server", node.grpcAddress, "--token", bearerToken({ tenant: TENANT }), "--progress-interval", "0.2"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
    const last = [...stderr.matchAll(/^([\d,]+) rows \(/gm)].pop();
    if (last && killWhen?.(Number(last[1]!.replace(/,/g, ""))) && child.exitCode === null) child.kill("SIGKILL");
  });
  const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
  return { code, signal, stdout, stderr };
}

function summaryCounts(stdout: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of stdout.matchAll(/([\d,]+) (created|updated|unchanged|already imported|rejected|rows before were done)/g)) {
    counts[m[2] === "rows before were done" ? "skipped" : m[2]!] = Number(m[1]!.replace(/,/g, ""));
  }
  return counts;
}

describe("deltamesh import", () => {
  let node: TestNode;
  let db: pg.Pool;
  let file: string;
  let expected: ImportExpectation;

  beforeAll(async () => {
    const dir = await scratchDir("import");
    file = path.join(dir, "customers.csv");
    [node, expected] = await Promise.all([startTestNode(), writeCustomerCsv(file, { rows: ROWS, defects: true })]);
    db = new pg.Pool({ connectionString: node.node.databaseUrl, max: 2 });
  });

  afterAll(async () => {
    await db?.end();
    await node?.stop();
  });

  it("survives a SIGKILL halfway: the re-run writes each valid row exactly once and reports each bad row", { timeout: 420_000 }, async () => {
    const killed = await runImport(node, file, (settled) => settled >= ROWS / 2);
    expect(killed.signal).toBe("SIGKILL");
    const { rows: partial } = await db.query<{ n: string }>("SELECT count(*) AS n FROM records WHERE tenant = $1", [TENANT]);
    expect(Number(partial[0]!.n)).toBeGreaterThan(0);
    expect(Number(partial[0]!.n)).toBeLessThan(expected.records.size);

    const rerun = await runImport(node, file);
    expect(rerun.code, rerun.stderr).toBe(2); // finished, with rejected rows
    // It resumed from the checkpoint instead of sending the first half again.
    const resumedAfter = Number(/resuming after line (\d+)/.exec(rerun.stderr)?.[1]);
    expect(resumedAfter).toBeGreaterThan(0);
    const counts = summaryCounts(rerun.stdout);
    expect(counts.skipped).toBeGreaterThan(0);
    expect(counts.created).toBeGreaterThan(0);

    // Every valid row exactly once: one record per key, holding the last row's values ...
    const { rows: records } = await db.query<{ fields: Record<string, unknown> }>(
      "SELECT fields FROM records WHERE tenant = $1 AND collection = 'customers'",
      [TENANT],
    );
    expect(records).toHaveLength(expected.records.size);
    const byKey = new Map(records.map((r) => [r.fields.erp_id as string, r.fields]));
    const mismatches = [...expected.records].filter(([key, want]) => JSON.stringify(byKey.get(key)) !== JSON.stringify(sortKeys(want)));
    expect(mismatches.slice(0, 3)).toEqual([]);
    // ... and one change per valid row: nothing was applied twice across the two runs.
    const { rows: changes } = await db.query<{ n: string; ids: string }>(
      "SELECT count(*) AS n, count(DISTINCT client_mutation_id) AS ids FROM changes WHERE tenant = $1",
      [TENANT],
    );
    expect(Number(changes[0]!.n)).toBe(expected.writes);
    expect(Number(changes[0]!.ids)).toBe(expected.writes);

    // The report lists each bad row once, in line order, with its reason.
    const report = (await readFile(`${file}.rejected.jsonl`, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { line: number; reason: string; message: string; violations: { field: string }[] });
    expect(report.map((r) => [r.line, r.reason])).toEqual([...expected.rejected].sort(([a], [b]) => a - b));
    const phone = report.find((r) => r.reason === "PHONE_INVALID")!;
    expect(phone.violations.map((v) => v.field)).toEqual(["phone"]);
    expect(phone.message).toMatch(/not a valid phone number/);
  });
});

/** Stored fields come back from jsonb with sorted keys; compare in the same order. */
function sortKeys(o: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a.length - b.length) || (a < b ? -1 : a > b ? 1 : 0)));
}
