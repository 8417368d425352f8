-- deltamesh_apply_writes_columns: the write function of migrations 0008 and
-- 0009, with its rows passed column by column instead of as JSON arrays of
-- objects.
--
-- Why: json_to_recordset lexes the whole array, nested documents included,
-- builds a hash table of every object's keys, and each nested document is
-- then lexed again by its column's input function. With 200 change rows a
-- batch, inserting them cost ~19 µs a row that way and ~14 µs from columns
-- (PostgreSQL 18 on the 2-core machine of the benchmarks); the whole write
-- benchmark (`npm run bench -- writes`, b) went from ~13,400 to
-- 16,400-18,000 mutations/s with this function and the node-side changes
-- made with it.
--
-- Scalar columns are arrays (text[], bigint[], boolean[]). The JSON
-- documents of a column (a record's fields and clocks, a change's delta,
-- image and prior values) go as one text parameter, joined by the ASCII
-- record separator U+001E: a JSON text never holds that character raw (JSON
-- escapes every control character inside strings and allows none outside
-- them), so string_to_array splits them back exactly, and each is lexed
-- once, by its column's input function. Columns are zipped by position
-- (ROWS FROM); columns of one table that differ in length are refused
-- before anything is written.
--
-- Record times go as epoch milliseconds (what a JavaScript Date holds),
-- which the node serializes several times faster than ISO text. They are
-- turned into timestamps with integer arithmetic (deltamesh_epoch_ms below):
-- to_timestamp(ms / 1000.0) goes through float8 and stores values outside
-- about 1858-2241 a microsecond early, which read back a millisecond early.
--
-- Arguments (NULL arrays: nothing of that kind):
--   p_fresh_count      the first this many records are inserted (a fresh
--                      record that exists already is a unique violation: the
--                      caller retries and merges), the rest upserted;
--   p_record_*         the records, one array element per record;
--   p_removal_*, p_insert_*  record_keys rows to remove and to insert;
--   p_change_*         the change rows, in the order their seqs must ascend;
--   p_sequencing_lock  as in 0007.
-- Returns each change row's seq and commit time, as 0008 does. The 0008
-- function stays for nodes of the previous version during a rolling upgrade.

-- Epoch milliseconds as a timestamptz, exact over PostgreSQL's whole range:
-- whole days added to a timestamp without time zone (no DST), the rest as an
-- interval of at most a day's microseconds, then read as UTC. Inlined.
CREATE FUNCTION deltamesh_epoch_ms(ms bigint) RETURNS timestamptz
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (timestamp 'epoch' + make_interval(days => (ms / 86400000)::int) + (ms % 86400000) * interval '1 millisecond')
           AT TIME ZONE 'UTC'
  $$;

-- Whether the lengths of a table's columns differ (a NULL array, no rows of
-- that kind, counts as a length of its own: all or none must be NULL).
CREATE FUNCTION deltamesh_lengths_differ(VARIADIC lengths int[]) RETURNS boolean
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT count(DISTINCT coalesce(len, -1)) > 1 FROM unnest(lengths) AS len
  $$;

CREATE FUNCTION deltamesh_apply_writes_columns(
    p_fresh_count int,
    p_record_tenants text[], p_record_collections text[], p_record_ids text[], p_record_versions bigint[],
    p_record_deleted boolean[], p_record_create_ms bigint[], p_record_update_ms bigint[],
    p_record_fields text, p_record_clocks text,
    p_removal_tenants text[], p_removal_collections text[], p_removal_fields text[], p_removal_values text[], p_removal_records text[],
    p_insert_tenants text[], p_insert_collections text[], p_insert_fields text[], p_insert_values text[], p_insert_records text[],
    p_change_tenants text[], p_change_collections text[], p_change_records text[], p_change_old_versions bigint[],
    p_change_new_versions bigint[], p_change_created boolean[], p_change_deleted boolean[], p_change_actors text[],
    p_change_sources text[], p_change_devices text[], p_change_mutation_ids text[],
    p_change_deltas text, p_change_images text, p_change_priors text,
    p_sequencing_lock bigint)
RETURNS TABLE (seq bigint, commit_time timestamptz) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_fields text[] := string_to_array(p_record_fields, E'\x1e');
  v_clocks text[] := string_to_array(p_record_clocks, E'\x1e');
  v_fresh int := p_fresh_count;
  v_deltas text[] := string_to_array(p_change_deltas, E'\x1e');
  v_images text[] := string_to_array(p_change_images, E'\x1e');
  v_priors text[] := string_to_array(p_change_priors, E'\x1e');
