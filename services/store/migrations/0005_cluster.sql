-- Leader fencing and the record of leader duties (services/cluster, issue 6).
--
-- A leader's term is the etcd revision that created its election key; terms
-- grow with every election. Every transaction of a leader duty first claims
-- its term on the single `leader` row below, which accepts only a term at
-- least as high as the highest it has seen and stays locked until the
-- transaction ends. So once a new leader has claimed its term, a paused or
-- partitioned ex-leader can no longer commit anything: its claim is refused
-- and its transaction rolls back.
CREATE TABLE leader_fence (
  name       text        PRIMARY KEY,
  term       bigint      NOT NULL CHECK (term >= 0),
  holder     text        NOT NULL,
  -- When `term` was first claimed (unchanged by later claims of the same term).
  claimed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One row per committed duty transaction, written inside it under the fence:
-- the audit of what each leader term did (and the proof, in tests, that no
-- ex-leader's write landed after its successor's claim). `id` is drawn while
-- the fence row is locked, so id order is commit order.
CREATE TABLE duty_runs (
  id       bigserial   PRIMARY KEY,
  term     bigint      NOT NULL,
  holder   text        NOT NULL,
  -- claim | change_log_retention | ticket_expiry | idempotency_purge | duty_run_purge
  duty     text        NOT NULL,
  affected bigint      NOT NULL DEFAULT 0,
  detail   jsonb       NOT NULL DEFAULT '{}',
  run_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX duty_runs_term_idx ON duty_runs (term, id);
CREATE INDEX duty_runs_time_idx ON duty_runs (run_at);

-- Retention deletes the oldest changes by seq, expiry closes the oldest open
-- tickets, the idempotency purge drops the oldest results: index their ages.
CREATE INDEX conflict_tickets_open_age_idx ON conflict_tickets (create_time) WHERE status = 'open';
CREATE INDEX applied_mutations_age_idx ON applied_mutations (create_time);
