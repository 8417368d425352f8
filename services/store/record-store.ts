// The record store: every SQL statement about records, identity keys, the
// change log and idempotency lives here. Reads are plain methods; writes go
// through `writeTransaction`, whose WriteTx offers the few steps a group-commit
// batch needs (resolve keys, lock, apply) so the merge logic stays SQL-free.
import pg from "pg";
import type { Pool, PoolClient } from "pg";
import type { StoredValue } from "../schema/types.js";
import type { ChangeEntry, FieldClock, FieldOutcome, MutationResult, StoredRecord } from "../records/model.js";
import { cursorEncoder } from "../changes/cursor.js";
import { compareSeqs, sequencingLockKey, type ChangeRow, type SequencingMode } from "./sequencing.js";
import type { LogChange } from "./change-reader.js";
import { changeImage } from "./change-image.js";
import { migrate } from "./migrate.js";
import { RecordCache } from "./record-cache.js";
import { storeTypes } from "./pg-types.js";
import { isStaleRead, toStoreError } from "./pg-errors.js";
import { arrayLiteral, withTransaction, type SqlValue, type Statement, type Transaction } from "./transaction.js";
import { clockFromJson, clockToJson, clocksFromJson, clocksJsonText, clocksToJson, deltaClocksFromJson, type ClockJson, type DeltaClocksJson } from "./clock-json.js";
import {
  closeTickets,
  getTicket,
  listTickets,
  loadOpenTickets,
  writeTickets,
  type ConflictTicket,
  type TicketClose,
  type TicketQuery,
  type TicketWrite,
} from "./ticket-sql.js";
import type { OpenTicket } from "../records/apply-mutation.js";

export interface RecordStoreOptions {
  url: string;
  /** Pool size (default 16). */
  maxConnections?: number;
  sequencing?: SequencingMode;
  /** Apply pending migrations on open (default true). */
  migrate?: boolean;
  /**
   * Budget for the records this node wrote lately (./record-cache.ts), in
   * bytes of their stored JSON (default 32 MiB; 0 keeps none, and every
   * batch reads and locks its records first).
   */
  recordCacheBytes?: number;
}

const DEFAULT_RECORD_CACHE_BYTES = 32 * 1024 * 1024;

export interface RecordKey {
  tenant: string;
  collection: string;
  id: string;
}

export interface IdentityLookup {
  tenant: string;
  collection: string;
  field: string;
  value: StoredValue;
}

export interface ListQuery {
  tenant: string;
  collection: string;
  /** Field equality filters, all of which must match. */
  equals: Record<string, StoredValue>;
  /** Only ids greater than this (keyset paging). */
  afterId: string;
  limit: number;
  includeDeleted: boolean;
}

export interface HistoryQuery extends RecordKey {
  afterSeq: bigint;
  limit: number;
}

/** One key-table edit: the record now holds (insert) or no longer holds (remove) an identity value. */
export interface KeyEdit extends IdentityLookup {
  recordId: string;
}

export interface ChangeDraft {
  tenant: string;
  collection: string;
  recordId: string;
  oldVersion: number;
  newVersion: number;
  set: Record<string, StoredValue>;
  cleared: string[];
  clocks: Record<string, FieldClock>;
  decisions: FieldOutcome[];
  created: boolean;
  deleted: boolean;
  actor: string;
  source: string;
  device: string;
  clientMutationId: string;
  /** The record's fields before (null: it did not exist) and after the change, for change streams. */
  fieldsBefore: Record<string, StoredValue> | null;
  fieldsAfter: Record<string, StoredValue>;
}

/** The first outcome of a client_mutation_id, and what it stood for (records/fingerprint.ts). */
export interface EarlierResult {
  result: MutationResult;
  /** Null for results stored before fingerprints were (they replay to any retry, as they always did). */
  fingerprint: string | null;
}

export interface AppliedMutation extends EarlierResult {
  tenant: string;
  clientMutationId: string;
  fingerprint: string;
  /** Index into `changes` of the change this mutation made; null when it changed nothing. */
  changeIndex: number | null;
}

export interface WriteEffects {
  /** Final state of every record the batch changed. */
  records: StoredRecord[];
  keyRemovals: KeyEdit[];
  keyInserts: KeyEdit[];
  changes: ChangeDraft[];
  applied: AppliedMutation[];
  tickets: TicketWrite[];
  ticketCloses: TicketClose[];
}

/** What a batch reads, and the records it locks, before it merges. */
export interface BatchReadRequest {
  /** Identity values whose holders the batch needs to know. */
  lookups: readonly IdentityLookup[];
  /** client_mutation_ids whose earlier results the batch needs. */
  clientMutationIds: readonly { tenant: string; clientMutationId: string }[];
  /** Records to lock: these ids, and the holders of these identity values (as the lock finds them). */
  lockIds: readonly RecordKey[];
  lockHolders: readonly IdentityLookup[];
  /** The batch will load open tickets: its records must then be read under lock. */
  readsTickets: boolean;
  /** Read and lock the records even if this node kept them. */
  mustLock?: boolean;
}

