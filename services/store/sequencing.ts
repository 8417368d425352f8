// Change-log sequencing: why a tailer reading `seq > cursor` never skips a row.
//
// A bigserial is assigned when the row is inserted, not when its transaction
// commits, so with naive inserts seq 7 can become visible while seq 6 is still
// in flight; a reader that has moved its cursor to 7 then never sees 6.
//
// We close that gap with a sequencing lock: each writing transaction takes one
// transaction-scoped advisory lock immediately before it inserts its change
// rows, and holds it until COMMIT. PostgreSQL releases a transaction's locks
// only after the commit is durable and visible, so the next writer draws its
// seqs only after every lower seq is visible (or rolled back, leaving a gap
// that nobody waits for). Seq order is therefore commit order and `seq >
// cursor` is a safe read. Group commit makes the cost one lock hand-off per
// batch of mutations, not per mutation.
//
// Alternatives considered: reading below the pg_snapshot_xmin watermark stalls
// every stream behind any long transaction in the database, and ordering by
// xid is not commit order; logical decoding needs replication privileges and
// slot management that a first-run embedded deployment should not need.
import type { PoolClient } from "pg";

/** Arbitrary constant naming the change-log sequencing lock. */
export const SEQUENCING_LOCK_KEY = 0x64_6d_73_71; // "dmsq"

/**
 * "commit-lock": the scheme above. "none": plain inserts, kept only so the
 * ordering race test can show that it loses rows.
 */
export type SequencingMode = "commit-lock" | "none";

export interface ChangeRow {
  tenant: string;
  collection: string;
  recordId: string;
  oldVersion: number;
  newVersion: number;
  delta: unknown;
  created: boolean;
  deleted: boolean;
  actor: string;
  source: string;
  device: string;
  clientMutationId: string;
  /** Record fields after the change, and before-values of the fields it touched (see migration 0003). */
  image?: unknown;
  prior?: unknown;
}

/** Change rows as the one JSON parameter the log's INSERT reads (see migration 0007 for its shape). */
export function changeRowsJson(rows: readonly ChangeRow[]): string {
  return `[${rows.map(changeRowJson).join(",")}]`;
}

/**
 * One change row of that parameter. (The write path passes its change rows
 * column by column instead: services/store/record-store.ts, migration 0011.)
 */
function changeRowJson(r: ChangeRow): string {
  return JSON.stringify({
    t: r.tenant,
    c: r.collection,
    r: r.recordId,
    ov: r.oldVersion,
    nv: r.newVersion,
    d: r.delta,
    cr: r.created,
    de: r.deleted,
    a: r.actor,
    s: r.source,
    dv: r.device,
    m: r.clientMutationId,
    im: r.image ?? null,
    pr: r.prior ?? null,
  });
}

/** The sequencing lock's key for a mode (null: no lock). */
export function sequencingLockKey(mode: SequencingMode): number | null {
  return mode === "commit-lock" ? SEQUENCING_LOCK_KEY : null;
}

/**
 * Appends change rows inside the caller's open transaction and returns their
 * seqs in input order. Must be the transaction's last write before COMMIT, so
 * the sequencing lock is held as briefly as possible. (The write path appends
 * with its other writes in one call of deltamesh_apply_writes, which takes the
 * lock the same way; this is for tools and tests that append rows alone.)
 */
export async function appendChanges(client: PoolClient, rows: readonly ChangeRow[], mode: SequencingMode): Promise<bigint[]> {
  if (rows.length === 0) return [];
  const res = await client.query<{ seq: string }>("SELECT seq FROM deltamesh_apply_writes(NULL, NULL, NULL, NULL, $1::json, $2) AS seq", [
    changeRowsJson(rows),
    sequencingLockKey(mode),
  ]);
  return sortedSeqs(res.rows);
}

/**
 * INSERT ... SELECT ... ORDER BY draws nextval in that order, so seqs ascend
 * with the input; sorted to be independent of RETURNING's row order.
 */
export function sortedSeqs(rows: readonly { seq: string }[]): bigint[] {
  return rows.map((r) => BigInt(r.seq)).sort(compareSeqs);
}

export function compareSeqs(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
