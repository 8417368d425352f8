-- deltamesh_apply_writes_checked: the write function of migration 0011,
-- with the existing records it updates, and the records the caller merged
-- from without writing them, first locked and checked to be still as the
-- caller read them.
--
-- Why: a node keeps the records it wrote lately (services/store/record-cache.ts)
-- and merges a batch of edits of those records without first reading and
-- locking them, which saves a round trip and the reading and parsing of the
-- rows. Whether what it kept is still current is decided here, under the same
-- row locks the read would have taken, before anything is written: a record
-- another writer changed since (another node, a node of the previous
-- version, a database restored or failed over to an earlier state and
-- written again) fails the call with serialization_failure (hint
-- 'deltamesh: stale read'), and the node retries the batch the locking way.
-- A kept record is checked by version and update time (a version alone can
-- be reached twice by different writes after a lossy failover); a record
-- the caller locked itself, by version only. A record that no longer exists
-- fails the check as well: it is never recreated by an upsert.
--
-- The records are locked first, in the one global order every batch locks
-- records in (services/store/record-store.ts, LOCK_RECORDS_SQL), so two
-- batches never wait for each other in a cycle: a LATERAL probe per record,
-- which also keeps the planner from taking them in table order. The update
-- then finds each by the row address the lock returned.
--
-- Arguments:
--   p_existing_*  the records to update: tenant, collection, id, the version
--                 and update time (epoch ms; NULL: not checked) merged from,
--                 then the new version, deleted flag, update time, fields
--                 and clocks as in 0011;
--   p_check_*     records merged from and left as they were (an edit that
--                 changed nothing, a refused request): tenant, collection,
--                 id, version and update time to check; NULL arrays for none;
--   the rest      migration 0011's arguments, its records being the fresh
--                 ones, passed to it unchanged.
-- The 0011 function stays for nodes of the previous version during a
-- rolling upgrade: they read under lock, and their writes move the versions
-- checked here.
CREATE FUNCTION deltamesh_apply_writes_checked(
    p_existing_tenants text[], p_existing_collections text[], p_existing_ids text[], p_existing_expected bigint[],
    p_existing_expected_update_ms bigint[], p_existing_versions bigint[], p_existing_deleted boolean[],
    p_existing_update_ms bigint[], p_existing_fields text, p_existing_clocks text,
    p_check_tenants text[], p_check_collections text[], p_check_ids text[], p_check_expected bigint[],
    p_check_expected_update_ms bigint[],
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
DECLARE
  v_fields text[] := string_to_array(p_existing_fields, E'\x1e');
  v_clocks text[] := string_to_array(p_existing_clocks, E'\x1e');
  v_existing int := coalesce(cardinality(p_existing_ids), 0);
  v_read int := coalesce(cardinality(p_existing_ids), 0) + coalesce(cardinality(p_check_ids), 0);
  v_current int;
  v_addresses tid[];
BEGIN
  IF deltamesh_lengths_differ(cardinality(p_existing_tenants), cardinality(p_existing_collections), cardinality(p_existing_ids),
                              cardinality(p_existing_expected), cardinality(p_existing_expected_update_ms),
                              cardinality(p_existing_versions), cardinality(p_existing_deleted), cardinality(p_existing_update_ms),
                              cardinality(v_fields), cardinality(v_clocks))
     OR deltamesh_lengths_differ(cardinality(p_check_tenants), cardinality(p_check_collections), cardinality(p_check_ids),
                                 cardinality(p_check_expected), cardinality(p_check_expected_update_ms)) THEN
    RAISE EXCEPTION 'deltamesh_apply_writes_checked: columns of one table differ in length' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF v_read > 0 THEN
    -- Locked only if still as read (a record another writer holds is
    -- waited for, then checked as that writer left it). Row addresses of
    -- the records to update, in their order.
    SELECT count(*), array_agg(r.ctid ORDER BY k.ord) FILTER (WHERE k.ord <= v_existing) INTO v_current, v_addresses
      FROM (SELECT * FROM ROWS FROM (unnest(p_existing_tenants || p_check_tenants), unnest(p_existing_collections || p_check_collections),
                                     unnest(p_existing_ids || p_check_ids), unnest(p_existing_expected || p_check_expected),
                                     unnest(p_existing_expected_update_ms || p_check_expected_update_ms))
                      WITH ORDINALITY AS e(tenant, collection, id, expected, expected_update_ms, ord)
             ORDER BY tenant COLLATE "C", collection COLLATE "C", id COLLATE "C") k
     CROSS JOIN LATERAL
           (SELECT rr.ctid FROM records rr
             WHERE rr.tenant = k.tenant AND rr.collection = k.collection AND rr.id = k.id AND rr.version = k.expected
               AND (k.expected_update_ms IS NULL OR rr.update_time = deltamesh_epoch_ms(k.expected_update_ms))
               FOR UPDATE) r;
    IF v_current <> v_read THEN
      RAISE EXCEPTION 'deltamesh_apply_writes_checked: % of % records changed since they were read', v_read - v_current, v_read
        USING ERRCODE = 'serialization_failure', HINT = 'deltamesh: stale read';
    END IF;
  END IF;
  IF v_existing > 0 THEN
    UPDATE records r
       SET version = x.version, fields = x.fields, clocks = x.clocks, deleted = x.deleted,
           update_time = deltamesh_epoch_ms(x.update_ms)
      FROM ROWS FROM (unnest(v_addresses), unnest(p_existing_versions), unnest(p_existing_deleted), unnest(p_existing_update_ms),
                      unnest(v_fields::jsonb[]), unnest(v_clocks::json[]))
           AS x(row_address, version, deleted, update_ms, fields, clocks)
     WHERE r.ctid = x.row_address;
  END IF;
  RETURN QUERY SELECT * FROM deltamesh_apply_writes_columns(
    p_fresh_count, p_record_tenants, p_record_collections, p_record_ids, p_record_versions, p_record_deleted,
    p_record_create_ms, p_record_update_ms, p_record_fields, p_record_clocks,
    p_removal_tenants, p_removal_collections, p_removal_fields, p_removal_values, p_removal_records,
    p_insert_tenants, p_insert_collections, p_insert_fields, p_insert_values, p_insert_records,
    p_change_tenants, p_change_collections, p_change_records, p_change_old_versions, p_change_new_versions,
    p_change_created, p_change_deleted, p_change_actors, p_change_sources, p_change_devices, p_change_mutation_ids,
    p_change_deltas, p_change_images, p_change_priors, p_sequencing_lock);
END
$$;
