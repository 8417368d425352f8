// The audit log's entries and its hash chain. Pure: the store computes hashes
// with `chainHash` when it appends, and `verifyChain` recomputes them. Each
// entry's hash covers its predecessor's hash, its position and every column,
// so editing, deleting or reordering any entry breaks the chain from there on.
import { createHash } from "node:crypto";

export const AUDIT_KINDS = ["read_unmasked", "export", "policy_change", "denied", "unauthenticated"] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

/** What is recorded about one audited event. Never field values. */
export interface AuditEvent {
  tenant: string;
  actor: string;
  roles: string[];
  kind: AuditKind;
  rpc: string;
  collection: string;
  recordIds: string[];
  fields: string[];
  reason: string;
  device: string;
  deviceClass: string;
  peer: string;
  /** Small string facts (counts, revisions, the attempted action). */
  details: Record<string, string>;
}

export interface AuditEntry extends AuditEvent {
  seq: number;
  time: Date;
  prevHash: string;
  hash: string;
}

/** The predecessor of a tenant's first entry. */
export const GENESIS_HASH = "0".repeat(64);

/** sha256 (hex) of the previous hash and the entry's columns in a fixed order. */
export function chainHash(prevHash: string, seq: number, time: Date, e: AuditEvent): string {
  const details = Object.keys(e.details)
    .sort()
    .map((k) => [k, e.details[k]]);
  const body = JSON.stringify([
    prevHash,
    seq,
    time.toISOString(),
    e.tenant,
    e.actor,
    e.roles,
    e.kind,
    e.rpc,
    e.collection,
    e.recordIds,
    e.fields,
    e.reason,
    e.device,
    e.deviceClass,
    e.peer,
    details,
  ]);
  return createHash("sha256").update(body).digest("hex");
}

/** Links events after (`prevSeq`, `prevHash`), all stamped `time`. */
export function link(prevSeq: number, prevHash: string, time: Date, events: readonly AuditEvent[]): AuditEntry[] {
  const out: AuditEntry[] = [];
  let seq = prevSeq;
  let prev = prevHash;
  for (const e of events) {
    seq += 1;
    const hash = chainHash(prev, seq, time, e);
    out.push({ ...e, seq, time, prevHash: prev, hash });
    prev = hash;
  }
  return out;
}

export type ChainCheck =
  | { intact: true; checked: number; head: { seq: number; hash: string } | null }
  | { intact: false; checked: number; badSeq: number; problem: string };

/**
 * Verifies a run of consecutive entries, oldest first, continuing from
 * `after` (the entry before the run; null: the run starts the chain).
 */
export function verifyChain(entries: readonly AuditEntry[], after: { seq: number; hash: string } | null): ChainCheck {
  let prev = after ?? { seq: 0, hash: GENESIS_HASH };
  let checked = 0;
  for (const e of entries) {
    const bad = (problem: string): ChainCheck => ({ intact: false, checked, badSeq: e.seq, problem });
    if (e.seq !== prev.seq + 1) return bad(`entry ${e.seq} follows entry ${prev.seq}: entries are missing or reordered`);
    if (e.prevHash !== prev.hash) return bad(`entry ${e.seq} does not link to entry ${prev.seq}'s hash`);
    if (chainHash(e.prevHash, e.seq, e.time, e) !== e.hash) return bad(`entry ${e.seq} was changed after it was written`);
    prev = { seq: e.seq, hash: e.hash };
    checked++;
  }
  return { intact: true, checked, head: prev.seq === 0 ? null : prev };
}
