// SQL of the leader's housekeeping duties, each one bounded batch inside a
// fenced transaction (./fencing.ts): change-log retention and its floor,
// conflict-ticket expiry, and purges of idempotency results and old duty runs.
//
// The change-log floor (contract with the change streams): table
// `deltamesh_meta`, key `change_log_floor`, value the highest `seq` retention
// has deleted, as decimal text; an absent row means 0. Every row above the
// floor still exists, so a cursor at seq c can resume iff c >= floor; a lower
// one is CURSOR_EXPIRED. Retention deletes only a prefix of the log in seq
// order and raises the floor in the same transaction.
//
// Ages are measured by the database's clock (one clock for every node), as
// "older than `ageMs` milliseconds".
import type { Pool, PoolClient } from "pg";
import type { DutyWork } from "./fencing.js";
import { toStoreError } from "./pg-errors.js";

export const CHANGE_LOG_FLOOR_KEY = "change_log_floor";

const CUTOFF = "(clock_timestamp() - $1::bigint * interval '1 millisecond')";

/**
 * Deletes the oldest changes committed more than `ageMs` ago, at most `batch` rows,
 * stopping at the first row still inside the window (seq order is commit
 * order, so this deletes a prefix of the log), and raises the floor to the
 * highest seq deleted.
 */
export async function deleteExpiredChanges(client: PoolClient, ageMs: number, batch: number): Promise<DutyWork<{ deleted: number; floor: bigint }>> {
  const res = await client.query<{ deleted: string; upto: string | null }>(
    `WITH head AS (
       SELECT seq, commit_time FROM changes ORDER BY seq LIMIT $2
     ), cut AS (
       SELECT coalesce((SELECT min(seq) - 1 FROM head WHERE commit_time >= ${CUTOFF}), (SELECT max(seq) FROM head)) AS upto
     ), gone AS (
       DELETE FROM changes WHERE seq <= (SELECT upto FROM cut) RETURNING seq
     )
     SELECT count(*) AS deleted, max(seq) AS upto FROM gone`,
    [ageMs, batch],
  );
  const deleted = Number(res.rows[0]?.deleted ?? 0);
  const upto = res.rows[0]?.upto;
  if (deleted === 0 || upto === null || upto === undefined) {
    return { affected: 0, value: { deleted: 0, floor: await readFloor(client) } };
  }
  const floor = await client.query<{ value: string }>(
    `INSERT INTO deltamesh_meta (key, value) VALUES ($1, $2)
     ON CONFLICT (key) DO UPDATE SET value = greatest(deltamesh_meta.value::bigint, EXCLUDED.value::bigint)::text
     RETURNING value`,
    [CHANGE_LOG_FLOOR_KEY, upto],
  );
  const value = BigInt(floor.rows[0]!.value);
  return { affected: deleted, detail: { floor: value.toString(), age_ms: ageMs }, value: { deleted, floor: value } };
}

/** Why an expired ticket was closed, recorded in its resolution. */
export const TICKET_EXPIRY_ACTOR = "deltamesh:ticket-expiry";

/** Dismisses at most `batch` open conflict tickets opened more than `ageMs` ago, recording why in their resolution. */
export async function expireOpenTickets(client: PoolClient, ageMs: number, batch: number): Promise<DutyWork<number>> {
  const res = await client.query(
    `UPDATE conflict_tickets t
        SET status = 'dismissed',
            resolution = jsonb_build_object('by', $3::text, 'at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                                            'reason', 'EXPIRED', 'ttl_ms', $1::bigint),
            update_time = date_trunc('milliseconds', now())
       FROM (SELECT tenant, id FROM conflict_tickets
              WHERE status = 'open' AND create_time < ${CUTOFF}
              ORDER BY create_time LIMIT $2 FOR UPDATE SKIP LOCKED) old
      WHERE t.tenant = old.tenant AND t.id = old.id AND t.status = 'open'`,
    [ageMs, batch, TICKET_EXPIRY_ACTOR],
  );
  const n = res.rowCount ?? 0;
  return { affected: n, detail: { age_ms: ageMs }, value: n };
}

/** Deletes at most `batch` idempotency results recorded more than `ageMs` ago: a retry after that is a new write. */
export async function purgeAppliedMutations(client: PoolClient, ageMs: number, batch: number): Promise<DutyWork<number>> {
  const res = await client.query(
    `DELETE FROM applied_mutations a
      USING (SELECT tenant, client_mutation_id FROM applied_mutations WHERE create_time < ${CUTOFF}
              ORDER BY create_time LIMIT $2 FOR UPDATE SKIP LOCKED) old
      WHERE a.tenant = old.tenant AND a.client_mutation_id = old.client_mutation_id`,
    [ageMs, batch],
  );
  const n = res.rowCount ?? 0;
  return { affected: n, detail: { age_ms: ageMs }, value: n };
}

/** Deletes at most `batch` duty records written more than `ageMs` ago (term claims are kept). */
export async function purgeDutyRuns(client: PoolClient, ageMs: number, batch: number): Promise<DutyWork<number>> {
  const res = await client.query(
    `DELETE FROM duty_runs WHERE id IN (SELECT id FROM duty_runs WHERE run_at < ${CUTOFF} AND duty <> 'claim' ORDER BY id LIMIT $2)`,
    [ageMs, batch],
  );
  const n = res.rowCount ?? 0;
  return { affected: n, detail: { age_ms: ageMs }, value: n };
}

async function readFloor(db: Pool | PoolClient): Promise<bigint> {
  const res = await db.query<{ value: string }>("SELECT value FROM deltamesh_meta WHERE key = $1", [CHANGE_LOG_FLOOR_KEY]);
  return BigInt(res.rows[0]?.value ?? "0");
}

/** The change log's bounds: `tail` the highest committed seq (0 when empty), `floor` as above. */
export async function changeLogBounds(pool: Pool): Promise<{ tail: bigint; floor: bigint }> {
  try {
    const [tail, floor] = await Promise.all([
      pool.query<{ tail: string | null }>("SELECT max(seq) AS tail FROM changes"),
      readFloor(pool),
    ]);
    // An emptied log still has its floor as its tail.
    const t = BigInt(tail.rows[0]?.tail ?? "0");
    return { tail: t > floor ? t : floor, floor };
  } catch (e) {
    throw toStoreError(e);
  }
}
