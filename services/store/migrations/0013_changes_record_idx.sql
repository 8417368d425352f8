-- changes_record_idx led with (tenant, collection), which nearly every entry
-- shares: each comparison of an insert's descent and leaf search compared
-- those two texts equal before reaching record_id, and the write benchmark
-- spent about 4 % of PostgreSQL's CPU per update more than with record_id
-- first. Its readers (a record's history, the idempotency row's seq lookup,
-- record-store.ts) name all three and order by seq, which this order serves
-- alike.
--
-- Rebuilding the index holds off writes to the change log for as long as it
-- takes (the table is bounded by the retention duty, services/store/retention.ts).
DROP INDEX changes_record_idx;
CREATE INDEX changes_record_idx ON changes (record_id, tenant, collection, seq);
