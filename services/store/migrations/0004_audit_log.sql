-- The audit log (services/access): reads of unmasked sensitive fields,
-- exports, policy changes and refused calls. Who, what, when, from which
-- device; never field values. One hash chain per tenant: `seq` counts up
-- from 1 without gaps, and hash = sha256 over prev_hash and the entry (see
-- services/access/audit-chain.ts), so an edited, removed or reordered row
-- breaks every hash after it. Appends hold a per-tenant transaction-scoped
-- advisory lock, so concurrent nodes extend the chain one at a time.
CREATE TABLE audit_log (
  tenant       text        NOT NULL,
  seq          bigint      NOT NULL CHECK (seq > 0),
  -- Millisecond precision: the hash covers the time as JavaScript writes it.
  time         timestamptz NOT NULL,
  actor        text        NOT NULL,
  roles        text[]      NOT NULL,
  kind         text        NOT NULL CHECK (kind IN ('read_unmasked', 'export', 'policy_change', 'denied', 'unauthenticated')),
  rpc          text        NOT NULL,
  collection   text        NOT NULL,
  record_ids   text[]      NOT NULL,
  fields       text[]      NOT NULL,
  reason       text        NOT NULL,
  device       text        NOT NULL,
  device_class text        NOT NULL,
  peer         text        NOT NULL,
  details      jsonb       NOT NULL,
  prev_hash    text        NOT NULL,
  hash         text        NOT NULL,
  PRIMARY KEY (tenant, seq)
);
CREATE INDEX audit_log_actor_idx ON audit_log (tenant, actor, seq);
CREATE INDEX audit_log_kind_idx ON audit_log (tenant, kind, seq);
CREATE INDEX audit_log_time_idx ON audit_log (tenant, time);
CREATE INDEX audit_log_records_idx ON audit_log USING gin (record_ids);
