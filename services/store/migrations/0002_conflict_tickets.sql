-- Review queue: a concurrent edit of a `manual_review` field opens a ticket
-- holding every candidate value with its clock; further concurrent edits of
-- the same field join the open ticket until a person resolves or dismisses it.
CREATE TABLE conflict_tickets (
  tenant        text        NOT NULL,
  id            text        NOT NULL,
  collection    text        NOT NULL,
  record_id     text        NOT NULL,
  field         text        NOT NULL,
  status        text        NOT NULL CHECK (status IN ('open', 'resolved', 'dismissed')),
  -- The field's clock version when the ticket opened: resolving requires it
  -- unchanged, so a decision is never taken on a value that moved on.
  field_version bigint      NOT NULL,
  -- [{value, cleared, clock, client_mutation_id}], the incumbent value first.
  candidates    jsonb       NOT NULL,
  -- {by, at, candidate, version} once resolved or dismissed.
  resolution    jsonb,
  -- Millisecond precision: page tokens carry (create_time, id) through
  -- JavaScript Dates, which would otherwise round microseconds away and
  -- repeat or skip tickets at page boundaries.
  create_time   timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  update_time   timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  PRIMARY KEY (tenant, id)
);
CREATE UNIQUE INDEX conflict_tickets_open_idx ON conflict_tickets (tenant, collection, record_id, field) WHERE status = 'open';
CREATE INDEX conflict_tickets_list_idx ON conflict_tickets (tenant, status, create_time, id);
