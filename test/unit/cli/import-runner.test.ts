// The import's write loop against an in-memory stand-in for WriteRecords that
// keeps the API's contract: atomic requests, all field violations reported at
// once before anything applies, the first failing mutation named while
// applying, replays by client_mutation_id.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { FieldOutcome_Status } from "../../../gen/deltamesh/v1/types_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { classify, failureOf } from "../../../services/cli/import/failures.js";
import { addOutcomes, emptyCounts, formatDuration, formatProgress, formatSummary } from "../../../services/cli/import/progress.js";
import type { PreparedRow } from "../../../services/cli/import/row-values.js";
import { ImportRunner, ImportStopped, type RowOutcome } from "../../../services/cli/import/runner.js";
import type { ImportMutation, ResultSummary } from "../../../services/cli/import/wire.js";

function rpcError(code: Code, reason: string, metadata: Record<string, string>, violations: { field: string; reason: string; description: string }[]): ConnectError {
  const e = new ConnectError(`${reason} happened`, code);
  e.details = [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason, domain: "deltamesh.dev", metadata }) }];
  if (violations.length > 0) e.details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: violations }) });
  return e;
}

const text = (m: ImportMutation, field: string): string | undefined => {
  const v = m.set.find(([f]) => f === field)?.[1];
  return v?.case === "stringValue" ? v.value : undefined;
};

class FakeRecords {
  readonly records = new Map<string, bigint>();
  readonly applied = new Map<string, ResultSummary>();
  /** Every applied mutation, in commit order. */
  readonly log: { key: string; base: bigint; name: string | undefined }[] = [];
  inflight = 0;
  maxInflight = 0;
  calls = 0;
  /** Per call: how many of its mutations name no `name`. */
  readonly requests: { size: number; nameless: number }[] = [];
  failNext: ConnectError[] = [];
  /** The call writing this key waits for it. */
  hold: { key: string; until: Promise<void> } | null = null;

  write = async (ms: ImportMutation[]): Promise<ResultSummary[]> => {
    this.calls++;
    this.requests.push({ size: ms.length, nameless: ms.filter((m) => !text(m, "name")).length });
    this.inflight++;
    this.maxInflight = Math.max(this.maxInflight, this.inflight);
    try {
      await new Promise((r) => setTimeout(r, Math.random() * 3));
      if (this.hold && ms.some((m) => m.keyValue.case === "stringValue" && m.keyValue.value === this.hold!.key)) await this.hold.until;
      const injected = this.failNext.shift();
      if (injected) throw injected;
      if (ms.some((m) => text(m, "name") === "boom")) throw new ConnectError("something in there is wrong", Code.InvalidArgument);
      const violations = ms.flatMap((m, i) =>
        text(m, "phone") === "bad" ? [{ field: `mutations[${i}].set.phone`, reason: "PHONE_INVALID", description: `"bad" is not a phone number` }] : [],
      );
      if (violations.length > 0) throw rpcError(Code.InvalidArgument, "INVALID_ARGUMENT", {}, violations);
      const staged = new Map(this.records);
      const results: ResultSummary[] = [];
      const log: FakeRecords["log"] = [];
      ms.forEach((m, i) => {
        const earlier = this.applied.get(m.clientMutationId);
        if (earlier) return results.push({ ...earlier, replayed: true });
        const key = m.keyValue.case === "stringValue" ? m.keyValue.value : "";
        const current = staged.get(key);
        if (text(m, "name") === "taken") {
          throw rpcError(Code.AlreadyExists, "IDENTITY_KEY_TAKEN", { mutation_index: String(i) }, [
            { field: `mutations[${i}].set.phone`, reason: "IDENTITY_KEY_TAKEN", description: "held by record r0" },
          ]);
        }
        if (current === undefined && !text(m, "name")) {
          throw rpcError(Code.InvalidArgument, "REQUIRED_FIELD_MISSING", { mutation_index: String(i) }, [
            { field: `mutations[${i}].set.name`, reason: "REQUIRED", description: "name is required in customers" },
          ]);
        }
        const version = (current ?? 0n) + 1n;
        staged.set(key, version);
        log.push({ key, base: m.baseVersion, name: text(m, "name") });
        results.push({ version, created: current === undefined, replayed: false, fieldStatuses: m.set.map(() => FieldOutcome_Status.APPLIED) });
      });
      for (const [k, v] of staged) this.records.set(k, v);
      ms.forEach((m, i) => this.applied.set(m.clientMutationId, results[i]!));
      this.log.push(...log);
      return results;
    } finally {
      this.inflight--;
    }
  };
}