export interface BatchReads {
  /** Holder record ids of identity values, keyed by `identityKeyString`. */
  holders: Map<string, string>;
  /** Earlier results by client_mutation_id, keyed by `${tenant}\0${id}`. */
  applied: Map<string, EarlierResult>;
  /**
   * The batch's records that exist, by `recordKeyString`: locked, or as this
   * node last committed them (the write then checks they are still current).
   */
  locked: Map<string, StoredRecord>;
}

/** The steps of one group-commit transaction. */
export interface WriteTx {
  /**
   * Reads the batch's identity holders and earlier results, and locks its
   * records (in one global order, so batches never deadlock), in one round
   * trip with BEGIN. The lock resolves identity values itself, an instant
   * after the holder read: a holder that changed in between is missing from
   * `locked` or no longer holds the value (the caller retries). First waits
   * for this node's writes in flight of the same records. Records all kept
   * by this node (./record-cache.ts) are not read or locked; `apply` then
   * checks them and fails with StaleReadError if one changed.
   */
  read(req: BatchReadRequest): Promise<BatchReads>;
  /** Open review tickets of the records, by `recordKeyString` then field. */
  loadOpenTickets(keys: readonly RecordKey[]): Promise<Map<string, Map<string, OpenTicket>>>;
  /**
   * Writes everything and commits, in the same round trip unless `commit` is
   * false (the transaction then stays open; tests pause there, holding the
   * sequencing lock). Results get their cursors from the returned seqs
   * (the caller's job): idempotency rows store the seq, not the cursor.
   */
  apply(effects: WriteEffects, opts?: ApplyOptions): Promise<AppliedWrites>;
}

export interface ApplyOptions {
  /** Commit in the same round trip (default true). */
  commit?: boolean;
  /** Also return the change rows as change streams read them (for this node's own streams). */
  logChanges?: boolean;
}

export interface AppliedWrites {
  /** Seqs of the change rows, in `changes` order. */
  seqs: bigint[];
  /** The change rows as LogChanges, in seq order, when asked for (else empty). */
  logChanges: LogChange[];
}

/**
 * A batch merged from records this node kept, and another writer had
 * changed one since: nothing was written, and the batch is to be merged
 * again, reading its records under lock.
 */
export class StaleReadError extends Error {
  override readonly name = "StaleReadError";
}

export function recordKeyString(k: RecordKey): string {
  return `${k.tenant}\u0000${k.collection}\u0000${k.id}`;
}

export function identityKeyString(k: IdentityLookup): string {
  return `${k.tenant}\u0000${k.collection}\u0000${k.field}\u0000${JSON.stringify(k.value)}`;
}

/** A `records` row as the driver returns it (also read by ./change-reader.ts). */
export interface RecordRow {
  tenant: string;
  collection: string;
  id: string;
  version: string;
  fields: Record<string, StoredValue>;
  clocks: Record<string, ClockJson>;
  deleted: boolean;
  create_time: Date;
  update_time: Date;
}

interface ChangeRowDb {
  seq: string;
  tenant: string;
  collection: string;
  record_id: string;
  old_version: string;
  new_version: string;
  delta: DeltaJson;
  created: boolean;
  deleted: boolean;
  actor: string;
  source: string;
  device: string;
  client_mutation_id: string;
  commit_time: Date;
}

/**
 * A change's delta as stored. Every field a mutation sets or clears gets the
 * same clock (the change's version, source, actor and device, which are
 * columns of the row, and one HLC), so the common case stores that HLC once
 * (`h`) and the clocked field names (`k`); `clocks` holds full clocks only for
 * a change whose clocks differ (none does today).
 */
interface DeltaJson extends DeltaClocksJson {
  set: Record<string, StoredValue>;
  cleared: string[];
  decisions: OutcomeJson[];
}

type OutcomeJson = Omit<FieldOutcome, "winner"> & { winner?: ClockJson };

export const RECORD_COLUMNS = "tenant, collection, id, version, fields, clocks, deleted, create_time, update_time";

export class RecordStore {
  private readonly encodeCursor: (seq: bigint) => string;
  private readonly cache: RecordCache;
  private readonly cacheCounts = { unlockedBatches: 0, retriedUnderLock: 0 };

  private constructor(
    readonly pool: Pool,
    readonly databaseId: string,
    private readonly sequencing: SequencingMode,
    cacheBytes: number,
  ) {
    this.encodeCursor = cursorEncoder(databaseId);
    this.cache = new RecordCache(cacheBytes);
  }

