-- Change streams (services/changes): what the log tailer needs to evaluate a
-- subscriber's filters and row scope on any change, including changes that do
-- not touch the filtered fields, without reading the records table (whose
-- state may already be newer than the change).
--
-- `image`: the record's fields after the change (the post-image).
-- `prior`: the values, before the change, of the fields it set or cleared
--          (a field absent from `prior` had no value). With `image` this gives
--          the fields before the change, so "did it match before?" is exact.
-- Rows written before this migration have neither; the tailer then falls
-- back to the delta alone (see services/changes/change-state.ts).
-- json (text), not jsonb, like `delta`: read whole, never queried inside.
ALTER TABLE changes ADD COLUMN image json, ADD COLUMN prior json;

-- Wake every node's tailer when changes commit (NOTIFY is delivered at
-- commit, once per transaction and channel). Tailers also poll, so a lost
-- notification only delays delivery; it never loses a change.
CREATE FUNCTION deltamesh_notify_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('deltamesh_changes', '');
  RETURN NULL;
END
$$;
CREATE TRIGGER changes_notify AFTER INSERT ON changes
  FOR EACH STATEMENT EXECUTE FUNCTION deltamesh_notify_changes();

-- The retention floor lives in deltamesh_meta (key `change_log_floor`, the
-- highest seq deleted by retention, decimal text; no row = 0). Retention
-- (services/cluster) deletes change rows and raises the floor in one
-- transaction, so a reader that sees rows above the floor sees all of them.
