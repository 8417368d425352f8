import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Checkpoint, readCheckpoint } from "../../../services/cli/import/checkpoint.js";
import { RejectReport } from "../../../services/cli/import/report.js";

const scratch = () => mkdtempSync(path.join(tmpdir(), "deltamesh-import-"));

describe("import checkpoint", () => {
  it("resumes from the last settled mark with the versions written before it", () => {
    const file = path.join(scratch(), "state");
    const cp = Checkpoint.open(file, "sig-1", null);
    cp.written([{ orderKey: "A", version: 1n }, { orderKey: 'B "quoted"', version: 3n }]);
    cp.settled(40);
    cp.written([{ orderKey: "A", version: 2n }]);
    cp.settled(30); // never backwards
    cp.written([{ orderKey: "C", version: 9n }]); // no mark after it: not covered
    cp.close();
    appendFileSync(file, "v 12 \"tor"); // a line torn by a crash
    expect(readCheckpoint(file, "sig-1")).toEqual({
      settledThrough: 40,
      versions: new Map([["A", 1n], ['B "quoted"', 3n]]),
    });
  });

  it("ignores another import's checkpoint and a missing or broken file", () => {
    const dir = scratch();
    const file = path.join(dir, "state");
    Checkpoint.open(file, "sig-1", null).settled(5);
    expect(readCheckpoint(file, "sig-2")).toBeNull();
    expect(readCheckpoint(path.join(dir, "none"), "sig-1")).toBeNull();
    writeFileSync(file, "garbage\n");
    expect(readCheckpoint(file, "sig-1")).toBeNull();
  });

  it("continues the same file when resuming, and removes it once the import is done", () => {
    const file = path.join(scratch(), "state");
    Checkpoint.open(file, "s", null).settled(10);
    const resumed = Checkpoint.open(file, "s", readCheckpoint(file, "s"));
    resumed.settled(8);
    resumed.settled(20);
    expect(readCheckpoint(file, "s")?.settledThrough).toBe(20);
    resumed.remove();
    expect(readCheckpoint(file, "s")).toBeNull();
  });
});

describe("rejected-rows report", () => {
  const entry = (line: number) => ({ line, key: `K${line}`, code: "INVALID_ARGUMENT", reason: "PHONE_INVALID", message: "m", violations: [] });

  it("keeps the entries of skipped rows when resuming, and sorts by line at the end", () => {
    const file = path.join(scratch(), "report.jsonl");
    const first = RejectReport.open(file, null);
    first.add([entry(9), entry(3), entry(20)]);
    first.close(false);
    const resumed = RejectReport.open(file, 10);
    expect(resumed.rejected).toBe(2);
    resumed.add([entry(15), entry(12)]);
    resumed.close(true);
    expect(readFileSync(file, "utf8").trim().split("\n").map((l) => (JSON.parse(l) as { line: number }).line)).toEqual([3, 9, 12, 15]);
  });

  it("leaves no file when nothing was rejected", () => {
    const file = path.join(scratch(), "report.jsonl");
    writeFileSync(file, JSON.stringify(entry(1)) + "\n"); // an earlier run's report
    RejectReport.open(file, null).close(true);
    expect(() => readFileSync(file)).toThrow();
  });
});
