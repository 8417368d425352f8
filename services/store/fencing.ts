// Fenced transactions: how a leader duty's database writes carry the leader's
// term so that a deposed leader cannot act (see migrations/0005_cluster.sql).
//
// Each duty transaction starts by claiming its term on the `leader` fence row:
// the claim succeeds only when no higher term was ever claimed, and it keeps
// the row locked until COMMIT, so fenced transactions are serialized and a
// claim by a newer term waits for (or follows) every older one. Once the new
// leader's first claim committed, every later transaction of an older term is
// refused here and rolls back whole.
//
// The transaction is also bounded in time by the leader's remaining lease
// validity (statement, idle-in-transaction and, on PostgreSQL 17+, whole
// transaction timeouts): a leader frozen mid-transaction (SIGSTOP, a long GC
// pause, a partition) has its session cut by the server instead of holding
// the fence row and blocking its successor.
import type { Pool, PoolClient } from "pg";
import { DomainError } from "../platform/errors.js";
import { toStoreError } from "./pg-errors.js";
import { inTransaction } from "./transaction.js";

/** The fence row every leader duty claims. */
export const LEADER_FENCE = "leader";

export interface FenceToken {
  /** The leader's term (an etcd revision; 0 for a standalone node). */
  term: bigint;
  /** The node holding the term, recorded with its writes. */
  holder: string;
  /** How long the transaction may take at most (the leader's remaining lease validity). */
  budgetMs: number;
}

/** What a duty did inside its transaction; recorded in `duty_runs` when it changed anything. */
export interface DutyWork<T> {
  affected: number;
  detail?: Record<string, string | number | boolean>;
  value: T;
}

export function isFenceRejection(e: unknown): boolean {
  return e instanceof DomainError && e.reason === "LEADER_FENCED";
}

const serverVersions = new WeakMap<Pool, Promise<number>>();

function serverVersion(pool: Pool): Promise<number> {
  let v = serverVersions.get(pool);
  if (!v) {
    v = pool.query<{ v: string }>("SELECT current_setting('server_version_num') AS v").then((r) => Number(r.rows[0]!.v));
    v.catch(() => serverVersions.delete(pool));
    serverVersions.set(pool, v);
  }
  return v;
}

/**
 * Runs `work` in one transaction fenced by `token`. Every duty writes through
 * here; `duty` names it in `duty_runs` ("claim" always records a row, other
 * duties only when they affected rows).
 * @throws DomainError failed_precondition LEADER_FENCED when a higher term was claimed;
 *   store errors as toStoreError (a cut session included).
 */
export async function runFenced<T>(
  pool: Pool,
  token: FenceToken,
  duty: string,
  work: (client: PoolClient) => Promise<DutyWork<T>>,
): Promise<T> {
  const budget = Math.max(1, Math.floor(token.budgetMs));
  try {
    const version = await serverVersion(pool);
    return await inTransaction(pool, async (client) => {
      await client.query(
        `SELECT set_config('statement_timeout', $1, true), set_config('idle_in_transaction_session_timeout', $1, true)`,
        [String(budget)],
      );
      if (version >= 170000) await client.query("SELECT set_config('transaction_timeout', $1, true)", [String(budget)]);
      await claim(client, token);
      const done = await work(client);
      if (duty === "claim" || done.affected > 0) {
        await client.query("INSERT INTO duty_runs (term, holder, duty, affected, detail) VALUES ($1, $2, $3, $4, $5::jsonb)", [
          token.term.toString(),
          token.holder,
          duty,
          done.affected,
          JSON.stringify(done.detail ?? {}),
        ]);
      }
      return done.value;
    });
  } catch (e) {
    throw toStoreError(e);
  }
}

/** Claims the term on the fence row (locking it until the transaction ends), or throws LEADER_FENCED. */
async function claim(client: PoolClient, token: FenceToken): Promise<void> {
  const claimed = await client.query<{ term: string }>(
    `INSERT INTO leader_fence (name, term, holder) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE
        SET term = EXCLUDED.term, holder = EXCLUDED.holder,
            claimed_at = CASE WHEN leader_fence.term = EXCLUDED.term THEN leader_fence.claimed_at ELSE clock_timestamp() END
      WHERE leader_fence.term <= EXCLUDED.term
     RETURNING term`,
    [LEADER_FENCE, token.term.toString(), token.holder],
  );
  if (claimed.rowCount !== 0) return;
  const seen = await client.query<{ term: string; holder: string }>("SELECT term, holder FROM leader_fence WHERE name = $1", [LEADER_FENCE]);
  const row = seen.rows[0];
  throw new DomainError(
    "failed_precondition",
    `leader term ${token.term} is fenced off: the database has accepted term ${row?.term ?? "?"} (holder ${row?.holder ?? "?"})`,
    { reason: "LEADER_FENCED", metadata: { term: token.term.toString(), fenced_term: row?.term ?? "", fenced_holder: row?.holder ?? "" } },
  );
}

/** The fence as it stands: the highest term the database accepted, and its holder. */
export async function readFence(pool: Pool): Promise<{ term: bigint; holder: string; claimedAt: Date } | null> {
  try {
    const res = await pool.query<{ term: string; holder: string; claimed_at: Date }>(
      "SELECT term, holder, claimed_at FROM leader_fence WHERE name = $1",
      [LEADER_FENCE],
    );
    const row = res.rows[0];
    return row ? { term: BigInt(row.term), holder: row.holder, claimedAt: row.claimed_at } : null;
  } catch (e) {
    throw toStoreError(e);
  }
}
