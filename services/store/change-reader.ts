// The SQL of change streams: reading the change log in pages (the tailer and
// catching-up subscribers), the retention floor, LISTEN for commit
// notifications, and read-only snapshots (a consistent view of the records
// tied to one log position) for snapshot-then-stream, digests and view swaps.
//
// Every read that could race retention reads the floor in the same statement
// or snapshot as the rows: retention deletes rows and raises the floor in one
// transaction, so rows above the floor seen with it are complete.
import pg from "pg";
import type { Pool } from "pg";
import type { StoredValue } from "../schema/types.js";
import type { ChangeEntry, StoredRecord } from "../records/model.js";
import { deltaClocksFromJson, type DeltaClocksJson } from "./clock-json.js";
import { DELETED_FIELD } from "../records/apply-mutation.js";
import { toStoreError } from "./pg-errors.js";
import { listRecords, type ListQuery, type RecordStore } from "./record-store.js";

/** Channel the change-log trigger notifies on commit (migration 0003). */
export const CHANGES_CHANNEL = "deltamesh_changes";
/** deltamesh_meta key of the retention floor: the highest seq deleted by retention, decimal text. */
export const FLOOR_KEY = "change_log_floor";

/** One change as streams need it. */
export interface LogChange
  extends Pick<
    ChangeEntry,
    "seq" | "tenant" | "collection" | "recordId" | "oldVersion" | "newVersion" | "set" | "cleared" | "clocks" | "created" | "deleted" | "commitTime"
  > {
  /**
   * The record's fields after the change and before-values of the touched
   * fields, parsed on first use (many views never need them). Null for rows
   * written before migration 0003, and in pages read without images.
   */
  image(): Record<string, StoredValue> | null;
  prior(): Record<string, StoredValue> | null;
  /** Characters of JSON the row carried (delta, image, prior): a measure of what holding it costs. */
  size: number;
}

export interface LogPage {
  changes: LogChange[];
  /** Characters of JSON the rows carried (delta, image, prior): a measure of their size for paging. */
  size: number;
  /** The retention floor read with the rows. */
  floor: bigint;
  /** The last committed seq when the rows were read (the floor when the log is empty). */
  tail: bigint;
}

export interface LogBounds {
  floor: bigint;
  /** The last committed seq (the floor when the log is empty). */
  tail: bigint;
}

export type SnapshotRecordQuery = Omit<ListQuery, "includeDeleted">;

/** A read-only, repeatable-read view of the database at one log position. */
export interface LogSnapshot {
  /** Every change up to here, and nothing after, is reflected in what this snapshot reads. */
  readonly position: bigint;
  readonly floor: bigint;
  /** Non-deleted records in id order. */
  records(q: SnapshotRecordQuery): Promise<StoredRecord[]>;
  /** Ends the transaction; idempotent. */
  close(): Promise<void>;
}

export interface ChangeListener {
  close(): Promise<void>;
}

/**
 * A page row, in PAGE_SQL's column order (read as arrays: pg builds no
 * object per row; COLUMN names the positions). One row holds only the floor
 * and tail; the others, only a change.
 */
type LogRow = [
  floor: string | null,
  tail: string | null,
  seq: string | null,
  tenant: string,
  collection: string,
  recordId: string,
  oldVersion: string,
  newVersion: string,
  /** The stored delta's text: parsed here once (operators on a json column re-parse it for every use: 5 per row cost ~23 µs). */
  delta: string,
  source: string,
  actor: string,
  device: string,
  created: boolean,
  deleted: boolean,
  /** Commit time in whole milliseconds since the epoch (what a Date holds), cheaper to read than a timestamp's text. */
  commitMs: string,
  image: string | null,
  prior: string | null,
];

const COLUMN = {
  floor: 0,
  tail: 1,
  seq: 2,
  tenant: 3,
  collection: 4,
  recordId: 5,
  oldVersion: 6,
  newVersion: 7,
  delta: 8,
  source: 9,
  actor: 10,
  device: 11,
  created: 12,
  deleted: 13,
  commitMs: 14,
  image: 15,
  prior: 16,
} as const;

