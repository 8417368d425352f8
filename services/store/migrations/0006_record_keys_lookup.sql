-- Identity lookups (tenant, collection, field, value: record-store.ts
-- IDENTITY_LOOKUP_SQL) must use the primary key. record_keys_record_idx led
-- with (tenant, collection) too, and with statistics taken while the table was
-- small (early in a bulk import, before autovacuum analyzes it again) the
-- planner chose it and filtered every key of the collection for each lookup:
-- one 500-row import batch took 24 s against 30,000 keys. Leading with
-- record_id leaves the primary key the only index a lookup can use; the
-- record's own key edits still find their rows by it.
DROP INDEX record_keys_record_idx;
CREATE INDEX record_keys_record_idx ON record_keys (record_id, tenant, collection);
