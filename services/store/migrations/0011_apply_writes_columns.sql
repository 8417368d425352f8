-- deltamesh_apply_writes_columns: the write function of migrations 0008 and
-- 0009, with the JSON documents of each row (a record's fields and clocks, a
-- change's delta, image and prior values) passed beside the row instead of
-- nested inside one JSON array of rows.
--
-- Why: json_to_recordset lexes the whole array, nested documents included,
-- and each nested document is then lexed again by its column's input
-- function. The documents are most of the bytes, so a batch of 200 change
-- rows spent ~19 µs a row inserting through json_to_recordset and ~15 µs
-- with the documents split out (measured on PostgreSQL 18 on the 2-core
-- machine of the benchmarks; the whole write benchmark in the commit that
-- added this migration).
--
-- The documents of one column go as one text parameter, joined by the
-- ASCII record separator U+001E. A JSON text never holds that character
-- raw (JSON escapes every control character inside strings and allows none
-- outside them), so string_to_array splits it back exactly. They are zipped
-- with their rows by position (ROWS FROM); a count that differs leaves a
-- NULL in a NOT NULL column, so a mismatch fails loudly and writes nothing.
--
-- Record times go as epoch milliseconds (what a JavaScript Date holds), which
-- the node serializes several times faster than ISO text; to_timestamp
-- rounds to the microsecond, so they arrive exact.
--
-- Arguments as in 0007, with each JSON array of rows now without its
-- documents, which follow it:
--   p_fresh, p_fresh_fields, p_fresh_clocks          records to insert;
--   p_existing, p_existing_fields, p_existing_clocks  records to upsert;
--   p_changes, p_change_deltas, p_change_images, p_change_priors  change rows.
-- The 0008 function stays for nodes of the previous version during a rolling
-- upgrade.
CREATE FUNCTION deltamesh_apply_writes_columns(
    p_fresh json, p_fresh_fields text, p_fresh_clocks text,
    p_existing json, p_existing_fields text, p_existing_clocks text,
    p_key_removals json, p_key_inserts json,
    p_changes json, p_change_deltas text, p_change_images text, p_change_priors text,
    p_sequencing_lock bigint)
RETURNS TABLE (seq bigint, commit_time timestamptz) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  IF p_fresh IS NOT NULL THEN
    INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
    SELECT x.tenant, x.collection, x.id, x.version, x.fields, x.clocks, x.deleted, to_timestamp(x.create_ms / 1000.0), to_timestamp(x.update_ms / 1000.0)
      FROM ROWS FROM (json_to_recordset(p_fresh) AS (tenant text, collection text, id text, version bigint, deleted boolean,
                                                     create_ms bigint, update_ms bigint),
                      unnest(string_to_array(p_fresh_fields, E'\x1e')::jsonb[]),
                      unnest(string_to_array(p_fresh_clocks, E'\x1e')::json[]))
           AS x(tenant, collection, id, version, deleted, create_ms, update_ms, fields, clocks);
  END IF;
  IF p_existing IS NOT NULL THEN
    INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
    SELECT x.tenant, x.collection, x.id, x.version, x.fields, x.clocks, x.deleted, to_timestamp(x.create_ms / 1000.0), to_timestamp(x.update_ms / 1000.0)
      FROM ROWS FROM (json_to_recordset(p_existing) AS (tenant text, collection text, id text, version bigint, deleted boolean,
                                                        create_ms bigint, update_ms bigint),
                      unnest(string_to_array(p_existing_fields, E'\x1e')::jsonb[]),
                      unnest(string_to_array(p_existing_clocks, E'\x1e')::json[]))
           AS x(tenant, collection, id, version, deleted, create_ms, update_ms, fields, clocks)
    ON CONFLICT (tenant, collection, id) DO UPDATE
       SET version = EXCLUDED.version, fields = EXCLUDED.fields, clocks = EXCLUDED.clocks,
           deleted = EXCLUDED.deleted, update_time = EXCLUDED.update_time;
  END IF;
  IF p_key_removals IS NOT NULL THEN
    -- As in migration 0009: each key found by a primary-key probe, deleted by its row address.
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
      FROM ROWS FROM (json_to_recordset(p_changes) AS (t text, c text, r text, ov bigint, nv bigint, cr boolean, de boolean,
                                                       a text, s text, dv text, m text),
                      unnest(string_to_array(p_change_deltas, E'\x1e')::json[]),
                      unnest(string_to_array(p_change_images, E'\x1e')::json[]),
                      unnest(string_to_array(p_change_priors, E'\x1e')::json[]))
           WITH ORDINALITY AS u(t, c, r, ov, nv, cr, de, a, s, dv, m, d, im, pr, ord)
     ORDER BY u.ord
    RETURNING changes.seq, changes.commit_time;
END
$$;