const FLOOR_SQL = `COALESCE((SELECT value::bigint FROM deltamesh_meta WHERE key = '${FLOOR_KEY}'), 0)`;

// image and prior come as text and are parsed lazily: a catching-up
// subscriber without filters never needs them, and parsing them is most of
// the cost of a read. Such a reader asks for them only where a change
// restores a deleted record ($4 false): its enter_scope event carries the
// whole record. A restore's clocks name the deleted flag (DELETED_FIELD), so
// looking for its quoted name in the delta's text finds every restore (and
// at worst a few other rows, which then carry their image for nothing).
const PAGE_SQL = `
  SELECT ${FLOOR_SQL} AS floor, (SELECT max(seq) FROM changes) AS tail,
         NULL::int8, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  UNION ALL
  (SELECT NULL, NULL, seq, tenant, collection, record_id, old_version, new_version,
          delta::text, source, actor, device, created, deleted,
          floor(extract(epoch FROM commit_time) * 1000)::int8,
          CASE WHEN $4 OR strpos(delta::text, '"${DELETED_FIELD}"') > 0 THEN image::text END,
          CASE WHEN $4 OR strpos(delta::text, '"${DELETED_FIELD}"') > 0 THEN prior::text END
     FROM changes
    WHERE seq > $1 AND seq <= $2
    ORDER BY seq
    LIMIT $3)`;

const MAX_SEQ = (1n << 63n) - 1n;

const BOUNDS_SQL = `SELECT ${FLOOR_SQL} AS floor, (SELECT max(seq) FROM changes) AS tail`;
type BoundsRow = { floor: string; tail: string | null };

const END_SQL = `
  SELECT ${FLOOR_SQL} AS floor, t.seq AS tail, t.commit_time
    FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT seq, commit_time FROM changes ORDER BY seq DESC LIMIT 1) t ON true`;
type EndRow = BoundsRow & { commit_time: Date | null };

export interface LogEnd extends LogBounds {
  /** Commit time of the last change; null when the log is empty. */
  tailCommitTime: Date | null;
}

function boundsOf(res: pg.QueryResult<BoundsRow>): LogBounds {
  const floor = BigInt(res.rows[0]!.floor);
  const tail = res.rows[0]!.tail === null ? 0n : BigInt(res.rows[0]!.tail);
  return { floor, tail: tail > floor ? tail : floor };
}

const ABSENT = (): null => null;

function lazyJson(text: string | null): () => Record<string, StoredValue> | null {
  if (text === null) return ABSENT; // most rows of a page read without images
  let parsed: Record<string, StoredValue> | undefined;
  return () => (parsed ??= JSON.parse(text) as Record<string, StoredValue>);
}

interface StoredDelta extends DeltaClocksJson {
  set: Record<string, StoredValue>;
  cleared: string[];
}

function toLogChange(r: LogRow, size: number): LogChange {
  const newVersion = Number(r[COLUMN.newVersion]);
  const delta = JSON.parse(r[COLUMN.delta]) as StoredDelta;
  const clockOf = { newVersion, source: r[COLUMN.source], actor: r[COLUMN.actor], device: r[COLUMN.device] };
  return {
    seq: BigInt(r[COLUMN.seq]!),
    tenant: r[COLUMN.tenant],
    collection: r[COLUMN.collection],
    recordId: r[COLUMN.recordId],
    oldVersion: Number(r[COLUMN.oldVersion]),
    newVersion,
    set: delta.set,
    cleared: delta.cleared,
    clocks: deltaClocksFromJson(delta, clockOf),
    created: r[COLUMN.created],
    deleted: r[COLUMN.deleted],
    commitTime: new Date(Number(r[COLUMN.commitMs])),
    image: lazyJson(r[COLUMN.image]),
    prior: lazyJson(r[COLUMN.prior]),
    size,
  };
}


