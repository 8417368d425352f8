// Applying one validated mutation to the current state of its record: pure,
// no I/O. The write pipeline calls it inside a batch transaction, with the
// record already locked. Concurrent edits are merged field by field
// (../conflicts/merge.ts); deleting and undeleting are edits of the
// pseudo-field `_deleted`, merged last-writer-wins.
import { decideField, laterWins, type FieldDecision } from "../conflicts/merge.js";
import { DomainError, invalidArgument } from "../platform/errors.js";
import type { CollectionSchema, ConflictPolicy, StoredValue } from "../schema/types.js";
import { missingRequired, storedEquals } from "../schema/values.js";
import type { FieldClock, FieldOutcome, MutationInput, MutationResult, StoredRecord } from "./model.js";

/** Pseudo-field whose clock records the last delete or undelete of a record. */
export const DELETED_FIELD = "_deleted";

export interface TicketCandidate {
  /** Null with `cleared`: the candidate is to clear the field. */
  value: StoredValue;
  cleared: boolean;
  clock: FieldClock;
  clientMutationId: string;
}

export interface OpenTicket {
  id: string;
  field: string;
  /** The field's clock version when the ticket opened; resolving needs it unchanged. */
  fieldVersion: number;
  candidates: TicketCandidate[];
}

/** A ticket to open, or candidates to add to an open one. */
export interface TicketEdit {
  ticketId: string;
  field: string;
  opened: boolean;
  fieldVersion: number;
  /** Candidates to append (on open: the current value first). */
  candidates: TicketCandidate[];
}

export interface ApplyContext {
  tenant: string;
  actor: string;
  schema: CollectionSchema;
  /** The record id to create when the mutation's record does not exist yet. */
  id: string;
  /** HLC of this edit (see conflicts/hlc.ts). */
  hlc: bigint;
  now: Date;
  /** Open review tickets of this record, by field. */
  openTickets: ReadonlyMap<string, OpenTicket>;
  newTicketId: () => string;
}

export interface AppliedChange {
  /** The record after the mutation (the same version when only decisions were recorded). */
  record: StoredRecord;
  oldVersion: number;
  set: Record<string, StoredValue>;
  cleared: string[];
  clocks: Record<string, FieldClock>;
  created: boolean;
  /** Conflict decisions to keep in history even when no field changed. */
  decisions: FieldOutcome[];
  tickets: TicketEdit[];
}

export interface ApplyOutcome {
  /** Null when the mutation changed nothing and decided nothing. */
  change: AppliedChange | null;
  result: MutationResult;
}

/**
 * How errors name a mutation's record: by id, or, for an identity value no
 * record holds, by that field (the id is made up only when a record is
 * created, and the value itself stays out of error metadata).
 */
interface TargetName {
  collection: string;
  /** Empty for an identity value no record holds. */
  id: string;
  text: string;
}

function targetName(current: StoredRecord | null, m: MutationInput, id: string): TargetName {
  if (current || "id" in m.target) return { collection: m.collection, id, text: `record ${m.collection}/${id}` };
  return { collection: m.collection, id: "", text: `the ${m.collection} record with this ${m.target.identity.field}` };
}

function targetFacts(t: TargetName): { metadata: Record<string, string>; resource?: { type: string; name: string } } {
  return t.id ? { metadata: { collection: t.collection, id: t.id }, resource: { type: "record", name: `${t.collection}/${t.id}` } } : { metadata: { collection: t.collection } };
}

function versionMismatch(t: TargetName, expected: number, current: number): DomainError {
  const { metadata, resource } = targetFacts(t);
  return new DomainError("aborted", `${t.text} is at version ${current}, not the expected ${expected}; re-read it and retry`, {
    reason: "VERSION_MISMATCH",
    metadata: { ...metadata, expected_version: String(expected), current_version: String(current) },
    resource,
  });
}

function baseVersionAhead(t: TargetName, base: number, current: number): DomainError {
  const { metadata, resource } = targetFacts(t);
  return new DomainError("failed_precondition", `base_version ${base} is ahead of ${t.text}, which is at version ${current}; send the version your edit started from`, {
    reason: "BASE_VERSION_AHEAD",
    metadata: { ...metadata, base_version: String(base), current_version: String(current) },
    violations: [{ field: "base_version", description: `at most the record's version, ${current}`, reason: "BASE_VERSION_AHEAD" }],
    resource,
  });
}

/** The error for a mutation whose record does not exist (`id`: the id it would have had). */
export function missingRecord(m: MutationInput, id: string): DomainError {
  return recordNotFound(targetName(null, m, id));
}