  static async open(opts: RecordStoreOptions): Promise<RecordStore> {
    const pool = new pg.Pool({ connectionString: opts.url, max: opts.maxConnections ?? 16, types: storeTypes });
    // An idle client losing its connection must not crash the process.
    pool.on("error", () => undefined);
    try {
      if (opts.migrate ?? true) await migrate(pool);
      const id = await pool.query<{ value: string }>("SELECT value FROM deltamesh_meta WHERE key = 'database_id'");
      const databaseId = id.rows[0]?.value;
      if (!databaseId) throw new Error("database is not migrated: deltamesh_meta has no database_id");
      return new RecordStore(pool, databaseId, opts.sequencing ?? "commit-lock", opts.recordCacheBytes ?? DEFAULT_RECORD_CACHE_BYTES);
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /**
   * The records this node keeps (./record-cache.ts): how many, how many
   * batches merged from them without locking, and how many of those found a
   * record another writer had changed and were merged again under lock.
   */
  recordCacheStats(): { records: number; unlockedBatches: number; retriedUnderLock: number } {
    return { records: this.cache.size, ...this.cacheCounts };
  }

  cursorOf(seq: bigint): string {
    return this.encodeCursor(seq);
  }

  async get(key: RecordKey): Promise<StoredRecord | null> {
    const res = await this.query<RecordRow>(
      `SELECT ${RECORD_COLUMNS} FROM records WHERE tenant = $1 AND collection = $2 AND id = $3`,
      [key.tenant, key.collection, key.id],
    );
    const row = res.rows[0];
    return row ? toRecord(row) : null;
  }

  /** Records by key, keyed by `recordKeyString`; missing ones are absent. */
  async getMany(keys: readonly RecordKey[]): Promise<Map<string, StoredRecord>> {
    if (keys.length === 0) return new Map();
    const res = await this.query<RecordRow>(
      `SELECT r.* FROM ROWS FROM (unnest($1::text[]), unnest($2::text[]), unnest($3::text[])) AS k(tenant, collection, id) CROSS JOIN LATERAL
         (SELECT ${RECORD_COLUMNS} FROM records WHERE tenant = k.tenant AND collection = k.collection AND id = k.id) r`,
      recordKeyColumns(keys),
    );
    return new Map(res.rows.map((r) => [recordKeyString(r), toRecord(r)]));
  }

  async resolveIdentities(lookups: readonly IdentityLookup[]): Promise<Map<string, string>> {
    if (lookups.length === 0) return new Map();
    const { text, values } = identityStatement(lookups);
    const res = await this.query<IdentityRow>(text, [...values]);
    return holdersOf(res.rows);
  }

  async list(q: ListQuery): Promise<StoredRecord[]> {
    return this.run(() => listRecords(this.pool, q));
  }

  async history(q: HistoryQuery): Promise<ChangeEntry[]> {
    const res = await this.query<ChangeRowDb>(
      `SELECT * FROM changes
        WHERE tenant = $1 AND collection = $2 AND record_id = $3 AND seq > $4
        ORDER BY seq LIMIT $5`,
      [q.tenant, q.collection, q.id, q.afterSeq.toString(), q.limit],
    );
    return res.rows.map(toChange);
  }

  /** Changes after `afterSeq` in log order: the tailer's read (safe thanks to sequencing.ts). */
  async readChanges(afterSeq: bigint, limit: number): Promise<ChangeEntry[]> {
    const res = await this.query<ChangeRowDb>("SELECT * FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2", [
      afterSeq.toString(),
      limit,
    ]);
    return res.rows.map(toChange);
  }

  async getTicket(tenant: string, id: string): Promise<ConflictTicket | null> {
    return this.run(() => getTicket(this.pool, tenant, id));
  }

  async listTickets(q: TicketQuery): Promise<ConflictTicket[]> {
    return this.run(() => listTickets(this.pool, q));
  }

  /** Closes an open ticket without a write; false when it was not open. */
  async dismissTicket(tenant: string, id: string, by: string): Promise<boolean> {
    const closed = await this.run(() =>
      closeTickets(this.pool, [{ tenant, id, status: "dismissed", resolution: { by, at: new Date().toISOString() } }]),
    );
    return closed.size === 1;
  }

  /** Runs `work` in one transaction; the whole batch commits or none of it does. */
  async writeTransaction<T>(work: (tx: WriteTx) => Promise<T>): Promise<T> {
    return withTransaction(this.pool, (tx) => work(this.writeTx(tx)));
  }

  private writeTx(tx: Transaction): WriteTx {
    // The records the batch merged from (locked, or kept: `unlocked`); the
    // write checks that each is still as read.
    let read = new Map<string, StoredRecord>();
    let unlocked = false;
    // Whether this batch's records are kept once committed: only when they
    // were addressed by id. Records reached through identity values (an
    // import upserting by ERP id) are reached that way again, which the
    // cache cannot serve; keeping a bulk load's rows only cost it time.
    let keep = false;
    return {
      read: async (req) => {
        const { lookups, clientMutationIds: ids, lockIds, lockHolders } = req;
        // After this node's writes of the same records (see ./record-cache.ts), in the order they came.
        const lockKeys = lockIds.map(recordKeyString);
        const earlier = this.cache.writesBefore(lockKeys, lookups.length > 0 || lockHolders.length > 0);
        if (earlier) await earlier;
        const cached = req.mustLock ? null : this.cachedRecords(req, lockKeys);
        unlocked = cached !== null;
        keep = this.cache.enabled && lookups.length === 0 && lockHolders.length === 0;
        if (unlocked) this.cacheCounts.unlockedBatches++;
        const locking = !unlocked && (lockIds.length > 0 || lockHolders.length > 0);
        const statements = [
          ...(lookups.length > 0 ? [identityStatement(lookups)] : []),
          ...(ids.length > 0 ? [appliedStatement(ids)] : []),
          ...(locking ? [lockStatement(lockIds, lockHolders)] : []),
        ];
        const results = statements.length > 0 ? await tx.run(statements) : [];
        const holders = lookups.length > 0 ? holdersOf(results.shift()!.rows as IdentityRow[]) : new Map<string, string>();
        const applied = ids.length > 0 ? appliedOf(results.shift()!.rows as AppliedRow[], (seq) => this.cursorOf(seq)) : new Map<string, EarlierResult>();
        const locked = cached ?? new Map(locking ? (results.shift()!.rows as RecordRow[]).map((r) => [recordKeyString(r), toRecord(r)]) : []);
        // Read under lock: what was kept of them may be stale (they are kept again once written).
        if (!unlocked) for (const key of locked.keys()) this.cache.forget(key);
        read = locked;
        return { holders, applied, locked };
      },
      loadOpenTickets: async (keys) => {
        if (unlocked) throw new Error("open tickets are read under the records' locks: the batch must say readsTickets");
        return loadOpenTickets(await tx.connection(), keys);
      },
      apply: (effects, opts) => {
        const commit = opts?.commit ?? true;
        const keys = effects.records.map(recordKeyString);
        if (!keep) for (const k of keys) this.cache.forget(k);
        const written = this.applyEffects(tx, effects, keys, read, unlocked, commit && keep, commit, opts?.logChanges ?? false).catch((e: unknown) => {
          // A record kept here may be what failed the write.
          for (const k of [...keys, ...read.keys()]) this.cache.forget(k);
          if (!isStaleRead(e)) throw e;
          this.cacheCounts.retriedUnderLock++;
          throw new StaleReadError("a record changed since this node kept it; the batch is merged again under lock", { cause: e });
        });
        // Until this batch has committed or failed, the records it writes or
        // merged from are not current for another batch: that one waits.
        this.cache.writing([...new Set([...keys, ...read.keys()])], written, unlocked);
        return written;
      },
    };
  }

  /**
   * The batch's records as this node last committed them, when it may merge
   * from those without locking them: every record is addressed by id and
   * kept here, no identity value is looked up (holders change without the
   * records' versions saying so), and no open ticket is read. Else null.
   */
  private cachedRecords(req: BatchReadRequest, keys: readonly string[]): Map<string, StoredRecord> | null {
    if (!this.cache.enabled || req.readsTickets || req.lookups.length > 0 || req.lockHolders.length > 0 || keys.length === 0) return null;
    const records = new Map<string, StoredRecord>();
    for (const key of keys) {
      const record = this.cache.get(key);
      if (!record) return null;
      records.set(key, record);
    }
    return records;
  }

  /**
   * `keys`: the records' recordKeyStrings; `read`: the records the batch
   * merged from, whose versions the write checks; `keep`: keep the records
   * once committed.
   */
  private async applyEffects(
    tx: Transaction,
    e: WriteEffects,
    keys: readonly string[],
    read: ReadonlyMap<string, StoredRecord>,
    unlocked: boolean,
    keep: boolean,
    commit: boolean,
    wantLogChanges: boolean,
  ): Promise<AppliedWrites> {
    // A record this batch created must not exist yet: if a concurrent
    // transaction created it first, the plain INSERT fails with a unique
    // violation and the batch is retried, now merging with that record
    // (an upsert here would silently overwrite it and log version 1 twice).
    const created = new Set(e.changes.filter((c) => c.created).map((c) => recordKeyString({ ...c, id: c.recordId })));
    const fresh: KeptRecord[] = [];
    const existing: KeptRecord[] = [];
    const json = stringifyOnce();
    e.records.forEach((record, i) => {
      const key = keys[i]!;
      const kept = { key, record, fields: json(record.fields), clocks: clocksJsonText(record.clocks) };
      (created.has(key) ? fresh : existing).push(kept);
    });
    if (e.tickets.length > 0) await writeTickets(await tx.connection(), e.tickets);
    if (e.ticketCloses.length > 0) await closeTickets(await tx.connection(), e.ticketCloses);
    // Records, keys and change rows in one statement (migrations 0007, 0011,
    // 0012); the change rows go last, under the sequencing lock.
    const rows = e.changes.map(toChangeRow);
    const docs = rows.map((r) => changeDocuments(r, json));
    const write: Statement = {
      text: APPLY_WRITES_SQL,
      values: [
        ...existingColumns(existing, read, unlocked),
        // Kept records merged from and left as they were: checked, not written.
        ...checkColumns(unlocked ? unwritten(read, keys) : []),
        fresh.length,
        ...recordColumns(fresh),
        ...keyEditColumns(e.keyRemovals),
        ...keyEditColumns(e.keyInserts),
        ...changeColumns(rows, docs),
        sequencingLockKey(this.sequencing),
      ],
    };
    // Idempotency rows go in after the change rows, still under the lock,
    // and in the same round trip as them and COMMIT: each finds the seq of
    // its change itself (seqs exist only once the rows are sequenced).
    const statements = e.applied.length > 0 ? [write, appliedInsert(e.applied, e.changes)] : [write];
    const [res] = commit ? await tx.commit(statements) : await tx.run(statements);
    if (keep) for (const k of [...fresh, ...existing]) this.cache.committed(k.key, k.record, k.fields.length + k.clocks.length);
    // Seqs ascend with the input (see sortedSeqs): sorted, they are the rows' seqs in order.
    const logged = (res!.rows as { seq: string; commit_time: Date }[])
      .map((r) => ({ seq: BigInt(r.seq), commitTime: r.commit_time }))
      .sort((a, b) => compareSeqs(a.seq, b.seq));
    const seqs = logged.map((w) => w.seq);
    const logChanges = wantLogChanges
      ? rows.map((r, i) => committedLogChange(r, e.changes[i]!, logged[i]!, docs[i]!.delta.length + docs[i]!.image.length + docs[i]!.prior.length))
      : [];
    return { seqs, logChanges };
  }

  private query<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    return this.run(() => this.pool.query<R>(sql, params));
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      throw toStoreError(e);
    }
  }
}

