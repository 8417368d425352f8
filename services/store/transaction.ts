// Transactions on a pooled connection: BEGIN, the work, COMMIT; ROLLBACK
// on any error (and the connection discarded if even that fails).
import pg from "pg";
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
 * (see `Pipeline`). On a loaded machine every message to PostgreSQL costs
 * the sender 0.1–0.3 ms of CPU in the socket write and waits for another
 * process to be scheduled, so a small write batch paying 2 messages instead
 * of 5 is most of its cost.
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
    const all = [...(begin ? [BEGIN] : []), ...statements, ...(commit ? [COMMIT] : [])];
    const results = await runPipeline(this.client, all);
    if (commit) this.ended = true;
    return results.slice(begin ? 1 : 0, (begin ? 1 : 0) + statements.length);
  }
}

const BEGIN: Statement = { text: "BEGIN", values: [] };
const COMMIT: Statement = { text: "COMMIT", values: [] };

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

/** Runs the statements as one Pipeline; resolves with one result per statement. */
export function runPipeline(client: PoolClient, statements: readonly Statement[]): Promise<QueryResult[]> {
  return new Promise((resolve, reject) => {
    client.query(
      new Pipeline(statements, (err, results) => {
        if (err) reject(err);
        else resolve(Array.isArray(results) ? results : [results!]);
      }),
    );
  });
}

type PipelineCallback = (err: Error | null, results?: QueryResult | QueryResult[]) => void;

/**
 * Statements sent as one message: each as Parse, Bind, Describe and Execute
 * of the extended protocol, with a single Sync after the last, so PostgreSQL
 * runs them in order and, once one fails, skips the rest. Parameters travel
 * as parameters (never spliced into the SQL text, which PostgreSQL's log
 * would show with an error). pg's Query collects one result per statement,
 * as it does for a multi-statement simple query.
 */
class Pipeline extends pg.Query {
  constructor(
    private readonly statements: readonly Statement[],
    callback: PipelineCallback,
  ) {
    // A callback rather than events: it is how pg's Query reports a result,
    // and how OpenTelemetry's pg instrumentation learns when a query ended.
    super({ text: statements.map((s) => s.text).join(";\n"), callback } as pg.QueryConfig);
  }

  override submit = (connection: pg.Connection): void => {
    // Corked: the messages leave in one write.
    connection.stream.cork();
    try {
      for (const s of this.statements) {
        connection.parse({ text: s.text, name: "", types: [] }, true);
        connection.bind({ values: s.values.map(wireValue) }, true);
        connection.describe({ type: "P", name: "" }, true);
        connection.execute({ portal: "" }, true);
      }
      connection.sync();
    } finally {
      connection.stream.uncork();
    }
  };
}

/**
 * An array parameter in PostgreSQL's text form (`{"a","b"}`, `{1,2}`,
 * `{t,f}`, `{NULL}`): strings quoted, their backslashes and double quotes
 * escaped, so the text "NULL" stays text.
 */
export function arrayLiteral(values: readonly (string | number | boolean | null)[]): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    const v = values[i] ?? null;
    if (i > 0) out += ",";
    if (v === null) out += "NULL";
    else if (typeof v === "string") out += `"${NEEDS_ESCAPE.test(v) ? v.replace(ESCAPED, "\\$&") : v}"`;
    else if (typeof v === "boolean") out += v ? "t" : "f";
    else out += String(v);
  }
  return `${out}}`;
}

const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/** A parameter in the text format PostgreSQL parses for the parameter's type. */
function wireValue(v: SqlValue): string | null {
  return v === null ? null : String(v);
}