function recordNotFound(t: TargetName): DomainError {
  const { metadata, resource } = targetFacts(t);
  return new DomainError("not_found", `${t.text} does not exist`, { reason: "RECORD_NOT_FOUND", metadata, resource });
}

function policyOf(schema: CollectionSchema, field: string): ConflictPolicy {
  return schema.fields.get(field)?.policy ?? schema.defaultPolicy;
}

/**
 * Applies `m` to `current` (null: no such record). Throws a DomainError when
 * the mutation must fail as a whole; never mutates its inputs.
 */
export function applyMutation(current: StoredRecord | null, m: MutationInput, ctx: ApplyContext): ApplyOutcome {
  const id = current?.id ?? ctx.id;
  const currentVersion = current?.version ?? 0;
  if (m.expectedVersion !== undefined && m.expectedVersion !== currentVersion) {
    throw versionMismatch(targetName(current, m, id), m.expectedVersion, currentVersion);
  }
  // A base the record never reached would make every field look edited after
  // it, so the conflict policies (reject, keep_original, review) never fire.
  if (m.baseVersion > currentVersion) throw baseVersionAhead(targetName(current, m, id), m.baseVersion, currentVersion);
  const newVersion = currentVersion + 1;
  const clock: FieldClock = { version: newVersion, hlc: ctx.hlc, source: m.source, actor: ctx.actor, device: m.device };
  if (m.delete) return applyDelete(current, m, ctx, clock);

  // An edit racing a delete it never saw: the later of the two wins.
  const deleteClock = current?.clocks[DELETED_FIELD];
  if (current?.deleted && deleteClock && deleteClock.version > m.baseVersion && m.baseVersion > 0) {
    if (!laterWins({ value: true, clock }, { value: true, clock: deleteClock })) {
      const lost = [...Object.entries(m.set), ...m.clear.map((f): [string, null] => [f, null])].map(
        ([field, proposed]): FieldOutcome => ({ field, status: "superseded", policy: "lww", winner: deleteClock, proposed }),
      );
      return decisionsOnly(current, lost);
    }
  }

  const fields: Record<string, StoredValue> = { ...(current?.fields ?? {}) };
  const clocks: Record<string, FieldClock> = { ...(current?.clocks ?? {}) };
  const set: Record<string, StoredValue> = {};
  const cleared: string[] = [];
  const changedClocks: Record<string, FieldClock> = {};
  const outcomes: FieldOutcome[] = [];
  const tickets: TicketEdit[] = [];
  const rejected: { field: string; winner: FieldClock }[] = [];

  const edits: [string, StoredValue | undefined][] = [
    ...Object.entries(m.set),
    ...m.clear.map((f): [string, undefined] => [f, undefined]),
  ];
  for (const [field, value] of edits) {
    const policy = policyOf(ctx.schema, field);
    const decision: FieldDecision = current
      ? decideField(
          { policy, sourcePriority: ctx.schema.sourcePriority },
          { value: current.fields[field], clock: current.clocks[field] },
          { value, clock },
          m.baseVersion,
          storedEquals,
        )
      : { kind: "apply" };
    switch (decision.kind) {
      case "unchanged":
        outcomes.push({ field, status: "unchanged" });
        break;
      case "apply":
        if (value === undefined) {
          delete fields[field];
          cleared.push(field);
        } else {
          fields[field] = value;
          set[field] = value;
        }
        clocks[field] = changedClocks[field] = clock;
        outcomes.push({ field, status: "applied", ...(decision.policy ? { policy: decision.policy } : {}) });
        break;
      case "superseded":
        outcomes.push({ field, status: "superseded", policy: decision.policy, winner: decision.winner, proposed: value ?? null });
        break;
      case "kept":
        outcomes.push({ field, status: "kept", policy: "keep_original", winner: decision.winner, proposed: value ?? null });
        break;
      case "reject":
        rejected.push({ field, winner: decision.winner });
        break;
      case "review": {
        const edit = reviewTicket(current!, field, { value: value ?? null, cleared: value === undefined, clock, clientMutationId: m.clientMutationId }, ctx);
        tickets.push(edit);
        outcomes.push({ field, status: "queued_for_review", policy: "manual_review", ticketId: edit.ticketId, proposed: value ?? null });
        break;
      }
    }
  }
  if (rejected.length > 0) throw concurrentEditRejected(m.collection, id, currentVersion, rejected);

  const revived = current?.deleted === true;
  if (revived) clocks[DELETED_FIELD] = changedClocks[DELETED_FIELD] = clock;
  const missing = missingRequired(ctx.schema, fields);
  if (missing.length > 0) {
    throw invalidArgument(
      `${m.collection} requires ${missing.join(", ")}`,
      missing.map((f) => ({ field: `set.${f}`, description: `${f} is required in ${m.collection}`, reason: "REQUIRED" })),
      "REQUIRED_FIELD_MISSING",
    );
  }

  const decisions = outcomes.filter((o) => o.policy !== undefined && o.status !== "applied");
  if (current && Object.keys(changedClocks).length === 0) {
    if (decisions.length === 0) return { change: null, result: resultOf(current, false, outcomes, false) };
    const only = decisionsOnly(current, outcomes);
    return { ...only, change: { ...only.change!, tickets } };
  }
  const record: StoredRecord = {
    tenant: ctx.tenant,
    collection: m.collection,
    id,
    version: newVersion,
    fields,
    clocks,
    deleted: false,
    createTime: current?.createTime ?? ctx.now,
    updateTime: ctx.now,
  };
  return {
    change: {
      record,
      oldVersion: currentVersion,
      set,
      cleared,
      clocks: changedClocks,
      created: current === null,
      decisions: outcomes.filter((o) => o.policy !== undefined),
      tickets,
    },
    result: resultOf(record, current === null, outcomes, false),
  };
}