BEGIN
  -- Columns of other lengths would zip into wrong or NULL values (image and
  -- prior are nullable): a bug of the caller, refused before anything is written.
  IF deltamesh_lengths_differ(cardinality(p_record_tenants), cardinality(p_record_collections), cardinality(p_record_ids),
                              cardinality(p_record_versions), cardinality(p_record_deleted), cardinality(p_record_create_ms),
                              cardinality(p_record_update_ms), cardinality(v_fields), cardinality(v_clocks))
     OR deltamesh_lengths_differ(cardinality(p_removal_tenants), cardinality(p_removal_collections), cardinality(p_removal_fields),
                                 cardinality(p_removal_values), cardinality(p_removal_records))
     OR deltamesh_lengths_differ(cardinality(p_insert_tenants), cardinality(p_insert_collections), cardinality(p_insert_fields),
                                 cardinality(p_insert_values), cardinality(p_insert_records))
     OR deltamesh_lengths_differ(cardinality(p_change_tenants), cardinality(p_change_collections), cardinality(p_change_records),
                                 cardinality(p_change_old_versions), cardinality(p_change_new_versions), cardinality(p_change_created),
                                 cardinality(p_change_deleted), cardinality(p_change_actors), cardinality(p_change_sources),
                                 cardinality(p_change_devices), cardinality(p_change_mutation_ids), cardinality(v_deltas),
                                 cardinality(v_images), cardinality(v_priors)) THEN
    RAISE EXCEPTION 'deltamesh_apply_writes_columns: columns of one table differ in length' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF v_fresh > 0 THEN
    INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
    SELECT x.tenant, x.collection, x.id, x.version, x.fields, x.clocks, x.deleted,
           deltamesh_epoch_ms(x.create_ms), deltamesh_epoch_ms(x.update_ms)
      FROM ROWS FROM (unnest(p_record_tenants[1:v_fresh]), unnest(p_record_collections[1:v_fresh]), unnest(p_record_ids[1:v_fresh]),
                      unnest(p_record_versions[1:v_fresh]), unnest(p_record_deleted[1:v_fresh]), unnest(p_record_create_ms[1:v_fresh]),
                      unnest(p_record_update_ms[1:v_fresh]), unnest(v_fields[1:v_fresh]::jsonb[]), unnest(v_clocks[1:v_fresh]::json[]))
           AS x(tenant, collection, id, version, deleted, create_ms, update_ms, fields, clocks);
  END IF;
  IF cardinality(p_record_ids) > v_fresh THEN
    INSERT INTO records (tenant, collection, id, version, fields, clocks, deleted, create_time, update_time)
    SELECT x.tenant, x.collection, x.id, x.version, x.fields, x.clocks, x.deleted,
           deltamesh_epoch_ms(x.create_ms), deltamesh_epoch_ms(x.update_ms)
      FROM ROWS FROM (unnest(p_record_tenants[v_fresh + 1:]), unnest(p_record_collections[v_fresh + 1:]), unnest(p_record_ids[v_fresh + 1:]),
                      unnest(p_record_versions[v_fresh + 1:]), unnest(p_record_deleted[v_fresh + 1:]), unnest(p_record_create_ms[v_fresh + 1:]),
                      unnest(p_record_update_ms[v_fresh + 1:]), unnest(v_fields[v_fresh + 1:]::jsonb[]), unnest(v_clocks[v_fresh + 1:]::json[]))
           AS x(tenant, collection, id, version, deleted, create_ms, update_ms, fields, clocks)
    ON CONFLICT (tenant, collection, id) DO UPDATE
       SET version = EXCLUDED.version, fields = EXCLUDED.fields, clocks = EXCLUDED.clocks,
           deleted = EXCLUDED.deleted, update_time = EXCLUDED.update_time;
  END IF;
  IF p_removal_tenants IS NOT NULL THEN
    -- As in migration 0009: each key found by a primary-key probe, deleted by its row address.
    DELETE FROM record_keys
     WHERE ctid = ANY (ARRAY(
       SELECT (SELECT rk.ctid FROM record_keys rk
                WHERE rk.tenant = k.tenant AND rk.collection = k.collection AND rk.field = k.field
                  AND rk.value = k.value AND rk.record_id = k.record_id)
         FROM ROWS FROM (unnest(p_removal_tenants), unnest(p_removal_collections), unnest(p_removal_fields), unnest(p_removal_values),
                         unnest(p_removal_records)) AS k(tenant, collection, field, value, record_id)));
  END IF;
  IF p_insert_tenants IS NOT NULL THEN
    INSERT INTO record_keys (tenant, collection, field, value, record_id)
    SELECT k.tenant, k.collection, k.field, k.value, k.record_id
      FROM ROWS FROM (unnest(p_insert_tenants), unnest(p_insert_collections), unnest(p_insert_fields), unnest(p_insert_values),
                      unnest(p_insert_records)) AS k(tenant, collection, field, value, record_id);
  END IF;
  IF p_change_tenants IS NULL THEN
    RETURN;
  END IF;
  IF p_sequencing_lock IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(p_sequencing_lock);
  END IF;
  RETURN QUERY
    INSERT INTO changes (tenant, collection, record_id, old_version, new_version, delta, created, deleted,
                         actor, source, device, client_mutation_id, image, prior)
    SELECT u.t, u.c, u.r, u.ov, u.nv, u.d, u.cr, u.de, u.a, u.s, u.dv, u.m, u.im, u.pr
      FROM ROWS FROM (unnest(p_change_tenants), unnest(p_change_collections), unnest(p_change_records), unnest(p_change_old_versions),
                      unnest(p_change_new_versions), unnest(p_change_created), unnest(p_change_deleted), unnest(p_change_actors),
                      unnest(p_change_sources), unnest(p_change_devices), unnest(p_change_mutation_ids),
                      unnest(v_deltas::json[]), unnest(v_images::json[]), unnest(v_priors::json[]))
           WITH ORDINALITY AS u(t, c, r, ov, nv, cr, de, a, s, dv, m, d, im, pr, ord)
     ORDER BY u.ord
    RETURNING changes.seq, changes.commit_time;
END
$$;