function row(line: number, key: string, fields: Record<string, string>): PreparedRow {
  return {
    line,
    keyText: key,
    orderKey: key,
    risky: !fields.name,
    mutation: {
      collection: "customers",
      keyField: "erp_id",
      keyValue: { case: "stringValue", value: key },
      set: Object.entries(fields).map(([f, v]) => [f, { case: "stringValue", value: v }]),
      clear: [],
      baseVersion: 0n,
      clientMutationId: `imp-${line}`,
      source: "erp",
      device: "test",
    },
  };
}

async function runAll(server: FakeRecords, rows: PreparedRow[], opts: { batchSize?: number; concurrency?: number; sleeps?: number[] } = {}) {
  const outcomes: RowOutcome[] = [];
  const runner = new ImportRunner({
    write: server.write,
    keyField: "erp_id",
    batchSize: opts.batchSize ?? 4,
    concurrency: opts.concurrency ?? 2,
    onOutcomes: (o) => outcomes.push(...o),
    sleep: async (ms) => void opts.sleeps?.push(ms),
  });
  for (const r of rows) await runner.add(r);
  await runner.finish();
  return outcomes.sort((a, b) => a.line - b.line);
}

const valid = (n: number, from = 0) => Array.from({ length: n }, (_, i) => row(from + i + 2, `E${from + i}`, { name: `C${from + i}` }));

