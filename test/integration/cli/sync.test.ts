// `deltamesh export`, `tail` and `verify` as an integrator runs them: separate
// processes against a real node, with real tokens. Export applies masks and
// needs the export right; tail prints live deltas and resumes from its saved
// cursor after being stopped; verify finds the records that differ.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { scratchDir } from "../../support/env.js";
import { bearerToken, startTestNode, type Identity, type TestNode } from "../../support/node.js";
import { byId, enm, str } from "../../support/rpc.js";

const BIN = fileURLToPath(new URL("../../../bin/deltamesh.mjs", import.meta.url));
const FINANCE: Identity = { subject: "f-1", roles: ["finance"], attributes: { device_class: "desktop" } };
const SALES: Identity = { subject: "s-1", roles: ["sales"], attributes: { regions: ["east_china"], device_class: "mobile" } };

let node: TestNode;
let dir: string;
const dept = `cli-${process.pid}`;
const ids = [0, 1, 2].map((i) => `cli-sync-${process.pid}-${i}`);

beforeAll(async () => {
  node = await startTestNode();
  dir = await scratchDir("cli-sync");
  await node.grpcJs(RecordService).writeRecords({
    mutations: ids.map((id, i) => ({
      ref: byId(id),
      set: {
        name: str(`Customer ${i}`),
        region: enm("east_china"),
        department: str(dept),
        phone: str(`+86138123456${i}0`),
        id_number: str(`11010519880707${String(1000 + i)}`),
        notes: str(`note, "quoted" ${i}`),
      },
      source: "crm-desktop",
    })),
  });
});
afterAll(async () => {
  await node?.stop();
});

function cli(args: string[], id: Identity = {}): ChildProcess {
  return spawn(process.execPath, [BIN, ...args, "--server", node.grpcAddress, "--token", bearerToken(id)], { stdio: ["ignore", "pipe", "pipe"] });
}

async function run(args: string[], id: Identity = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = cli(args, id);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

const edit = (id: string, set: Record<string, ReturnType<typeof str>>) =>
  node.grpcJs(RecordService).writeRecords({ mutations: [{ ref: byId(id), set, source: "crm-desktop" }] });

describe("deltamesh export", () => {
  it("writes what the caller may read, masked, in JSON Lines and CSV", async () => {
    const jsonl = path.join(dir, "finance.jsonl");
    // Finance may not read the department: it exports every customer (this node's database holds only the three).
    const r = await run(["export", "customers", "--out", jsonl], FINANCE);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`exported 3 customers records to ${jsonl}; masked for you: id_number`);
    const rows = (await readFile(jsonl, "utf8")).trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows.map((x) => x.id)).toEqual(ids);
    expect(rows[0]).toMatchObject({ version: 1, name: "Customer 0", region: "east_china", _masked: ["id_number"] });
    expect(rows[0]!.id_number).toMatch(/^110105\*{8}\d{4}$/);
    expect(rows[0]).not.toHaveProperty("phone"); // finance may not read phones

    const csv = path.join(dir, "admin.csv");
    expect((await run(["export", "customers", "--where", `department=${dept}`, "--out", csv])).code).toBe(0);
    const lines = (await readFile(csv, "utf8")).trim().split("\n");
    expect(lines[0]!.startsWith("id,version,name,phone,")).toBe(true);
    expect(lines).toHaveLength(4);
    expect(lines[1]).toContain(`"note, ""quoted"" 0"`);
  });

  it("without the export right: PERMISSION_DENIED, exit 1, and no file", async () => {
    const out = path.join(dir, "sales.jsonl");
    const r = await run(["export", "customers", "--out", out], SALES);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/export/i);
    await expect(readFile(out, "utf8")).rejects.toThrow(/ENOENT/);
    await expect(readFile(`${out}.partial`, "utf8")).rejects.toThrow(/ENOENT/);
  });
});

describe("deltamesh verify", () => {
  it("confirms a fresh export, then lists the records changed, removed or added since", async () => {
    const file = path.join(dir, "copy.jsonl");
    expect((await run(["export", "customers", "--where", `department=${dept}`, "--out", file])).code).toBe(0);
    const same = await run(["verify", "customers", "--where", `department=${dept}`, "--file", file]);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toContain("3 records match the server");

    await edit(ids[0]!, { notes: str("changed on the server") });
    const text = await readFile(file, "utf8");
    const lines = text.trim().split("\n");
    // The local copy lost one record and gained one the server never had.
    await writeFile(file, [lines[0], lines[2], JSON.stringify({ id: "only-here", version: 4 })].join("\n") + "\n");
    const diff = await run(["verify", "customers", "--where", `department=${dept}`, "--file", file]);
    expect(diff.code).toBe(3);
    expect(diff.stdout).toContain(`${ids[0]}: local version 1, server version 2`);
    expect(diff.stdout).toContain(`${ids[1]}: missing locally (server has version 1)`);
    expect(diff.stdout).toContain("only-here: not on the server (local version 4)");
    expect(diff.stdout).toContain("3 records differ");
  });
});

describe("deltamesh tail", () => {
  it("prints live deltas with masks marked, saves its cursor, and resumes after a stop without losing a change", async () => {
    const cursorFile = path.join(dir, "tail.cursor");
    const first = cli(["tail", "customers", "--where", `department=${dept}`, "--cursor-file", cursorFile], SALES);
    let out = "";
    first.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    // Live from now: wait until the stream is open (the first heartbeat saves a cursor).
    await expect.poll(async () => (await readFile(cursorFile, "utf8").catch(() => "")).length, { timeout: 15_000 }).toBeGreaterThan(0);
    await edit(ids[1]!, { notes: str("seen live"), phone: str("+8613900001111") });
    await expect.poll(() => out, { timeout: 10_000 }).toContain(`customers/${ids[1]}@2`);
    expect(out).toMatch(new RegExp(`update customers/${ids[1]}@2 notes="seen live" phone="\\+86 139\\*\\*\\*\\*1111" \\(masked\\)`));
    expect(out).not.toContain("+8613900001111");
    first.kill("SIGINT");
    await once(first, "exit");

    // Changes made while nobody tails are printed by the next run, first.
    await edit(ids[2]!, { notes: str("while stopped") });
    const second = cli(["tail", "customers", "--where", `department=${dept}`, "--cursor-file", cursorFile], SALES);
    let again = "";
    second.stdout!.on("data", (d: Buffer) => (again += d.toString()));
    await expect.poll(() => again, { timeout: 15_000 }).toContain(`customers/${ids[2]}@2`);
    second.kill("SIGINT");
    await once(second, "exit");
    expect(again).not.toContain(`customers/${ids[1]}@2`); // not repeated
    expect(again.trim().split("\n")[0]).toMatch(new RegExp(`update customers/${ids[2]}@2 notes="while stopped"`));
  });
});
