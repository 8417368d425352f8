-- The seq of the change an applied mutation made (NULL: it changed nothing,
-- or the row predates this column and its result carries its cursor). The
-- idempotency rows of a batch then go in with its change rows and COMMIT in
-- one round trip: each finds its seq by record and version in the same
-- transaction, where before it waited for the seqs to come back to the node
-- so its cursor could be written into the result (services/store/record-store.ts).
ALTER TABLE applied_mutations ADD COLUMN seq bigint;
