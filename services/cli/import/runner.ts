// The import's write loop: rows go out in batched WriteRecords calls, several
// in flight, and every row settles as written or rejected.
//
// - One bad row never fails its neighbours: a request refused as a whole is
//   resent without the rows the error names, or split in halves when it names
//   none, until each bad row stands alone.
// - Rows with the same key are written in file order: a row waits until the
//   batch holding the key's previous row has settled, and is based on the
//   version that row produced, so a later row updates what the earlier one
//   wrote (fields others changed since still go to their conflict policies).
// - Server and network failures are retried with backoff; that is safe
//   because each row's client_mutation_id is fixed (a retry replays).
// The network sits behind `write`; everything else here is plain logic.
import { FieldOutcome_Status } from "../../../gen/deltamesh/v1/types_pb.js";
import { classify, failureOf, type RowRejection } from "./failures.js";
import type { PreparedRow } from "./row-values.js";
import type { ImportMutation, ResultSummary } from "./wire.js";

type ReadyRow = Extract<PreparedRow, { mutation: unknown }>;

interface Lane {
  rows: ReadyRow[];
  keys: Set<string>;
  size: number;
}

export type RowStatus = "created" | "updated" | "unchanged" | "replayed" | "rejected";

export interface RowOutcome {
  line: number;
  keyText: string;
  status: RowStatus;
  /** Written rows: the key as ordered and the record version the row left (for resuming). */
  written?: { orderKey: string; version: bigint };
  /** Some field of the row now waits in a review ticket (manual_review policy). */
  review?: boolean;
  rejection?: RowRejection;
}

export interface RunnerOptions {
  /** One WriteRecords call: results in request order, or throws the call's error. */
  write: (mutations: ImportMutation[]) => Promise<ResultSummary[]>;
  /** The identity field rows are upserted by (names the key in reports). */
  keyField: string;
  batchSize: number;
  /**
   * Batch size for rows marked `risky` (default 16). The server applies a
   * request's mutations until the first that fails, so one refused row costs
   * its batch a round trip; rows likely to be refused travel in small batches.
   */
  riskyBatchSize?: number;
  concurrency: number;
  onOutcomes: (outcomes: RowOutcome[]) => void;
  /** Attempts for a request that fails for server or network reasons (default 8). */
  attempts?: number;
  /** First retry delay; doubles each time up to 10 s (default 200 ms). */
  retryDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** The import cannot go on (no such collection, server gone): what was sent so far stays written. */
export class ImportStopped extends Error {
  override readonly name = "ImportStopped";
}

/** A rest of a request shorter than this is resent whole rather than halved. */
const SPLIT_BELOW = 16;

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function outcomeOf(row: { line: number; keyText: string; orderKey: string }, r: ResultSummary): RowOutcome {
  const review = r.fieldStatuses.includes(FieldOutcome_Status.QUEUED_FOR_REVIEW);
  let status: RowStatus = "updated";
  if (r.replayed) status = "replayed";
  else if (r.created) status = "created";
  else if (r.fieldStatuses.every((st) => st === FieldOutcome_Status.UNCHANGED)) status = "unchanged";
  return { line: row.line, keyText: row.keyText, status, written: { orderKey: row.orderKey, version: r.version }, ...(review ? { review } : {}) };
}

export class ImportRunner {
  /** Rows waiting to be sent: ordinary ones, and small batches of rows likely to be refused. */
  private readonly lanes: Record<"normal" | "risky", Lane>;
  /** Requests in flight -> the first file line they hold. */
  private readonly inflight = new Map<Promise<void>, number>();
  /** The last line given to add(), and the line add() is still placing (waiting for room or order). */
  private lastLine = 0;
  private placing: number | null = null;
  /** The first line of a request abandoned when the import stopped: it never settles. */
  private abandonedFrom = Infinity;
  /** Key -> the in-flight batch holding its latest row. */
  private readonly keyBatch = new Map<string, Promise<void>>();
  /** Key -> the record version the key's latest written row produced. */
  private readonly versions = new Map<string, bigint>();
  private stopped: Error | null = null;
  private readonly attempts: number;
  private readonly retryDelayMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly opts: RunnerOptions) {
    this.attempts = opts.attempts ?? 8;
    this.retryDelayMs = opts.retryDelayMs ?? 200;
    this.sleep = opts.sleep ?? defaultSleep;
    this.lanes = {
      normal: { rows: [], keys: new Set(), size: opts.batchSize },
      risky: { rows: [], keys: new Set(), size: Math.min(opts.batchSize, opts.riskyBatchSize ?? 16) },
    };
  }

  /** Versions rows of an earlier run left (resuming): later rows of those keys are based on them. */
  seedVersions(versions: Iterable<[string, bigint]>): void {
    for (const [k, v] of versions) this.versions.set(k, v);
  }

  /** Every row up to this file line has settled (written or rejected); rows after it may not have. */
  settledThrough(): number {
    let floor = Math.min(this.placing ?? Infinity, this.abandonedFrom);
    for (const lane of Object.values(this.lanes)) if (lane.rows.length > 0) floor = Math.min(floor, lane.rows[0]!.line);
    for (const first of this.inflight.values()) floor = Math.min(floor, first);
    return floor === Infinity ? this.lastLine : floor - 1;
  }

