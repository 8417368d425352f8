// Domain model of records and mutations, independent of protobuf and SQL.
import type { StoredValue } from "../schema/types.js";

export const DEFAULT_TENANT = "default";

/** Who last set a field, and when (see FieldClock in types.proto). */
export interface FieldClock {
  /** Record version that last set or cleared the field. */
  version: number;
  /** Hybrid logical clock, ms << 16 | counter (see ../conflicts/hlc.ts). */
  hlc: bigint;
  source: string;
  actor: string;
  device: string;
}

export interface StoredRecord {
  tenant: string;
  collection: string;
  id: string;
  version: number;
  fields: Record<string, StoredValue>;
  /** Clock of every field ever set or cleared (a cleared field keeps its clock). */
  clocks: Record<string, FieldClock>;
  deleted: boolean;
  createTime: Date;
  updateTime: Date;
}

export type RecordTarget = { id: string } | { identity: { field: string; value: StoredValue } };

/** A mutation after normalization and validation against the schema. */
export interface MutationInput {
  collection: string;
  target: RecordTarget;
  set: Record<string, StoredValue>;
  clear: string[];
  /** Present: apply only at exactly this version (0 = must not exist). */
  expectedVersion?: number;
  /** The version the writer's edit was based on; 0 = no base (blind write). */
  baseVersion: number;
  clientMutationId: string;
  source: string;
  device: string;
  /** When the edit was made on the device, ms since epoch; absent = now. */
  editTimeMs?: number;
  delete: boolean;
  /**
   * Set when the mutation resolves a review ticket: it applies only while the
   * ticket is open and the field has not moved on, and closes the ticket.
   */
  resolvesTicket?: { id: string; field: string; candidate: number };
}

export type FieldOutcomeStatus = "applied" | "superseded" | "kept" | "queued_for_review" | "unchanged";

export interface FieldOutcome {
  field: string;
  status: FieldOutcomeStatus;
  /** The policy that decided a concurrent edit. */
  policy?: string;
  /** Clock of the value that won when this write did not. */
  winner?: FieldClock;
  ticketId?: string;
  /** In history: the value a losing or queued edit proposed (null: it cleared the field). */
  proposed?: StoredValue | null;
}

export interface MutationResult {
  collection: string;
  id: string;
  version: number;
  created: boolean;
  replayed: boolean;
  deleted: boolean;
  fields: FieldOutcome[];
  /** Change-log cursor of the change; empty when nothing changed. */
  cursor: string;
}

/** One applied change as kept in the change log. */
export interface ChangeEntry {
  seq: bigint;
  tenant: string;
  collection: string;
  recordId: string;
  oldVersion: number;
  newVersion: number;
  set: Record<string, StoredValue>;
  cleared: string[];
  deleted: boolean;
  created: boolean;
  actor: string;
  source: string;
  device: string;
  clientMutationId: string;
  commitTime: Date;
  clocks: Record<string, FieldClock>;
  decisions: FieldOutcome[];
}
