-- Records, identity keys, the change log and idempotency.
-- Every row carries its tenant so multi-tenant deployments never need a
-- storage rewrite.

-- Facts about this database. `database_id` is random per database, so a
-- change-log cursor from another database (e.g. after a restore from a
-- different cluster) is recognised and refused instead of silently misread.
CREATE TABLE deltamesh_meta (
  key   text PRIMARY KEY,
  value text NOT NULL
);
INSERT INTO deltamesh_meta (key, value) VALUES ('database_id', gen_random_uuid()::text);

CREATE TABLE records (
  tenant      text        NOT NULL,
  collection  text        NOT NULL,
  id          text        NOT NULL,
  version     bigint      NOT NULL CHECK (version > 0),
  -- jsonb: ListRecords filters on it with containment (fields @> {...}).
  fields      jsonb       NOT NULL,
  -- field name -> {v: version, h: hlc (text), s: source, a: actor, d: device}.
  -- json, not jsonb: never queried inside, and storing text skips the binary
  -- conversion that made it the costliest column of a write.
  clocks      json        NOT NULL,
  deleted     boolean     NOT NULL DEFAULT false,
  create_time timestamptz NOT NULL,
  update_time timestamptz NOT NULL,
  PRIMARY KEY (tenant, collection, id)
) WITH (fillfactor = 90);
-- No GIN index on `fields`: every write would pay for one index entry per
-- field (the write path is the hot path), and a list page walks the primary
-- key in id order and stops once the page is full, which a GIN bitmap scan
-- (all matches, then sorted) does not do for the common, unselective filters
-- (region, owner). Free space (fillfactor) lets updates stay HOT: no primary
-- key entry per update. Identity fields are found through record_keys.

-- Identity keys (phone, WeChat OpenID, ERP id): unique per collection.
-- `value` is the stored value's JSON text.
CREATE TABLE record_keys (
  tenant     text NOT NULL,
  collection text NOT NULL,
  field      text NOT NULL,
  value      text NOT NULL,
  record_id  text NOT NULL,
  PRIMARY KEY (tenant, collection, field, value)
);
CREATE INDEX record_keys_record_idx ON record_keys (tenant, collection, record_id);

-- The change log: one row per applied mutation, the audit trail and the
-- stream source. `seq` is taken from the sequence only while holding the
-- change-log sequencing lock (see services/store/sequencing.ts), which is
-- held until commit; so seq order is commit order and a reader that has seen
-- seq N never later finds a committed row below N.
CREATE TABLE changes (
  seq                bigserial   PRIMARY KEY,
  tenant             text        NOT NULL,
  collection         text        NOT NULL,
  record_id          text        NOT NULL,
  old_version        bigint      NOT NULL,
  new_version        bigint      NOT NULL,
  -- {set: {field: value}, cleared: [field], clocks: {field: clock}, decisions: [...]}
  -- json (text), not jsonb: read whole by the tailer and history, never queried inside.
  delta              json        NOT NULL,
  created            boolean     NOT NULL,
  deleted            boolean     NOT NULL,
  actor              text        NOT NULL,
  source             text        NOT NULL,
  device             text        NOT NULL,
  client_mutation_id text        NOT NULL,
  commit_time        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX changes_record_idx ON changes (tenant, collection, record_id, seq);

-- Results of applied mutations by client_mutation_id: a retried mutation
-- returns its first result and writes nothing.
CREATE TABLE applied_mutations (
  tenant             text        NOT NULL,
  client_mutation_id text        NOT NULL,
  result             json        NOT NULL,
  create_time        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, client_mutation_id)
);
