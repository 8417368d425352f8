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

/**
 * Appends change rows inside the caller's open transaction and returns their
 * seqs in input order. Must be the transaction's last write before COMMIT, so
 * the sequencing lock is held as briefly as possible.
 */
export async function appendChanges(client: PoolClient, rows: readonly ChangeRow[], mode: SequencingMode): Promise<bigint[]> {
  if (rows.length === 0) return [];
  if (mode === "commit-lock") await client.query("SELECT pg_advisory_xact_lock($1)", [SEQUENCING_LOCK_KEY]);
  const res = await client.query<{ seq: string }>(
    `INSERT INTO changes (tenant, collection, record_id, old_version, new_version, delta, created, deleted,
                          actor, source, device, client_mutation_id, image, prior)
     SELECT t, c, r, ov, nv, d, cr, de, a, s, dv, m, im, pr
       FROM ROWS FROM (json_to_recordset($1::json) AS (t text, c text, r text, ov bigint, nv bigint, d json,
                       cr boolean, de boolean, a text, s text, dv text, m text, im json, pr json))
            WITH ORDINALITY AS u(t, c, r, ov, nv, d, cr, de, a, s, dv, m, im, pr, ord)
      ORDER BY ord
     RETURNING seq`,
    [
      // One JSON parameter: native JSON.stringify instead of the driver's
      // per-element array escaping, the write path's biggest CPU cost.
      JSON.stringify(
        rows.map((r) => ({
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
        })),
      ),
    ],
  );
  // INSERT ... SELECT ... ORDER BY draws nextval in that order, so seqs ascend
  // with the input; sort to be independent of RETURNING's row order.
  return res.rows.map((r) => BigInt(r.seq)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