/**
 * Holders of identity values ($1-$4: tenants, collections, fields, values
 * as lookupColumns gives them); record_id is null for a value nobody holds.
 * A correlated subquery, so each value is one probe of record_keys' primary
 * key (migration 0006) whatever the statistics say: as a join, the planner
 * misjudges the input's row count and, early in a bulk import, hashed the
 * whole table per batch.
 */
export const IDENTITY_LOOKUP_SQL = `
  SELECT k.tenant, k.collection, k.field, k.value,
         (SELECT rk.record_id FROM record_keys rk
           WHERE rk.tenant = k.tenant AND rk.collection = k.collection AND rk.field = k.field AND rk.value = k.value) AS record_id
    FROM ROWS FROM (unnest($1::text[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[])) AS k(tenant, collection, field, value)`;

interface IdentityRow {
  tenant: string;
  collection: string;
  field: string;
  value: string;
  record_id: string | null;
}

export function identityStatement(lookups: readonly IdentityLookup[]): Statement {
  return { text: IDENTITY_LOOKUP_SQL, values: lookupColumns(lookups) };
}

/**
 * Identity values as IDENTITY_LOOKUP_SQL and LOCK_RECORDS_SQL read them:
 * array parameters of tenants, collections, fields and values (each value as
 * its JSON text, as record_keys stores it).
 */
