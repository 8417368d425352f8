// The pure parts of `deltamesh export`, `tail` and `verify`: CSV quoting,
// event lines, and the per-bucket differences verify reports.
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ChangeEventSchema, ScopeReason } from "../../../gen/deltamesh/v1/changes_pb.js";
import { bucketOf } from "../../../services/changes/digest.js";
import { csvCell } from "../../../services/cli/sync/export-format.js";
import { ansi, formatEvent } from "../../../services/cli/sync/tail-format.js";
import { bucketDiffs, describeDiff } from "../../../services/cli/sync/verify-diff.js";

const s = (value: string) => ({ kind: { case: "stringValue" as const, value } });

describe("csvCell", () => {
  it("quotes only what needs it, doubling quotes", () => {
    expect(csvCell("plain")).toBe("plain");
    expect(csvCell('a,"b"')).toBe('"a,""b"""');
    expect(csvCell("two\nlines")).toBe('"two\nlines"');
  });
});

describe("formatEvent", () => {
  it("prints changed fields in name order, marks masked ones, lists cleared ones, skips heartbeats", () => {
    const e = create(ChangeEventSchema, {
      cursor: "c",
      kind: { case: "upsert", value: { collection: "customers", id: "c-1", version: 3n, set: { phone: s("+86 138****5678"), notes: s("hi") }, maskedFields: ["phone"], cleared: ["email"] } },
    });
    expect(formatEvent(e)).toBe('             update customers/c-1@3 notes="hi" phone="+86 138****5678" (masked) -email');
    expect(formatEvent(e, ansi)).toContain("\u001b[");
    expect(formatEvent(create(ChangeEventSchema, { cursor: "c", kind: { case: "heartbeat", value: {} } }))).toBeNull();
    const leave = create(ChangeEventSchema, { cursor: "c", kind: { case: "leaveScope", value: { collection: "customers", id: "c-1", version: 4n, reason: ScopeReason.POLICY } } });
    expect(formatEvent(leave)).toContain("leave  customers/c-1@4 (access changed)");
  });
});

describe("bucketDiffs", () => {
  it("finds records missing, extra (in this bucket only) and at another version", () => {
    const buckets = 4;
    const ids = Array.from({ length: 40 }, (_, i) => `r${i}`);
    const bucket = bucketOf("r0", buckets);
    const inBucket = ids.filter((id) => bucketOf(id, buckets) === bucket);
    const other = ids.find((id) => bucketOf(id, buckets) !== bucket)!;
    const [a, b, c] = inBucket;
    const local = new Map<string, bigint>([
      [a!, 1n],
      [b!, 2n],
      [other, 9n], // another bucket: not this bucket's business
    ]);
    const server = [
      { id: a!, version: 1n },
      { id: c!, version: 5n },
    ];
    const diffs = bucketDiffs(local, server, bucket, buckets);
    expect(diffs.map(describeDiff)).toEqual(
      [`${b}: not on the server (local version 2)`, `${c}: missing locally (server has version 5)`].sort(),
    );
    expect(bucketDiffs(new Map([[a!, 2n]]), [{ id: a!, version: 3n }], bucket, buckets)).toEqual([{ id: a, kind: "version_differs", localVersion: 2n, serverVersion: 3n }]);
  });
});