describe("import runner", () => {
  it("writes every row once, in batches, with at most `concurrency` batches in flight", async () => {
    const server = new FakeRecords();
    const outcomes = await runAll(server, valid(40), { batchSize: 5, concurrency: 3 });
    expect(outcomes.map((o) => [o.line, o.status])).toEqual(valid(40).map((r) => [r.line, "created"]));
    expect(server.calls).toBe(8);
    expect(server.maxInflight).toBeLessThanOrEqual(3);
    expect(server.maxInflight).toBeGreaterThan(1);
  });

  it("rejects the rows whose fields are invalid and still writes their neighbours", async () => {
    const server = new FakeRecords();
    const rows = [row(2, "A", { name: "a" }), row(3, "B", { name: "b", phone: "bad" }), row(4, "C", { name: "c" }), row(5, "D", { name: "d", phone: "bad" })];
    const outcomes = await runAll(server, rows);
    expect(outcomes.map((o) => [o.line, o.status, o.rejection?.reason])).toEqual([
      [2, "created", undefined],
      [3, "rejected", "PHONE_INVALID"],
      [4, "created", undefined],
      [5, "rejected", "PHONE_INVALID"],
    ]);
    expect(outcomes[1]!.rejection).toEqual({
      code: "INVALID_ARGUMENT",
      reason: "PHONE_INVALID",
      message: 'phone: "bad" is not a phone number',
      violations: [{ field: "phone", reason: "PHONE_INVALID", description: '"bad" is not a phone number' }],
    });
    expect([...server.records.keys()].sort()).toEqual(["A", "C"]);
  });

  it("isolates rows refused while applying, one failure at a time, and writes all others", async () => {
    const server = new FakeRecords();
    const rows = Array.from({ length: 60 }, (_, i) => row(i + 2, `K${i}`, { name: i % 7 === 3 ? "taken" : `n${i}` }));
    const outcomes = await runAll(server, rows, { batchSize: 30 });
    const bad = rows.filter((_, i) => i % 7 === 3).map((r) => r.line);
    expect(outcomes.filter((o) => o.status === "rejected").map((o) => o.line)).toEqual(bad);
    expect(outcomes.filter((o) => o.status === "rejected").every((o) => o.rejection?.reason === "IDENTITY_KEY_TAKEN")).toBe(true);
    expect(outcomes).toHaveLength(60);
    expect(server.records.size).toBe(60 - bad.length);
    expect(server.log).toHaveLength(60 - bad.length);
  });

  it("sends rows likely to be refused in small batches of their own", async () => {
    const server = new FakeRecords();
    const rows = Array.from({ length: 200 }, (_, i) => row(i + 2, `K${i}`, i % 10 === 3 ? { level: "x" } : { name: `n${i}` }));
    const outcomes = await runAll(server, rows, { batchSize: 100 });
    expect(outcomes.filter((o) => o.status === "rejected").every((o) => o.rejection?.reason === "REQUIRED_FIELD_MISSING")).toBe(true);
    expect(outcomes.filter((o) => o.status === "rejected")).toHaveLength(20);
    expect(server.requests.filter((r) => r.nameless > 0).every((r) => r.size === r.nameless && r.size <= 16)).toBe(true);
    expect(server.requests.filter((r) => r.nameless === 0).map((r) => r.size)).toEqual([100, 80]);
  });

  it("halves a refused request whose error names no row until the bad row stands alone", async () => {
    const server = new FakeRecords();
    const rows = valid(16);
    rows[9] = row(rows[9]!.line, "E9", { name: "boom" });
    const outcomes = await runAll(server, rows, { batchSize: 16 });
    expect(outcomes.filter((o) => o.status === "rejected")).toEqual([
      { line: 11, keyText: "E9", status: "rejected", rejection: { code: "INVALID_ARGUMENT", reason: "INVALID_ARGUMENT", message: "something in there is wrong", violations: [] } },
    ]);
    expect(server.records.size).toBe(15);
  });

  it("writes rows of one key in file order, each based on the version the previous one produced", async () => {
    const server = new FakeRecords();
    const rows = [row(2, "A", { name: "first" }), row(3, "B", { name: "b" }), row(4, "A", { level: "x" }), row(5, "A", { name: "third" }), ...valid(10, 10)];
    const outcomes = await runAll(server, rows, { batchSize: 3, concurrency: 4 });
    expect(server.log.filter((l) => l.key === "A")).toEqual([
      { key: "A", base: 0n, name: "first" },
      { key: "A", base: 1n, name: undefined },
      { key: "A", base: 2n, name: "third" },
    ]);
    expect(outcomes.filter((o) => o.keyText === "A").map((o) => o.status)).toEqual(["created", "updated", "updated"]);
  });

  it("counts rows written by an earlier run as already imported and writes nothing twice", async () => {
    const server = new FakeRecords();
    await runAll(server, valid(12));
    const again = await runAll(server, valid(12));
    expect(again.every((o) => o.status === "replayed")).toBe(true);
    expect(server.log).toHaveLength(12);
  });

  it("retries a request the server failed to answer, with growing delays", async () => {
    const server = new FakeRecords();
    server.failNext = [new ConnectError("down", Code.Unavailable), new ConnectError("busy", Code.ResourceExhausted)];
    const sleeps: number[] = [];
    const outcomes = await runAll(server, valid(3), { sleeps });
    expect(outcomes.map((o) => o.status)).toEqual(["created", "created", "created"]);
    expect(sleeps).toEqual([200, 400]);
  });

  it("stops when nothing in the file can fix the failure", async () => {
    const server = new FakeRecords();
    server.failNext = [rpcError(Code.NotFound, "COLLECTION_NOT_FOUND", { mutation_index: "0" }, [])];
    const outcomes: RowOutcome[] = [];
    const runner = new ImportRunner({ write: server.write, keyField: "erp_id", batchSize: 2, concurrency: 1, onOutcomes: (o) => outcomes.push(...o) });
    const attempt = async () => {
      for (const r of valid(10)) await runner.add(r);
      await runner.finish();
    };
    await expect(attempt()).rejects.toThrow(ImportStopped);
    await expect(attempt()).rejects.toThrow(/COLLECTION_NOT_FOUND/);
    expect(outcomes.some((o) => o.status === "rejected")).toBe(false);
  });
});

