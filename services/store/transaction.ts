// Transactions on a pooled connection: BEGIN, the work, COMMIT; ROLLBACK
// on any error (and the connection discarded if even that fails).
import type { Pool, PoolClient, QueryResult } from "pg";
import { toStoreError } from "./pg-errors.js";

/** Runs `work` in one transaction. A failure to connect is a store error; errors of `work` pass through. */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  return withConnection(pool, async (client) => {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  });
}

/**
 * Runs `work` on a checked-out connection and rolls back whatever it left
 * open if it throws (a ROLLBACK outside a transaction only draws a warning).
 */
async function withConnection<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect().catch((e: unknown) => {
    throw toStoreError(e);
  });
  let broken = false;
  // A session the server ends mid-transaction (a timeout, an admin) emits
  // 'error' on the checked-out client: the pending query fails anyway, and an
  // unheard 'error' event would crash the process.
  const lost = (): void => {
    broken = true;
  };
  client.on("error", lost);
  try {
    return await work(client);
  } catch (e) {
    try {
      await client.query("ROLLBACK");
    } catch {
      broken = true;
    }
    throw e;
  } finally {
    client.off("error", lost);
    client.release(broken);
  }
}

/** One SQL statement and its parameters ($1, $2… in `text`). */
export interface Statement {
  text: string;
  values: readonly SqlValue[];
}

export type SqlValue = string | number | bigint | boolean | null;

/**
 * A transaction that costs as few round trips as it can: BEGIN goes out with
 * its first statements and COMMIT with its last, each group as one message
 * (the simple query protocol, which is the one that takes several statements
 * at once; parameters are then inlined as literals, see `literal`). On a
 * loaded machine every message to PostgreSQL costs the sender 0.1–0.3 ms of
 * CPU in the socket write and waits for another process to be scheduled, so
 * a small write batch paying 2 messages instead of 5 is most of its cost.
 */
export class Transaction {
  private begun = false;
  private ended = false;

  constructor(private readonly client: PoolClient) {}

  get open(): boolean {
    return this.begun && !this.ended;
  }

  /** Runs the statements in one round trip; their results in order. */
  run(statements: readonly Statement[]): Promise<QueryResult[]> {
    return this.send(statements, false);
  }

  /** Runs the statements, then COMMIT, in one round trip. */
  commit(statements: readonly Statement[] = []): Promise<QueryResult[]> {
    return this.send(statements, true);
  }

  /** The connection, with the transaction begun, for SQL helpers that take a client. */
  async connection(): Promise<PoolClient> {
    if (!this.begun) await this.send([], false);
    return this.client;
  }

  private async send(statements: readonly Statement[], commit: boolean): Promise<QueryResult[]> {
    if (this.ended) throw new Error("the transaction has ended");
    const begin = !this.begun;
    this.begun = true;
    if (!begin && !commit && statements.length === 1) {
      // Nothing to merge: the extended protocol takes the parameters as they are.
      const s = statements[0]!;
      return [await this.client.query(s.text, [...s.values])];
    }
    const text = [...(begin ? ["BEGIN"] : []), ...statements.map(inline), ...(commit ? ["COMMIT"] : [])].join(";\n");
    const res = (await this.client.query(text)) as QueryResult | QueryResult[];
    if (commit) this.ended = true;
    const all = Array.isArray(res) ? res : [res];
    const first = begin ? 1 : 0;
    return all.slice(first, first + statements.length);
  }
}

/**
 * Runs `work` in a Transaction; commits (if `work` did not) when it returns,
 * rolls back when it throws. A failure to connect is a store error; errors of
 * `work` pass through.
 */
export async function withTransaction<T>(pool: Pool, work: (tx: Transaction) => Promise<T>): Promise<T> {
  return withConnection(pool, async (client) => {
    const tx = new Transaction(client);
    const result = await work(tx);
    if (tx.open) await tx.commit();
    return result;
  });
}

/** The statement with its parameters written in as SQL literals. */
export function inline(s: Statement): string {
  return s.text.replace(/\$(\d+)/g, (_, n: string) => {
    const i = Number(n) - 1;
    if (i >= s.values.length) throw new Error(`statement refers to $${n} but has ${s.values.length} parameters`);
    return literal(s.values[i]!);
  });
}

/**
 * A value as an SQL literal. Strings holding a backslash use the E'' form
 * with backslashes doubled, so the result does not depend on the server's
 * standard_conforming_strings; negative numbers are parenthesized so that no
 * neighbouring minus sign can turn them into a comment.
 */
export function literal(v: SqlValue): string {
  switch (typeof v) {
    case "string":
      if (v.includes("\u0000")) throw new Error("PostgreSQL text cannot hold a NUL character");
      return v.includes("\\") ? `E'${v.replace(/[\\']/g, "$&$&")}'` : `'${v.replace(/'/g, "''")}'`;
    case "number":
      if (!Number.isFinite(v)) throw new Error(`${v} has no SQL literal`);
      return v < 0 ? `(${v})` : String(v);
    case "bigint":
      return v < 0n ? `(${v})` : v.toString();
    case "boolean":
      return v ? "TRUE" : "FALSE";
    default:
      return "NULL";
  }
}
