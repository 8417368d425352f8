// Raw `pg` baselines for the import bench: the same generated rows, 500 a
// transaction, 4 connections, no server in between.
//
// - upsertAndLog: the least row work any write does (an upsert and a log row).
// - storedRows: the rows deltamesh keeps for each imported customer, written
//   with plain set-based SQL into a migrated database of their own: the
//   record, its two identity keys, a change-log row with its delta and record
//   image, an idempotency row, and the reads a write batch makes first
//   (identity holders, earlier results, locks). It shows what PostgreSQL
//   needs for the rows themselves, apart from the server and the write
//   function, so the import's PostgreSQL CPU can be read against it.
import pg from "pg";
import { newRecordId } from "../../services/records/write-pipeline.js";
import { appliedStatement, APPLIED_INSERT_SQL, identityStatement, lockStatement, RecordStore } from "../../services/store/record-store.js";
import { SEQUENCING_LOCK_KEY } from "../../services/store/sequencing.js";
import { arrayLiteral, inTransaction } from "../../services/store/transaction.js";
import { openRows, type RowValues } from "../../services/cli/import/rows.js";
import { createDatabase } from "../support/create-database.js";

const BATCH = 500;
const CONNECTIONS = 4;

/** Sends the file's rows to `write` in batches, CONNECTIONS at a time. */
async function inBatches(file: string, write: (batch: RowValues[]) => Promise<void>): Promise<void> {
  const inflight = new Set<Promise<void>>();
  let batch: RowValues[] = [];
  const send = async () => {
    while (inflight.size >= CONNECTIONS) await Promise.race(inflight);
    const p: Promise<void> = write(batch).finally(() => inflight.delete(p));
    inflight.add(p);
    batch = [];
  };
  for await (const row of openRows(file, "csv").rows) {
    if ("error" in row) continue;
    batch.push(row.values);
    if (batch.length === BATCH) await send();
  }
  if (batch.length > 0) await send();
  await Promise.all(inflight);
}

/** An upsert by erp_id into a one-table store, and a log row, per row. */
export async function upsertAndLog(url: string, file: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: url, max: CONNECTIONS });
  try {
    await pool.query(`CREATE TABLE bench_customers (erp_id text PRIMARY KEY, version bigint NOT NULL, fields jsonb NOT NULL);
                      CREATE TABLE bench_customer_log (seq bigserial PRIMARY KEY, erp_id text NOT NULL, version bigint NOT NULL, delta jsonb NOT NULL)`);
    await inBatches(file, (batch) =>
      inTransaction(pool, async (client) => {
        const ids = batch.map((r) => String(r.erp_id));
        const fields = batch.map((r) => JSON.stringify(r));
        await client.query(
          `INSERT INTO bench_customers (erp_id, version, fields) SELECT id, 1, f FROM unnest($1::text[], $2::jsonb[]) AS u(id, f)
           ON CONFLICT (erp_id) DO UPDATE SET version = bench_customers.version + 1, fields = bench_customers.fields || EXCLUDED.fields`,
          [ids, fields],
        );
        await client.query("INSERT INTO bench_customer_log (erp_id, version, delta) SELECT id, 1, f FROM unnest($1::text[], $2::jsonb[]) AS u(id, f)", [ids, fields]);
      }),
    );
  } finally {
    await pool.end();
  }
}

const TENANT = "default";
const COLLECTION = "customers";
const IDENTITY_FIELDS = ["erp_id", "phone"] as const;

/**
 * deltamesh's rows for each imported customer, in a new database `database`
 * on the server of `url` (migrated by RecordStore, so the tables and indexes
 * are the real ones). Values are the file's, unnormalized: their sizes are
 * what matters here.
 */
export async function storedRows(url: string, file: string, database: string): Promise<void> {
  const target = await createDatabase(url, database);
  await (await RecordStore.open({ url: target })).close();
  const pool = new pg.Pool({ connectionString: target, max: CONNECTIONS });
  try {
    await inBatches(file, (batch) => inTransaction(pool, (client) => writeStoredRows(client, batch)));
  } finally {
    await pool.end();
  }
}

async function writeStoredRows(client: pg.PoolClient, batch: RowValues[]): Promise<void> {
  const now = Date.now();
  const hlc = `${now.toString(16)}-0000-bench`;
  const ids = batch.map(() => newRecordId(now));
  const mutationIds = batch.map((r) => `import-${String(r.erp_id)}`);
  const identities = batch.flatMap((r, i) =>
    IDENTITY_FIELDS.filter((f) => r[f] !== undefined).map((field) => ({ tenant: TENANT, collection: COLLECTION, field, value: String(r[field]), recordId: ids[i]! })),
  );
  const run = (s: { text: string; values: readonly unknown[] }) => client.query(s.text, [...s.values]);
  // The reads of a write batch: holders of the identity values, earlier results, locks on the holders.
  await run(identityStatement(identities));
  await run(appliedStatement(mutationIds.map((clientMutationId) => ({ tenant: TENANT, clientMutationId }))));
  await run(lockStatement([], identities.filter((k) => k.field === "erp_id")));
  const each = (v: string) => arrayLiteral(batch.map(() => v));
  await client.query(
    `INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
     SELECT t, c, id, 1, f::jsonb, cl::json, false, now(), now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(t, c, id, f, cl)`,
    [
      each(TENANT),
      each(COLLECTION),
      arrayLiteral(ids),
      arrayLiteral(batch.map((r) => JSON.stringify(r))),
      arrayLiteral(batch.map((r) => JSON.stringify(Object.fromEntries(Object.keys(r).map((f) => [f, { v: 1, h: hlc, s: "erp", a: "bench", d: "" }]))))),
    ],
  );
  await client.query(
    `INSERT INTO record_keys (tenant, collection, field, value, record_id)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])`,
    [
      arrayLiteral(identities.map((k) => k.tenant)),
      arrayLiteral(identities.map((k) => k.collection)),
      arrayLiteral(identities.map((k) => k.field)),
      arrayLiteral(identities.map((k) => JSON.stringify(k.value))),
      arrayLiteral(identities.map((k) => k.recordId)),
    ],
  );
  // Change rows in order, under the sequencing lock, as every write batch appends them.
  await client.query("SELECT pg_advisory_xact_lock($1)", [SEQUENCING_LOCK_KEY]);
  await client.query(
    `INSERT INTO changes (tenant, collection, record_id, old_version, new_version, delta, created, deleted, actor, source, device, client_mutation_id, image, prior)
     SELECT t, c, id, 0, 1, d::json, true, false, 'bench', 'erp', '', m, im::json, NULL
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS u(t, c, id, d, m, im, ord)
      ORDER BY ord`,
    [
      each(TENANT),
      each(COLLECTION),
      arrayLiteral(ids),
      arrayLiteral(batch.map((r) => JSON.stringify({ set: r, cleared: [], decisions: [], h: hlc, k: Object.keys(r) }))),
      arrayLiteral(mutationIds),
      arrayLiteral(batch.map((r) => JSON.stringify(r))),
    ],
  );
  const results = batch.map((r, i) =>
    JSON.stringify({
      collection: COLLECTION,
      id: ids[i],
      version: 1,
      created: true,
      replayed: false,
      deleted: false,
      fields: Object.keys(r).map((field) => ({ field, status: "applied" })),
      cursor: "",
      fp: "0123456789abcdef0123456789abcdef",
    }),
  );
  await client.query(APPLIED_INSERT_SQL, [each(TENANT), arrayLiteral(mutationIds), results.join("\x1e"), each(COLLECTION), arrayLiteral(ids), arrayLiteral(batch.map(() => 1))]);
}