function lookupColumns(lookups: readonly IdentityLookup[]): string[] {
  return [
    arrayLiteral(lookups.map((l) => l.tenant)),
    arrayLiteral(lookups.map((l) => l.collection)),
    arrayLiteral(lookups.map((l) => l.field)),
    arrayLiteral(lookups.map((l) => JSON.stringify(l.value))),
  ];
}

function holdersOf(rows: readonly IdentityRow[]): Map<string, string> {
  const holders = new Map<string, string>();
  for (const r of rows) if (r.record_id !== null) holders.set(`${r.tenant}\u0000${r.collection}\u0000${r.field}\u0000${r.value}`, r.record_id);
  return holders;
}

interface AppliedRow {
  tenant: string;
  client_mutation_id: string;
  result: StoredResultJson;
  /** Null for a mutation that changed nothing, and for rows written before migration 0010 (their result holds the cursor). */
  seq: string | null;
}

export function appliedStatement(ids: readonly { tenant: string; clientMutationId: string }[]): Statement {
  return {
    text: `SELECT a.* FROM ROWS FROM (unnest($1::text[]), unnest($2::text[])) AS k(tenant, cmid) CROSS JOIN LATERAL
             (SELECT tenant, client_mutation_id, result, seq FROM applied_mutations
               WHERE tenant = k.tenant AND client_mutation_id = k.cmid) a`,
    values: [arrayLiteral(ids.map((i) => i.tenant)), arrayLiteral(ids.map((i) => i.clientMutationId))],
  };
}

function appliedOf(rows: readonly AppliedRow[], cursorOf: (seq: bigint) => string): Map<string, EarlierResult> {
  return new Map(
    rows.map((r) => {
      const { fp, ...stored } = r.result;
      const result = fromResultJson(stored);
      if (r.seq !== null) result.cursor = cursorOf(BigInt(r.seq));
      return [`${r.tenant}\u0000${r.client_mutation_id}`, { result, fingerprint: fp ?? null }];
    }),
  );
}

/**
 * Idempotency rows of a batch, inserted after its change rows in the same
 * transaction: each finds the seq of the change it made by record and
 * version, walking the record's changes back from its newest (the one it
 * looks for is among the last few). Parameters as appliedInsert gives them:
 * tenants, client_mutation_ids, results (JSON joined by U+001E), and the
 * collection, record id and new version of each one's change (NULL: none).
 */
export const APPLIED_INSERT_SQL = `
  INSERT INTO applied_mutations (tenant, client_mutation_id, result, seq)
  SELECT x.tenant, x.cmid, x.result,
         (SELECT c.seq FROM changes c
           WHERE c.tenant = x.tenant AND c.collection = x.collection AND c.record_id = x.rid AND c.new_version = x.nv
           ORDER BY c.seq DESC LIMIT 1)
    FROM ROWS FROM (unnest($1::text[]), unnest($2::text[]), unnest(string_to_array($3, E'\x1e')::json[]),
                    unnest($4::text[]), unnest($5::text[]), unnest($6::bigint[])) AS x(tenant, cmid, result, collection, rid, nv)`;

