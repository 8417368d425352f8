// Rows the cluster tests plant directly in the database: changes, tickets and
// idempotency results of a given age, for the leader's duties to find.
import type pg from "pg";
import { SEQUENCING_LOCK_KEY } from "../../../services/store/sequencing.js";
import { inTransaction } from "../../../services/store/transaction.js";

/**
 * Inserts `n` change rows committed `ageMs` ago; returns their seqs. Under the
 * change-log sequencing lock, like every writer: no concurrent write can end
 * up below them uncommitted.
 */
export async function plantChanges(db: pg.Pool, n: number, ageMs: number, label = "old"): Promise<bigint[]> {
  return inTransaction(db, (c) => plantIn(c, n, ageMs, label));
}

/**
 * Lets two hours pass for the whole log: plants a few rows and ages every
 * change up to them, all under the sequencing lock (so no write in flight
 * lands below). Returns the seq retention must delete up to.
 */
export async function ageWholeLog(db: pg.Pool): Promise<bigint> {
  return inTransaction(db, async (c) => {
    const seqs = await plantIn(c, 5, 0, "aged");
    const last = seqs[seqs.length - 1]!;
    await c.query("UPDATE changes SET commit_time = commit_time - interval '2 hours' WHERE seq <= $1", [last.toString()]);
    return last;
  });
}

async function plantIn(c: pg.PoolClient, n: number, ageMs: number, label: string): Promise<bigint[]> {
  await c.query("SELECT pg_advisory_xact_lock($1)", [SEQUENCING_LOCK_KEY]);
  const res = await c.query<{ seq: string }>(
    `INSERT INTO changes (tenant, collection, record_id, old_version, new_version, delta, created, deleted,
                          actor, source, device, client_mutation_id, commit_time)
     SELECT '', 'customers', $3 || '-' || i, 0, 1, '{"set":{},"cleared":[],"clocks":{},"decisions":[]}', true, false,
            'test', 'test', 'test', $3 || '-' || i, clock_timestamp() - $2::bigint * interval '1 millisecond'
       FROM generate_series(1, $1) AS i
     RETURNING seq`,
    [n, ageMs, `${label}-${Math.random().toString(36).slice(2, 8)}`],
  );
  return res.rows.map((r) => BigInt(r.seq)).sort((a, b) => (a < b ? -1 : 1));
}

export async function plantTicket(db: pg.Pool, id: string, ageMs: number): Promise<void> {
  await db.query(
    `INSERT INTO conflict_tickets (tenant, id, collection, record_id, field, status, field_version, candidates, create_time, update_time)
     VALUES ('', $1, 'customers', $1, 'id_number', 'open', 1, '[]', clock_timestamp() - $2::bigint * interval '1 millisecond', now())`,
    [id, ageMs],
  );
}

export async function plantAppliedMutation(db: pg.Pool, id: string, ageMs: number): Promise<void> {
  await db.query(
    `INSERT INTO applied_mutations (tenant, client_mutation_id, result, create_time)
     VALUES ('', $1, '{}', clock_timestamp() - $2::bigint * interval '1 millisecond')`,
    [id, ageMs],
  );
}

export async function count(db: pg.Pool, sql: string, params: unknown[] = []): Promise<number> {
  const res = await db.query<{ n: string }>(sql, params);
  return Number(res.rows[0]!.n);
}

export async function floorOf(db: pg.Pool): Promise<bigint> {
  const res = await db.query<{ value: string }>("SELECT value FROM deltamesh_meta WHERE key = 'change_log_floor'");
  return BigInt(res.rows[0]?.value ?? "0");
}
