// Simulated change-log retention, as the cluster leader performs it: delete
// the changes up to a seq and raise the floor, in one transaction.
import pg from "pg";

export async function simulateRetention(databaseUrl: string, upToSeq: bigint): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query("BEGIN");
    await client.query("DELETE FROM changes WHERE seq <= $1", [upToSeq.toString()]);
    await client.query(
      `INSERT INTO deltamesh_meta (key, value) VALUES ('change_log_floor', $1)
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
      [upToSeq.toString()],
    );
    await client.query("COMMIT");
  } finally {
    await client.end();
  }
}

/** The highest committed change seq. */
export async function logTail(databaseUrl: string): Promise<bigint> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const res = await client.query<{ s: string | null }>("SELECT max(seq) AS s FROM changes");
    return BigInt(res.rows[0]!.s ?? "0");
  } finally {
    await client.end();
  }
}
