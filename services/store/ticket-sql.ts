// SQL of the conflict review queue (conflict_tickets).
import type { Pool, PoolClient } from "pg";
import type { OpenTicket, TicketCandidate, TicketEdit } from "../records/apply-mutation.js";
import type { FieldClock } from "../records/model.js";
import type { StoredValue } from "../schema/types.js";
import { clockFromJson, clockToJson, type ClockJson } from "./clock-json.js";
import { tenantConditions } from "./where.js";

export type TicketStatus = "open" | "resolved" | "dismissed";

export interface TicketResolution {
  /** Who resolved or dismissed it. */
  by: string;
  at: string;
  /** Index of the chosen candidate; -1 for a value supplied by the resolver; absent when dismissed. */
  candidate?: number;
  /** Record version the resolution wrote; absent when dismissed. */
  version?: number;
}

export interface ConflictTicket extends OpenTicket {
  tenant: string;
  collection: string;
  recordId: string;
  status: TicketStatus;
  resolution: TicketResolution | null;
  createTime: Date;
  updateTime: Date;
}

export interface TicketWrite {
  tenant: string;
  collection: string;
  recordId: string;
  edit: TicketEdit;
}

interface CandidateJson {
  value: StoredValue;
  cleared: boolean;
  clock: ClockJson;
  client_mutation_id: string;
}

interface TicketRow {
  tenant: string;
  id: string;
  collection: string;
  record_id: string;
  field: string;
  status: TicketStatus;
  field_version: string;
  candidates: CandidateJson[];
  resolution: TicketResolution | null;
  create_time: Date;
  update_time: Date;
}

const TICKET_COLUMNS =
  "tenant, id, collection, record_id, field, status, field_version, candidates, resolution, create_time, update_time";

function candidateToJson(c: TicketCandidate): CandidateJson {
  return { value: c.value, cleared: c.cleared, clock: clockToJson(c.clock), client_mutation_id: c.clientMutationId };
}

function candidateFromJson(c: CandidateJson): TicketCandidate {
  const clock: FieldClock = clockFromJson(c.clock);
  return { value: c.value, cleared: c.cleared, clock, clientMutationId: c.client_mutation_id };
}

export function toTicket(r: TicketRow): ConflictTicket {
  return {
    tenant: r.tenant,
    id: r.id,
    collection: r.collection,
    recordId: r.record_id,
    field: r.field,
    status: r.status,
    fieldVersion: Number(r.field_version),
    candidates: r.candidates.map(candidateFromJson),
    resolution: r.resolution,
    createTime: r.create_time,
    updateTime: r.update_time,
  };
}

/** Open tickets of the given records, keyed by `${tenant}\0${collection}\0${recordId}` then field. */
export async function loadOpenTickets(
  db: PoolClient,
  records: readonly { tenant: string; collection: string; id: string }[],
): Promise<Map<string, Map<string, OpenTicket>>> {
  const out = new Map<string, Map<string, OpenTicket>>();
  if (records.length === 0) return out;
  const res = await db.query<TicketRow>(
    `SELECT t.* FROM json_to_recordset($1::json) AS k(tenant text, collection text, id text) CROSS JOIN LATERAL
       (SELECT ${TICKET_COLUMNS} FROM conflict_tickets
         WHERE status = 'open' AND tenant = k.tenant AND collection = k.collection AND record_id = k.id) t`,
    [JSON.stringify(records.map((r) => ({ tenant: r.tenant, collection: r.collection, id: r.id })))],
  );
  for (const row of res.rows) {
    const t = toTicket(row);
    const key = `${t.tenant}\u0000${t.collection}\u0000${t.recordId}`;
    if (!out.has(key)) out.set(key, new Map());
    out.get(key)!.set(t.field, t);
  }
  return out;
}

/** Opens new tickets and appends candidates to open ones. */
export async function writeTickets(db: PoolClient, writes: readonly TicketWrite[]): Promise<void> {
  const opened = writes.filter((w) => w.edit.opened);
  const joined = writes.filter((w) => !w.edit.opened);
  if (opened.length > 0) {
    await db.query(
      `INSERT INTO conflict_tickets (tenant, id, collection, record_id, field, status, field_version, candidates)
       SELECT t, i, c, r, f, 'open', v, d FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::jsonb[])
         AS u(t, i, c, r, f, v, d)`,
      [
        opened.map((w) => w.tenant),
        opened.map((w) => w.edit.ticketId),
        opened.map((w) => w.collection),
        opened.map((w) => w.recordId),
        opened.map((w) => w.edit.field),
        opened.map((w) => w.edit.fieldVersion),
        opened.map((w) => JSON.stringify(w.edit.candidates.map(candidateToJson))),
      ],
    );
  }
  for (const w of joined) {
    await db.query(
      `UPDATE conflict_tickets SET candidates = candidates || $3::jsonb, update_time = date_trunc('milliseconds', now())
        WHERE tenant = $1 AND id = $2 AND status = 'open'`,
      [w.tenant, w.edit.ticketId, JSON.stringify(w.edit.candidates.map(candidateToJson))],
    );
  }
}

export interface TicketClose {
  tenant: string;
  id: string;
  status: Exclude<TicketStatus, "open">;
  resolution: TicketResolution;
}

/** Marks open tickets resolved or dismissed; returns the `${tenant}\0${id}` of those that were still open. */
export async function closeTickets(db: Pool | PoolClient, closes: readonly TicketClose[]): Promise<Set<string>> {
  const closed = new Set<string>();
  for (const c of closes) {
    const res = await db.query<{ id: string }>(
      `UPDATE conflict_tickets SET status = $3, resolution = $4::jsonb, update_time = date_trunc('milliseconds', now())
        WHERE tenant = $1 AND id = $2 AND status = 'open' RETURNING id`,
      [c.tenant, c.id, c.status, JSON.stringify(c.resolution)],
    );
    if (res.rows[0]) closed.add(`${c.tenant}\u0000${c.id}`);
  }
  return closed;
}

export async function getTicket(db: Pool | PoolClient, tenant: string, id: string, lock = false): Promise<ConflictTicket | null> {
  const res = await db.query<TicketRow>(
    `SELECT ${TICKET_COLUMNS} FROM conflict_tickets WHERE tenant = $1 AND id = $2${lock ? " FOR UPDATE" : ""}`,
    [tenant, id],
  );
  return res.rows[0] ? toTicket(res.rows[0]) : null;
}

export interface TicketQuery {
  tenant: string;
  collection?: string;
  recordId?: string;
  field?: string;
  status?: TicketStatus;
  /** Only tickets opened before this time. */
  createdBefore?: Date;
  /** Keyset position: (create_time, id) of the last ticket of the previous page. */
  after?: { time: Date; id: string };
  limit: number;
}

export async function listTickets(db: Pool, q: TicketQuery): Promise<ConflictTicket[]> {
  const { where, params, add } = tenantConditions(q.tenant);
  if (q.collection) add("collection = ?", q.collection);
  if (q.recordId) add("record_id = ?", q.recordId);
  if (q.field) add("field = ?", q.field);
  if (q.status) add("status = ?", q.status);
  if (q.createdBefore) add("create_time < ?", q.createdBefore);
  if (q.after) {
    params.push(q.after.time, q.after.id);
    where.push(`(create_time, id) > ($${params.length - 1}, $${params.length})`);
  }
  params.push(q.limit);
  const res = await db.query<TicketRow>(
    `SELECT ${TICKET_COLUMNS} FROM conflict_tickets WHERE ${where.join(" AND ")} ORDER BY create_time, id LIMIT $${params.length}`,
    params,
  );
  return res.rows.map(toTicket);
}