export function appliedInsert(applied: readonly AppliedMutation[], changes: readonly ChangeDraft[]): Statement {
  const made = applied.map((a) => (a.changeIndex === null ? null : changes[a.changeIndex]!));
  return {
    text: APPLIED_INSERT_SQL,
    values: [
      arrayLiteral(applied.map((a) => a.tenant)),
      arrayLiteral(applied.map((a) => a.clientMutationId)),
      applied.map((a) => JSON.stringify({ ...toResultJson(a.result), fp: a.fingerprint } satisfies StoredResultJson)).join(DOCUMENT_SEPARATOR),
      arrayLiteral(made.map((c) => c?.collection ?? null)),
      arrayLiteral(made.map((c) => c?.recordId ?? null)),
      arrayLiteral(made.map((c) => c?.newVersion ?? null)),
    ],
  };
}

/**
 * Locks records by id ($1-$3: tenants, collections, ids) and by identity
 * value ($4-$7, as lookupColumns gives them: whoever holds it now),
 * one at a time in one global order (every batch locks through here, so two
 * batches never wait for each other in a cycle). Each key is a primary-key
 * probe: holders through a correlated subquery as in IDENTITY_LOOKUP_SQL,
 * records through a LATERAL subquery, which FOR UPDATE keeps from being
 * flattened into a join.
 */
export const LOCK_RECORDS_SQL = `
  SELECT r.* FROM (
      SELECT * FROM (
          SELECT k.tenant, k.collection, k.id FROM ROWS FROM (unnest($1::text[]), unnest($2::text[]), unnest($3::text[])) AS k(tenant, collection, id)
          UNION
          SELECT h.tenant, h.collection,
                 (SELECT rk.record_id FROM record_keys rk
                   WHERE rk.tenant = h.tenant AND rk.collection = h.collection AND rk.field = h.field AND rk.value = h.value)
            FROM ROWS FROM (unnest($4::text[]), unnest($5::text[]), unnest($6::text[]), unnest($7::text[])) AS h(tenant, collection, field, value)
        ) u
       ORDER BY tenant COLLATE "C", collection COLLATE "C", id COLLATE "C"
    ) k
    CROSS JOIN LATERAL
      (SELECT ${RECORD_COLUMNS} FROM records
        WHERE tenant = k.tenant AND collection = k.collection AND id = k.id FOR UPDATE) r`;

export function lockStatement(ids: readonly RecordKey[], holders: readonly IdentityLookup[]): Statement {
  return { text: LOCK_RECORDS_SQL, values: [...recordKeyColumns(ids), ...lookupColumns(holders)] };
}

/** Record keys as array parameters: tenants, collections, ids. */
function recordKeyColumns(keys: readonly RecordKey[]): string[] {
  return [arrayLiteral(keys.map((k) => k.tenant)), arrayLiteral(keys.map((k) => k.collection)), arrayLiteral(keys.map((k) => k.id))];
}

const KEY_EDIT_COLUMN_COUNT = 5;

/**
 * Key-table edits as deltamesh_apply_writes_columns reads them (migration
 * 0011): tenants, collections, fields, values (JSON text), record ids. All
 * null for none.
 */
function keyEditColumns(keys: readonly KeyEdit[]): SqlValue[] {
  if (keys.length === 0) return Array<null>(KEY_EDIT_COLUMN_COUNT).fill(null);
  return [...lookupColumns(keys), arrayLiteral(keys.map((k) => k.recordId))];
}

/** A ListQuery's page (also read inside change-stream snapshots, ./change-reader.ts). */
export async function listRecords(db: Pool | PoolClient, q: ListQuery): Promise<StoredRecord[]> {
  const params: unknown[] = [q.tenant, q.collection, q.afterId, q.limit];
  let where = "tenant = $1 AND collection = $2 AND id > $3";
  if (!q.includeDeleted) where += " AND NOT deleted";
  if (Object.keys(q.equals).length > 0) {
    params.push(JSON.stringify(q.equals));
    where += ` AND fields @> $${params.length}::jsonb`;
    // Containment (which the GIN index serves) is equality only for scalars:
    // a list or object value must also match whole, as stream filters do.
    for (const [field, value] of Object.entries(q.equals)) {
      if (typeof value !== "object" || value === null) continue;
      params.push(field, JSON.stringify(value));
      where += ` AND fields -> $${params.length - 1}::text = $${params.length}::jsonb`;
    }
  }
  const res = await db.query<RecordRow>(`SELECT ${RECORD_COLUMNS} FROM records WHERE ${where} ORDER BY id LIMIT $4`, params);
  return res.rows.map(toRecord);
}

/**
 * Joins JSON documents into one parameter that deltamesh_apply_writes_columns
 * splits back (migration 0011): no JSON text holds U+001E raw.
 */
const DOCUMENT_SEPARATOR = "\u001e";


/**
 * JSON.stringify that serializes each object once per batch: a record's
 * fields are the same object as its last change's image.
 */
function stringifyOnce(): (doc: object) => string {
  const done = new Map<object, string>();
  return (doc) => {
    let text = done.get(doc);
    if (text === undefined) {
      text = JSON.stringify(doc);
      done.set(doc, text);
    }
    return text;
  };
}

