-- Identity keys (record_keys): fewer index entries to write, and removals
-- that probe the primary key whatever the statistics say.
--
-- record_keys_record_idx (record_id, tenant, collection) serves no query:
-- identity lookups and key removals name the whole primary key (tenant,
-- collection, field, value). It cost an index entry for every identity key
-- written: in a bulk import of customers (three identity keys each) the key
-- inserts took 35 µs a row with it and 24 µs without, and 500-row batches
-- went through the write pipeline ~15 % faster.
DROP INDEX record_keys_record_idx;

-- The write function of migration 0008 with one statement changed, the key
-- removals (test/integration/store/identity-lookup.test.ts checks the plans
-- of the function's statements as it runs).
CREATE OR REPLACE FUNCTION deltamesh_apply_writes_timed(p_fresh json, p_existing json, p_key_removals json, p_key_inserts json,
                                             p_changes json, p_sequencing_lock bigint)
RETURNS TABLE (seq bigint, commit_time timestamptz) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  IF p_fresh IS NOT NULL THEN
    INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
    SELECT x.tenant, x.collection, x.id, x.version, x.fields, x.clocks, x.deleted, x.create_time, x.update_time
      FROM json_to_recordset(p_fresh) AS x(tenant text, collection text, id text, version bigint, fields jsonb,
           clocks json, deleted boolean, create_time timestamptz, update_time timestamptz);
  END IF;
  IF p_existing IS NOT NULL THEN
    INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
    SELECT x.tenant, x.collection, x.id, x.version, x.fields, x.clocks, x.deleted, x.create_time, x.update_time
      FROM json_to_recordset(p_existing) AS x(tenant text, collection text, id text, version bigint, fields jsonb,
           clocks json, deleted boolean, create_time timestamptz, update_time timestamptz)
    ON CONFLICT (tenant, collection, id) DO UPDATE
       SET version = EXCLUDED.version, fields = EXCLUDED.fields, clocks = EXCLUDED.clocks,
           deleted = EXCLUDED.deleted, update_time = EXCLUDED.update_time;
  END IF;
  IF p_key_removals IS NOT NULL THEN
    -- Each key is found by a primary-key probe (a correlated subquery, as in
    -- the identity lookups of migration 0006) and deleted by its row
    -- address. As a join, with statistics of a nearly empty table (early in
    -- a bulk load) the planner hashed the removals and scanned every key.
    DELETE FROM record_keys
     WHERE ctid = ANY (ARRAY(
       SELECT (SELECT rk.ctid FROM record_keys rk
                WHERE rk.tenant = k.tenant AND rk.collection = k.collection AND rk.field = k.field
                  AND rk.value = k.value AND rk.record_id = k.record_id)
         FROM json_to_recordset(p_key_removals) AS k(tenant text, collection text, field text, value text, record_id text)));
  END IF;
  IF p_key_inserts IS NOT NULL THEN
    INSERT INTO record_keys (tenant, collection, field, value, record_id)
    SELECT k.tenant, k.collection, k.field, k.value, k.record_id
      FROM json_to_recordset(p_key_inserts) AS k(tenant text, collection text, field text, value text, record_id text);
  END IF;
  IF p_changes IS NULL THEN
    RETURN;
  END IF;
  IF p_sequencing_lock IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(p_sequencing_lock);
  END IF;
  RETURN QUERY
    INSERT INTO changes (tenant, collection, record_id, old_version, new_version, delta, created, deleted,
                         actor, source, device, client_mutation_id, image, prior)
    SELECT u.t, u.c, u.r, u.ov, u.nv, u.d, u.cr, u.de, u.a, u.s, u.dv, u.m, u.im, u.pr
      FROM ROWS FROM (json_to_recordset(p_changes) AS (t text, c text, r text, ov bigint, nv bigint, d json,
                      cr boolean, de boolean, a text, s text, dv text, m text, im json, pr json))
           WITH ORDINALITY AS u(t, c, r, ov, nv, d, cr, de, a, s, dv, m, im, pr, ord)
     ORDER BY u.ord
    RETURNING changes.seq, changes.commit_time;
END
$$;