export class ChangeReader {
  private constructor(
    private readonly pool: Pool,
    readonly databaseId: string,
  ) {}

  static of(store: RecordStore): ChangeReader {
    return new ChangeReader(store.pool, store.databaseId);
  }

  /**
   * Changes with `after < seq <= upTo` in log order, at most `limit`, with
   * the floor read in the same statement. `images: false` leaves out the
   * record images (`image()` and `prior()` answer null) except where a change
   * restores a deleted record: for readers whose views judge nothing by the
   * record's other fields.
   */
  async readPage(after: bigint, limit: number, upTo: bigint = MAX_SEQ, images = true): Promise<LogPage> {
    const res = await this.run(() =>
      this.pool.query<LogRow>({ text: PAGE_SQL, values: [after.toString(), upTo.toString(), limit, images], rowMode: "array" }),
    );
    let floor = 0n;
    let tail: bigint | null = null;
    let size = 0;
    const changes: LogChange[] = [];
    for (const r of res.rows) {
      // The bounds' row comes first in practice; nothing here relies on it.
      if (r[COLUMN.seq] === null) {
        const last = r[COLUMN.tail];
        floor = BigInt(r[COLUMN.floor] ?? "0");
        tail = last === null ? null : BigInt(last);
        continue;
      }
      const rowSize = r[COLUMN.delta].length + (r[COLUMN.image]?.length ?? 0) + (r[COLUMN.prior]?.length ?? 0);
      size += rowSize;
      changes.push(toLogChange(r, rowSize));
    }
    tail ??= floor;
    return { changes, floor, tail: tail > floor ? tail : floor, size };
  }

  async bounds(): Promise<LogBounds> {
    return boundsOf(await this.run(() => this.pool.query<BoundsRow>(BOUNDS_SQL)));
  }

  /** The bounds and the last change's commit time. */
  async end(): Promise<LogEnd> {
    const res = await this.run(() => this.pool.query<EndRow>(END_SQL));
    return { ...boundsOf(res), tailCommitTime: res.rows[0]!.commit_time };
  }

  /**
   * Calls `onNotify` whenever a transaction that appended changes commits, on
   * a dedicated connection. `onError` reports a lost connection; the listener
   * is then dead and the caller opens a new one.
   */
  async listen(onNotify: () => void, onError: (e: unknown) => void): Promise<ChangeListener> {
    const client = new pg.Client(this.pool.options);
    let closed = false;
    client.on("notification", () => onNotify());
    client.on("error", (e) => {
      if (!closed) onError(toStoreError(e));
    });
    client.on("end", () => {
      if (!closed) onError(new Error("listen connection ended"));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (e) {
      closed = true;
      await client.end().catch(() => undefined);
      throw toStoreError(e);
    }
    return {
      async close() {
        if (closed) return;
        closed = true;
        await client.end().catch(() => undefined);
      },
    };
  }

  /**
   * Opens a read-only repeatable-read transaction; close it when done (it
   * holds a pooled connection). Its position is exact because seq order is
   * commit order (sequencing.ts): the snapshot holds every change up to its
   * highest seq and none after.
   */
  async openSnapshot(): Promise<LogSnapshot> {
    const client = await this.run(() => this.pool.connect());
    let closed = false;
    const close = async (broken: boolean) => {
      if (closed) return;
      closed = true;
      if (!broken) {
        try {
          await client.query("COMMIT");
        } catch {
          broken = true;
        }
      }
      client.release(broken);
    };
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      const { floor, tail } = boundsOf(await client.query<BoundsRow>(BOUNDS_SQL));
      return {
        position: tail,
        floor,
        records: (q) => this.run(() => listRecords(client, { ...q, includeDeleted: false })),
        close: () => close(false),
      };
    } catch (e) {
      await close(true);
      throw toStoreError(e);
    }
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      throw toStoreError(e);
    }
  }
}