describe("import runner progress marks", () => {
  const runner = (server: FakeRecords) =>
    new ImportRunner({ write: server.write, keyField: "erp_id", batchSize: 4, concurrency: 3, onOutcomes: () => undefined });

  it("says how far rows have settled, never past a row still in flight", async () => {
    const server = new FakeRecords();
    let release!: () => void;
    server.hold = { key: "E5", until: new Promise((r) => (release = r)) };
    const r = runner(server);
    for (const row of valid(12)) await r.add(row); // lines 2..13; E5 (line 7) is in the second batch
    await expect.poll(() => server.records.size).toBe(8);
    expect(r.settledThrough()).toBe(5);
    release();
    await r.finish();
    expect(r.settledThrough()).toBe(13);
  });

  it("never passes a request abandoned when the import stopped", async () => {
    const server = new FakeRecords();
    let release!: () => void;
    server.hold = { key: "E1", until: new Promise((r) => (release = r)) };
    server.failNext = [new ConnectError("nope", Code.Unauthenticated)];
    const r = runner(server);
    for (const row of valid(8)) await r.add(row); // lines 2..5 held, 6..9 refused
    await expect.poll(() => server.failNext.length).toBe(0);
    release();
    await expect(r.finish()).rejects.toThrow(ImportStopped);
    expect(server.records.size).toBe(4);
    expect(r.settledThrough()).toBe(5);
  });

  it("bases the first row of a key on the version an earlier run left", async () => {
    const server = new FakeRecords();
    const r = runner(server);
    r.seedVersions([["A", 5n]]);
    await r.add(row(9, "A", { name: "again" }));
    await r.finish();
    expect(server.log).toEqual([{ key: "A", base: 5n, name: "again" }]);
  });
});

describe("import failures", () => {
  it("reads a google.rpc status into what the import needs", () => {
    const f = failureOf(rpcError(Code.AlreadyExists, "IDENTITY_KEY_TAKEN", { mutation_index: "2" }, [{ field: "mutations[2].set.phone", reason: "IDENTITY_KEY_TAKEN", description: "held by record r1" }]));
    expect(classify(f, "erp_id")).toEqual({
      kind: "rows",
      firstFailure: true,
      rejected: new Map([[2, { code: "ALREADY_EXISTS", reason: "IDENTITY_KEY_TAKEN", message: "phone: held by record r1", violations: [{ field: "phone", reason: "IDENTITY_KEY_TAKEN", description: "held by record r1" }] }]]),
    });
  });

  it("names the key field for violations of the reference", () => {
    const f = failureOf(rpcError(Code.InvalidArgument, "INVALID_ARGUMENT", {}, [{ field: "mutations[0].ref.identity.value", reason: "TOO_LONG", description: "at most 64" }]));
    expect(classify(f, "erp_id")).toMatchObject({ kind: "rows", firstFailure: false, rejected: new Map([[0, expect.objectContaining({ reason: "TOO_LONG", message: "erp_id: at most 64" })]]) });
  });

  it("tells transient failures from fatal ones", () => {
    const plain = (code: Code) => failureOf(new ConnectError("x", code));
    for (const code of [Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Internal]) expect(classify(plain(code), "k").kind).toBe("transient");
    for (const code of [Code.Unauthenticated, Code.Unimplemented]) expect(classify(plain(code), "k").kind).toBe("fatal");
    expect(classify(failureOf(rpcError(Code.InvalidArgument, "BATCH_TOO_LARGE", {}, [])), "k").kind).toBe("fatal");
  });
});

describe("import progress", () => {
  it("counts outcomes and formats the status line and summary", () => {
    const c = emptyCounts();
    addOutcomes(c, [
      { line: 2, keyText: "a", status: "created" },
      { line: 3, keyText: "b", status: "updated", review: true },
      { line: 4, keyText: "", status: "rejected" },
      { line: 5, keyText: "c", status: "replayed" },
    ]);
    expect(formatProgress(c, 2000, 0.25)).toBe("4 rows (25.0%)  2 rows/s  1 rejected  ETA 6s");
    expect(formatSummary(c, 2000)).toBe("4 rows in 2s (2 rows/s): 1 created, 1 updated, 0 unchanged, 1 already imported, 1 rejected; 1 rows left a field for review");
    expect([formatDuration(59.4), formatDuration(61), formatDuration(7322)]).toEqual(["59s", "1m01s", "2h02m"]);
  });
});