  /** Queues a row. Call one at a time (await each), in file order: it waits for room and for the key's earlier rows. */
  async add(row: PreparedRow): Promise<void> {
    this.throwIfStopped();
    this.lastLine = row.line;
    if ("rejected" in row) {
      const rejection: RowRejection = { code: "IMPORT", reason: row.rejected.reason, message: row.rejected.message, violations: [] };
      this.opts.onOutcomes([{ line: row.line, keyText: row.keyText, status: "rejected", rejection }]);
      return;
    }
    this.placing = row.line;
    for (const lane of Object.values(this.lanes)) if (lane.keys.has(row.orderKey)) await this.flush(lane);
    const earlier = this.keyBatch.get(row.orderKey);
    if (earlier) await earlier;
    this.throwIfStopped();
    this.placing = null;
    const base = this.versions.get(row.orderKey);
    if (base !== undefined) row.mutation.baseVersion = base;
    const lane = row.risky ? this.lanes.risky : this.lanes.normal;
    lane.rows.push(row);
    lane.keys.add(row.orderKey);
    if (lane.rows.length >= lane.size) await this.flush(lane);
  }

  /** Sends what is queued and waits until every row has settled. Throws ImportStopped if the import stopped. */
  async finish(): Promise<void> {
    if (!this.stopped) for (const lane of Object.values(this.lanes)) await this.flush(lane);
    await this.drain();
    this.throwIfStopped();
  }

  /** Waits for the requests in flight, whatever their outcome. */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.keys()]);
  }

  private throwIfStopped(): void {
    if (this.stopped) throw this.stopped;
  }

  private async flush(lane: Lane): Promise<void> {
    if (lane.rows.length === 0) return;
    // Wait for room first: until they are in flight, the rows stay in the lane, so settledThrough() counts them.
    while (this.inflight.size >= this.opts.concurrency) await Promise.race(this.inflight.keys());
    const rows = lane.rows;
    lane.rows = [];
    lane.keys = new Set();
    const done: Promise<void> = this.settle(rows)
      .catch((e: unknown) => {
        this.stopped ??= e instanceof ImportStopped ? e : new ImportStopped(e instanceof Error ? e.message : String(e));
        this.abandonedFrom = Math.min(this.abandonedFrom, rows[0]!.line);
      })
      .finally(() => {
        this.inflight.delete(done);
        for (const r of rows) if (this.keyBatch.get(r.orderKey) === done) this.keyBatch.delete(r.orderKey);
      });
    this.inflight.set(done, rows[0]!.line);
    for (const r of rows) this.keyBatch.set(r.orderKey, done);
  }

  /** Writes `rows` until each is written or rejected. */
  private async settle(rows: ReadyRow[]): Promise<void> {
    let results: ResultSummary[];
    try {
      results = await this.writeWithRetry(rows);
    } catch (e) {
      const verdict = classify(failureOf(e), this.opts.keyField);
      if (verdict.kind === "fatal") throw new ImportStopped(verdict.message);
      if (verdict.kind === "transient") throw new ImportStopped(`the server kept failing (${this.attempts} attempts): ${failureOf(e).message}`);
      const named = verdict.kind === "rows" ? [...verdict.rejected].filter(([i]) => i < rows.length) : [];
      if (named.length > 0) {
        this.reject(named.map(([i, rejection]) => [rows[i]!, rejection]));
        const bad = new Set(named.map(([i]) => i));
        if (verdict.kind === "rows" && verdict.firstFailure) {
          // The server stopped at the first failing row: the rows before it are
          // good, the rows after it unknown. Prefix and two halves of the rest go
          // at once (a batch never holds one key twice, so order does not matter).
          const first = Math.min(...bad);
          const tail = rows.slice(first + 1).filter((_, k) => !bad.has(first + 1 + k));
          const half = Math.ceil(tail.length / 2);
          const parts = tail.length > SPLIT_BELOW ? [tail.slice(0, half), tail.slice(half)] : [tail];
          await Promise.all([rows.slice(0, first), ...parts].filter((p) => p.length > 0).map((p) => this.settle(p)));
        } else {
          // Every bad row is named (the server checks all fields before applying any).
          const rest = rows.filter((_, i) => !bad.has(i));
          if (rest.length > 0) await this.settle(rest);
        }
      } else if (rows.length > 1) {
        // Which row is bad is not said: halve until it stands alone.
        const half = Math.ceil(rows.length / 2);
        await this.settle(rows.slice(0, half));
        await this.settle(rows.slice(half));
      } else {
        this.reject([[rows[0]!, verdict.kind === "unattributed" ? verdict.rejection : verdict.rejected.values().next().value!]]);
      }
      return;
    }
    rows.forEach((row, i) => {
      const r = results[i];
      if (r) this.versions.set(row.orderKey, r.version);
    });
    this.opts.onOutcomes(rows.map((row, i) => outcomeOf(row, results[i]!)));
  }

  private reject(rows: [ReadyRow, RowRejection][]): void {
    this.opts.onOutcomes(rows.map(([row, rejection]) => ({ line: row.line, keyText: row.keyText, status: "rejected", rejection })));
  }

  private async writeWithRetry(rows: ReadyRow[]): Promise<ResultSummary[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.opts.write(rows.map((r) => r.mutation));
      } catch (e) {
        if (attempt >= this.attempts || classify(failureOf(e), this.opts.keyField).kind !== "transient") throw e;
        await this.sleep(Math.min(10_000, this.retryDelayMs * 2 ** (attempt - 1)));
      }
    }
  }
}
