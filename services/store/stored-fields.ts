// Reads of one field across a collection's stored records, for checking a
// schema change against the data before it is published
// (services/schema/record-check.ts). Each is a scan of the collection: schema
// changes are rare administrator acts, and no index is worth its write cost
// for them.
import type { Pool } from "pg";
import type { StoredFieldReader } from "../schema/record-check.js";
import type { StoredValue } from "../schema/types.js";
import { toStoreError } from "./pg-errors.js";
import { inTransaction } from "./transaction.js";

export interface RecordRef {
  tenant: string;
  id: string;
}

/** How many records match, and the first few (by tenant and id) to name. */
export interface RecordTally {
  count: number;
  examples: RecordRef[];
}

const EXAMPLES = 3;
/** Records fetched per round trip while visiting values. */
const PAGE = 1000;
const HOLDS_VALUE = "coalesce(jsonb_typeof(fields -> $2), 'null') <> 'null'";

async function tally(pool: Pool, where: string, collection: string, field: string): Promise<RecordTally> {
  try {
    const res = await pool.query<{ n: string; tenant: string; id: string }>(
      `SELECT count(*) OVER () AS n, tenant, id FROM records WHERE collection = $1 AND ${where} ORDER BY tenant, id LIMIT ${EXAMPLES}`,
      [collection, field],
    );
    return { count: Number(res.rows[0]?.n ?? 0), examples: res.rows.map((r) => ({ tenant: r.tenant, id: r.id })) };
  } catch (e) {
    throw toStoreError(e);
  }
}

/** Live records of `collection` that hold no value for `field`: absent, null, or empty (as a required field may not be). */
export function liveRecordsWithout(pool: Pool, collection: string, field: string): Promise<RecordTally> {
  return tally(pool, `NOT deleted AND (NOT (${HOLDS_VALUE}) OR fields -> $2 IN ('""'::jsonb, '[]'::jsonb))`, collection, field);
}

/** Records of `collection`, tombstones included, that hold a value for `field`. */
export function recordsWith(pool: Pool, collection: string, field: string): Promise<RecordTally> {
  return tally(pool, HOLDS_VALUE, collection, field);
}

/**
 * Calls `visit` with each live record's value for `field` (records without
 * one are skipped), a page at a time through a cursor, so a large collection
 * is never held in memory at once.
 */
export async function forEachLiveValue(
  pool: Pool,
  collection: string,
  field: string,
  visit: (record: RecordRef, value: StoredValue) => void,
): Promise<void> {
  try {
    await inTransaction(pool, async (client) => {
      await client.query("SET TRANSACTION READ ONLY");
      await client.query(
        `DECLARE field_values NO SCROLL CURSOR FOR
           SELECT tenant, id, fields -> $2 AS value FROM records WHERE collection = $1 AND NOT deleted AND ${HOLDS_VALUE}`,
        [collection, field],
      );
      for (;;) {
        const page = await client.query<RecordRef & { value: StoredValue }>(`FETCH ${PAGE} FROM field_values`);
        for (const r of page.rows) visit({ tenant: r.tenant, id: r.id }, r.value);
        if (page.rows.length < PAGE) return;
      }
    });
  } catch (e) {
    throw toStoreError(e);
  }
}

/**
 * Deletes every identity key of `field` in `collection`, all tenants. For a
 * field about to become an identity again when no record holds a value for
 * it: keys stay when a field stops being an identity, and these would name
 * records that no longer hold the value (a write would be told the value is
 * taken; an upsert by it would land on the wrong record).
 */
export async function dropIdentityKeys(pool: Pool, collection: string, field: string): Promise<number> {
  try {
    const res = await pool.query("DELETE FROM record_keys WHERE collection = $1 AND field = $2", [collection, field]);
    return res.rowCount ?? 0;
  } catch (e) {
    throw toStoreError(e);
  }
}

/** The reads above over one pool, as the schema check takes them. */
export function storedFieldReader(pool: Pool): StoredFieldReader {
  return {
    liveRecordsWithout: (collection, field) => liveRecordsWithout(pool, collection, field),
    recordsWith: (collection, field) => recordsWith(pool, collection, field),
    forEachLiveValue: (collection, field, visit) => forEachLiveValue(pool, collection, field, visit),
  };
}
