-- deltamesh_apply_writes_timed: the write function of migration 0007, also
-- returning each change row's commit time with its seq, so the node that
-- wrote the changes can hand them to its own change streams right after
-- COMMIT instead of waiting for the commit notification and reading them
-- back (services/changes/streams.ts publishCommitted). Arguments as in 0007.
-- The 0007 function stays, now a wrapper of this one, for nodes of the
-- previous version during a rolling upgrade.
CREATE FUNCTION deltamesh_apply_writes_timed(p_fresh json, p_existing json, p_key_removals json, p_key_inserts json,
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
    DELETE FROM record_keys rk
     USING json_to_recordset(p_key_removals) AS k(tenant text, collection text, field text, value text, record_id text)
     WHERE rk.tenant = k.tenant AND rk.collection = k.collection AND rk.field = k.field
       AND rk.value = k.value AND rk.record_id = k.record_id;
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

CREATE OR REPLACE FUNCTION deltamesh_apply_writes(p_fresh json, p_existing json, p_key_removals json, p_key_inserts json,
                                                  p_changes json, p_sequencing_lock bigint)
RETURNS SETOF bigint LANGUAGE sql AS $$
  SELECT t.seq FROM deltamesh_apply_writes_timed(p_fresh, p_existing, p_key_removals, p_key_inserts, p_changes, p_sequencing_lock) t
$$;
