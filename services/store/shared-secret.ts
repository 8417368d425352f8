// Secrets every node of a cluster shares through its database: a random
// value generated once, in `deltamesh_meta` under its key (base64), for what
// must agree across nodes when the operator configured no secret of their
// own (page tokens sealed on one node open on another).
import { randomBytes } from "node:crypto";
import type { Pool } from "pg";
import { toStoreError } from "./pg-errors.js";

/** deltamesh_meta key of the page-token secret used when no DELTAMESH_MASK_HASH_KEY is configured. */
export const PAGE_TOKEN_SECRET_KEY = "page_token_secret";

/** The secret stored under `key`, creating it (32 random bytes) if no node has yet; the first writer wins. */
export async function sharedSecret(pool: Pool, key: string): Promise<Uint8Array> {
  try {
    await pool.query("INSERT INTO deltamesh_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", [key, randomBytes(32).toString("base64")]);
    const res = await pool.query<{ value: string }>("SELECT value FROM deltamesh_meta WHERE key = $1", [key]);
    const value = res.rows[0]?.value;
    if (!value) throw new Error(`deltamesh_meta has no ${key}`);
    return new Uint8Array(Buffer.from(value, "base64"));
  } catch (e) {
    throw toStoreError(e);
  }
}
