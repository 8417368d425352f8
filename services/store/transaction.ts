// One transaction on a pooled connection: BEGIN, the work, COMMIT; ROLLBACK
// on any error (and the connection discarded if even that fails).
import type { Pool, PoolClient } from "pg";
import { toStoreError } from "./pg-errors.js";

/** Runs `work` in one transaction. A failure to connect is a store error; errors of `work` pass through. */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
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
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
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