/** A record a batch writes, with its key and its fields and clocks serialized. */
interface KeptRecord {
  key: string;
  record: StoredRecord;
  fields: string;
  clocks: string;
}

const RECORD_COLUMN_COUNT = 9;

/**
 * Fresh records as deltamesh_apply_writes_columns reads them (migration
 * 0011): tenants, collections, ids, versions, deleted flags, create and
 * update times (epoch milliseconds, which serialize several times faster
 * than a Date's ISO text), then fields and clocks as joined documents. All
 * null for none.
 */
function recordColumns(records: readonly KeptRecord[]): SqlValue[] {
  if (records.length === 0) return Array<null>(RECORD_COLUMN_COUNT).fill(null);
  return [
    arrayLiteral(records.map((r) => r.record.tenant)),
    arrayLiteral(records.map((r) => r.record.collection)),
    arrayLiteral(records.map((r) => r.record.id)),
    arrayLiteral(records.map((r) => r.record.version)),
    arrayLiteral(records.map((r) => r.record.deleted)),
    arrayLiteral(records.map((r) => r.record.createTime.getTime())),
    arrayLiteral(records.map((r) => r.record.updateTime.getTime())),
    records.map((r) => r.fields).join(DOCUMENT_SEPARATOR),
    records.map((r) => r.clocks).join(DOCUMENT_SEPARATOR),
  ];
}

const EXISTING_COLUMN_COUNT = 10;

/**
 * Existing records as deltamesh_apply_writes_checked updates them (migration
 * 0012): tenants, collections, ids, the version and update time (epoch ms)
 * the batch merged from (the update time only for records it did not lock:
 * `unlocked`), then the new versions, deleted flags, update times, fields and
 * clocks. All null for none.
 */
function existingColumns(records: readonly KeptRecord[], read: ReadonlyMap<string, StoredRecord>, unlocked: boolean): SqlValue[] {
  if (records.length === 0) return Array<null>(EXISTING_COLUMN_COUNT).fill(null);
  // Every existing record was read (locked or kept); a missing one fails the check.
  const before = records.map((r) => read.get(r.key));
  return [
    arrayLiteral(records.map((r) => r.record.tenant)),
    arrayLiteral(records.map((r) => r.record.collection)),
    arrayLiteral(records.map((r) => r.record.id)),
    arrayLiteral(before.map((r) => r?.version ?? null)),
    arrayLiteral(before.map((r) => (unlocked ? (r?.updateTime.getTime() ?? null) : null))),
    arrayLiteral(records.map((r) => r.record.version)),
    arrayLiteral(records.map((r) => r.record.deleted)),
    arrayLiteral(records.map((r) => r.record.updateTime.getTime())),
    records.map((r) => r.fields).join(DOCUMENT_SEPARATOR),
    records.map((r) => r.clocks).join(DOCUMENT_SEPARATOR),
  ];
}

/** The records of `read` not among `keys`. */
function unwritten(read: ReadonlyMap<string, StoredRecord>, keys: readonly string[]): StoredRecord[] {
  const writing = new Set(keys);
  return [...read].filter(([k]) => !writing.has(k)).map(([, r]) => r);
}

const CHECK_COLUMN_COUNT = 5;

/**
 * Kept records a batch merged from and does not write, as
 * deltamesh_apply_writes_checked checks them (migration 0012): tenants,
 * collections, ids, versions, update times. All null for none.
 */
function checkColumns(records: readonly StoredRecord[]): SqlValue[] {
  if (records.length === 0) return Array<null>(CHECK_COLUMN_COUNT).fill(null);
  return [
    ...recordKeyColumns(records),
    arrayLiteral(records.map((r) => r.version)),
    arrayLiteral(records.map((r) => r.updateTime.getTime())),
  ];
}

const CHANGE_COLUMN_COUNT = 14;

interface ChangeDocuments {
  delta: string;
  image: string;
  prior: string;
}

/**
 * Change rows as deltamesh_apply_writes_columns reads them (migration 0011):
 * eleven scalar columns, then deltas, images and priors as joined documents.
 * All null for none.
 */
function changeColumns(rows: readonly ChangeRow[], docs: readonly ChangeDocuments[]): SqlValue[] {
  if (rows.length === 0) return Array<null>(CHANGE_COLUMN_COUNT).fill(null);
  return [
    arrayLiteral(rows.map((r) => r.tenant)),
    arrayLiteral(rows.map((r) => r.collection)),
    arrayLiteral(rows.map((r) => r.recordId)),
    arrayLiteral(rows.map((r) => r.oldVersion)),
    arrayLiteral(rows.map((r) => r.newVersion)),
    arrayLiteral(rows.map((r) => r.created)),
    arrayLiteral(rows.map((r) => r.deleted)),
    arrayLiteral(rows.map((r) => r.actor)),
    arrayLiteral(rows.map((r) => r.source)),
    arrayLiteral(rows.map((r) => r.device)),
    arrayLiteral(rows.map((r) => r.clientMutationId)),
    docs.map((d) => d.delta).join(DOCUMENT_SEPARATOR),
    docs.map((d) => d.image).join(DOCUMENT_SEPARATOR),
    docs.map((d) => d.prior).join(DOCUMENT_SEPARATOR),
  ];
}