function applyDelete(current: StoredRecord | null, m: MutationInput, ctx: ApplyContext, clock: FieldClock): ApplyOutcome {
  if (!current) throw recordNotFound(targetName(current, m, ctx.id));
  if (current.deleted) return { change: null, result: resultOf(current, false, [{ field: DELETED_FIELD, status: "unchanged" }], true) };
  // A delete from a stale base loses to any later edit it did not see.
  const newer = Object.entries(current.clocks)
    .filter(([, c]) => c.version > m.baseVersion && m.baseVersion > 0)
    .map(([, c]) => c)
    .find((c) => !laterWins({ value: true, clock }, { value: true, clock: c }));
  if (newer) return decisionsOnly(current, [{ field: DELETED_FIELD, status: "superseded", policy: "lww", winner: newer }]);
  const record: StoredRecord = {
    ...current,
    version: current.version + 1,
    deleted: true,
    clocks: { ...current.clocks, [DELETED_FIELD]: clock },
    updateTime: ctx.now,
  };
  return {
    change: {
      record,
      oldVersion: current.version,
      set: {},
      cleared: [],
      clocks: { [DELETED_FIELD]: clock },
      created: false,
      decisions: [],
      tickets: [],
    },
    result: resultOf(record, false, [{ field: DELETED_FIELD, status: "applied" }], true),
  };
}

/** A mutation that changed no field but lost or queued some: history still records who lost to whom. */
function decisionsOnly(current: StoredRecord, outcomes: FieldOutcome[]): ApplyOutcome {
  return {
    change: {
      record: current,
      oldVersion: current.version,
      set: {},
      cleared: [],
      clocks: {},
      created: false,
      decisions: outcomes.filter((o) => o.policy !== undefined),
      tickets: [],
    },
    result: resultOf(current, false, outcomes, current.deleted),
  };
}

function reviewTicket(current: StoredRecord, field: string, candidate: TicketCandidate, ctx: ApplyContext): TicketEdit {
  const open = ctx.openTickets.get(field);
  if (open) return { ticketId: open.id, field, opened: false, fieldVersion: open.fieldVersion, candidates: [candidate] };
  const clock = current.clocks[field]!;
  const value = current.fields[field];
  const incumbent: TicketCandidate = { value: value ?? null, cleared: value === undefined, clock, clientMutationId: "" };
  return { ticketId: ctx.newTicketId(), field, opened: true, fieldVersion: clock.version, candidates: [incumbent, candidate] };
}

function concurrentEditRejected(collection: string, id: string, version: number, rejected: { field: string; winner: FieldClock }[]): DomainError {
  const names = rejected.map((r) => r.field);
  return new DomainError(
    "aborted",
    `record ${collection}/${id} changed ${names.join(", ")} since your base version; the schema rejects concurrent edits of ${names.length === 1 ? "this field" : "these fields"}: re-read version ${version} and retry`,
    {
      reason: "CONCURRENT_EDIT_REJECTED",
      metadata: { collection, id, current_version: String(version), conflicting_fields: names.join(",") },
      resource: { type: "record", name: `${collection}/${id}` },
      violations: rejected.map((r) => ({
        field: `set.${r.field}`,
        description: `changed at version ${r.winner.version} by ${r.winner.actor || "?"} from ${r.winner.source || "?"}`,
        reason: "CONCURRENT_EDIT",
      })),
    },
  );
}

function resultOf(r: StoredRecord, created: boolean, fields: FieldOutcome[], deleted: boolean): MutationResult {
  return { collection: r.collection, id: r.id, version: r.version, created, replayed: false, deleted, fields, cursor: "" };
}
