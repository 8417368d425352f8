// SQL of the audit log (audit_log, migration 0004): appending to each
// tenant's hash chain, querying, and reading the chain back for verification.
import type { Pool, PoolClient } from "pg";
import { GENESIS_HASH, link, type AuditEntry, type AuditEvent, type AuditKind } from "../access/audit-chain.js";
import { toStoreError } from "./pg-errors.js";
import { tenantConditions } from "./where.js";

export interface AuditQuery {
  tenant: string;
  actor?: string;
  kind?: AuditKind;
  collection?: string;
  recordId?: string;
  since?: Date;
  until?: Date;
  /** Only entries below this seq (paging, newest first). */
  beforeSeq?: number;
  limit: number;
}

interface AuditRow {
  tenant: string;
  seq: string;
  time: Date;
  actor: string;
  roles: string[];
  kind: AuditKind;
  rpc: string;
  collection: string;
  record_ids: string[];
  fields: string[];
  reason: string;
  device: string;
  device_class: string;
  peer: string;
  details: Record<string, string>;
  prev_hash: string;
  hash: string;
}

/** Advisory-lock namespace of audit appends ("dmau"); the second key is the tenant's hash. */
const AUDIT_LOCK_SPACE = 0x64_6d_61_75;

/**
 * Appends events to their tenants' chains. Run inside a transaction (the
 * lock is transaction-scoped): pass the client of an action's own
 * transaction to audit it atomically with the action.
 */
export async function appendAudit(client: PoolClient, events: readonly AuditEvent[], now = new Date()): Promise<AuditEntry[]> {
  const byTenant = new Map<string, AuditEvent[]>();
  for (const e of events) {
    if (!byTenant.has(e.tenant)) byTenant.set(e.tenant, []);
    byTenant.get(e.tenant)!.push(e);
  }
  // The hash covers the time as JavaScript renders it (milliseconds), which timestamptz keeps exactly.
  const time = now;
  const out: AuditEntry[] = [];
  // Tenants in a fixed order, so two appenders never wait on each other in a cycle.
  for (const tenant of [...byTenant.keys()].sort()) {
    await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [AUDIT_LOCK_SPACE, tenant]);
    const last = await client.query<{ seq: string; hash: string }>(
      "SELECT seq, hash FROM audit_log WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
      [tenant],
    );
    const head = last.rows[0];
    const entries = link(head ? Number(head.seq) : 0, head?.hash ?? GENESIS_HASH, time, byTenant.get(tenant)!);
    await client.query(
      `INSERT INTO audit_log (tenant, seq, time, actor, roles, kind, rpc, collection, record_ids, fields, reason,
                              device, device_class, peer, details, prev_hash, hash)
       SELECT e.tenant, e.seq, e.time, e.actor, ARRAY(SELECT jsonb_array_elements_text(e.roles)), e.kind, e.rpc,
              e.collection, ARRAY(SELECT jsonb_array_elements_text(e.record_ids)),
              ARRAY(SELECT jsonb_array_elements_text(e.fields)), e.reason, e.device, e.device_class, e.peer,
              e.details, e.prev_hash, e.hash
         FROM jsonb_to_recordset($1::jsonb) AS e(tenant text, seq bigint, time timestamptz, actor text, roles jsonb,
              kind text, rpc text, collection text, record_ids jsonb, fields jsonb, reason text, device text,
              device_class text, peer text, details jsonb, prev_hash text, hash text)`,
      [
        JSON.stringify(
          entries.map((e) => ({
            tenant: e.tenant,
            seq: e.seq,
            time: e.time.toISOString(),
            actor: e.actor,
            roles: e.roles,
            kind: e.kind,
            rpc: e.rpc,
            collection: e.collection,
            record_ids: e.recordIds,
            fields: e.fields,
            reason: e.reason,
            device: e.device,
            device_class: e.deviceClass,
            peer: e.peer,
            details: e.details,
            prev_hash: e.prevHash,
            hash: e.hash,
          })),
        ),
      ],
    );
    out.push(...entries);
  }
  return out;
}

export class AuditStore {
  constructor(private readonly pool: Pool) {}

  /** Appends in a transaction of its own. */
  async append(events: readonly AuditEvent[]): Promise<AuditEntry[]> {
    if (events.length === 0) return [];
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (e) {
      throw toStoreError(e);
    }
    let broken = false;
    try {
      await client.query("BEGIN");
      const entries = await appendAudit(client, events);
      await client.query("COMMIT");
      return entries;
    } catch (e) {
      await client.query("ROLLBACK").catch(() => (broken = true));
      throw toStoreError(e);
    } finally {
      client.release(broken);
    }
  }

  /** Newest first. */
  async query(q: AuditQuery): Promise<AuditEntry[]> {
    const { where, params, add } = tenantConditions(q.tenant);
    if (q.actor) add("actor = ?", q.actor);
    if (q.kind) add("kind = ?", q.kind);
    if (q.collection) add("collection = ?", q.collection);
    if (q.recordId) add("record_ids @> ARRAY[?::text]", q.recordId);
    if (q.since) add("time >= ?", q.since);
    if (q.until) add("time < ?", q.until);
    if (q.beforeSeq !== undefined) add("seq < ?", q.beforeSeq);
    params.push(q.limit);
    return this.rows(`SELECT * FROM audit_log WHERE ${where.join(" AND ")} ORDER BY seq DESC LIMIT $${params.length}`, params);
  }

  /** A tenant's chain, oldest first, after `afterSeq`. */
  async readChain(tenant: string, afterSeq: number, limit: number): Promise<AuditEntry[]> {
    return this.rows("SELECT * FROM audit_log WHERE tenant = $1 AND seq > $2 ORDER BY seq LIMIT $3", [tenant, afterSeq, limit]);
  }

  private async rows(sql: string, params: unknown[]): Promise<AuditEntry[]> {
    try {
      const res = await this.pool.query<AuditRow>(sql, params);
      return res.rows.map(toEntry);
    } catch (e) {
      throw toStoreError(e);
    }
  }
}

function toEntry(r: AuditRow): AuditEntry {
  return {
    tenant: r.tenant,
    seq: Number(r.seq),
    time: r.time,
    actor: r.actor,
    roles: r.roles,
    kind: r.kind,
    rpc: r.rpc,
    collection: r.collection,
    recordIds: r.record_ids,
    fields: r.fields,
    reason: r.reason,
    device: r.device,
    deviceClass: r.device_class,
    peer: r.peer,
    details: r.details,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}