/**
 * The write of a batch (migration 0012): the existing records, the records
 * to check, the fresh-record count, the fresh records, then the key and
 * change columns.
 */
const APPLY_WRITES_PARAMS = EXISTING_COLUMN_COUNT + CHECK_COLUMN_COUNT + 1 + RECORD_COLUMN_COUNT + 2 * KEY_EDIT_COLUMN_COUNT + CHANGE_COLUMN_COUNT + 1;
const APPLY_WRITES_SQL = `SELECT seq, commit_time FROM deltamesh_apply_writes_checked(${Array.from({ length: APPLY_WRITES_PARAMS }, (_, i) => `$${i + 1}`).join(", ")})`;

/** A change row's JSON documents, serialized. */
function changeDocuments(r: ChangeRow, json: (doc: object) => string): ChangeDocuments {
  return { delta: JSON.stringify(r.delta), image: r.image ? json(r.image) : "null", prior: r.prior ? json(r.prior) : "null" };
}

function toChangeRow(c: ChangeDraft): ChangeRow {
  const names = Object.keys(c.clocks);
  const first = names.length > 0 ? c.clocks[names[0]!]! : undefined;
  const shared =
    first !== undefined &&
    names.every((n) => {
      const k = c.clocks[n]!;
      return k.version === c.newVersion && k.hlc === first.hlc && k.source === c.source && k.actor === c.actor && k.device === c.device;
    });
  const delta: DeltaJson = {
    set: c.set,
    cleared: c.cleared,
    ...(shared ? { h: first.hlc.toString(), k: names } : names.length > 0 ? { clocks: clocksToJson(c.clocks) } : {}),
    decisions: c.decisions.map(outcomeToJson),
  };
  const { image, prior } = changeImage(c.fieldsBefore, c.fieldsAfter, c.set, c.cleared);
  // Named one by one: spreading the whole draft cost as much as serializing the row.
  return {
    tenant: c.tenant,
    collection: c.collection,
    recordId: c.recordId,
    oldVersion: c.oldVersion,
    newVersion: c.newVersion,
    delta,
    created: c.created,
    deleted: c.deleted,
    actor: c.actor,
    source: c.source,
    device: c.device,
    clientMutationId: c.clientMutationId,
    image,
    prior,
  };
}

/**
 * A change row this node just wrote, as change streams read it from the log
 * (services/store/change-reader.ts), from what the write path holds instead
 * of reading it back: the same values (the row's JSON round-trips to them),
 * with its JSON's length as its size.
 */
function committedLogChange(row: ChangeRow, c: ChangeDraft, written: { seq: bigint; commitTime: Date }, size: number): LogChange {
  const image = (row.image ?? null) as Record<string, StoredValue> | null;
  const prior = (row.prior ?? null) as Record<string, StoredValue> | null;
  return {
    seq: written.seq,
    tenant: c.tenant,
    collection: c.collection,
    recordId: c.recordId,
    oldVersion: c.oldVersion,
    newVersion: c.newVersion,
    set: c.set,
    cleared: c.cleared,
    clocks: c.clocks,
    created: c.created,
    deleted: c.deleted,
    commitTime: written.commitTime,
    image: () => image,
    prior: () => prior,
    size,
  };
}

function outcomeToJson(o: FieldOutcome): OutcomeJson {
  const { winner, ...rest } = o;
  return winner ? { ...rest, winner: clockToJson(winner) } : rest;
}

function outcomeFromJson(o: OutcomeJson): FieldOutcome {
  const { winner, ...rest } = o;
  return winner ? { ...rest, winner: clockFromJson(winner) } : rest;
}

type ResultJson = Omit<MutationResult, "fields"> & { fields: OutcomeJson[] };

/** A result as applied_mutations stores it, with its mutation's fingerprint. */
type StoredResultJson = ResultJson & { fp?: string };

function toResultJson(r: MutationResult): ResultJson {
  return { ...r, fields: r.fields.map(outcomeToJson) };
}

function fromResultJson(r: ResultJson): MutationResult {
  return { ...r, fields: r.fields.map(outcomeFromJson) };
}

export function toRecord(r: RecordRow): StoredRecord {
  return {
    tenant: r.tenant,
    collection: r.collection,
    id: r.id,
    version: Number(r.version),
    fields: r.fields,
    clocks: clocksFromJson(r.clocks),
    deleted: r.deleted,
    createTime: r.create_time,
    updateTime: r.update_time,
  };
}

function toChange(r: ChangeRowDb): ChangeEntry {
  return {
    seq: BigInt(r.seq),
    tenant: r.tenant,
    collection: r.collection,
    recordId: r.record_id,
    oldVersion: Number(r.old_version),
    newVersion: Number(r.new_version),
    set: r.delta.set,
    cleared: r.delta.cleared,
    clocks: deltaClocksFromJson(r.delta, { newVersion: Number(r.new_version), source: r.source, actor: r.actor, device: r.device }),
    decisions: r.delta.decisions.map(outcomeFromJson),
    created: r.created,
    deleted: r.deleted,
    actor: r.actor,
    source: r.source,
    device: r.device,
    clientMutationId: r.client_mutation_id,
    commitTime: r.commit_time,
  };
}
