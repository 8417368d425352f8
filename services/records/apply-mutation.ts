// Applying one validated mutation to the current state of its record: pure,
// no I/O. The write pipeline calls it inside a batch transaction, with the
// record already locked.
import { DomainError, invalidArgument } from "../platform/errors.js";
import type { CollectionSchema, StoredValue } from "../schema/types.js";
import { missingRequired, storedEquals } from "../schema/values.js";
import type { FieldClock, FieldOutcome, MutationInput, MutationResult, StoredRecord } from "./model.js";

export interface ApplyContext {
  tenant: string;
  actor: string;
  schema: CollectionSchema;
  /** The record id to create when the mutation's record does not exist yet. */
  id: string;
  /** HLC of this edit (see conflicts/hlc.ts). */
  hlc: bigint;
  now: Date;
}

export interface AppliedChange {
  record: StoredRecord;
  oldVersion: number;
  set: Record<string, StoredValue>;
  cleared: string[];
  clocks: Record<string, FieldClock>;
  created: boolean;
}

export interface ApplyOutcome {
  /** Null when the mutation changed nothing (every field already held its value). */
  change: AppliedChange | null;
  result: MutationResult;
}

export function versionMismatch(collection: string, id: string, expected: number, current: number): DomainError {
  return new DomainError(
    "aborted",
    `record ${collection}/${id} is at version ${current}, not the expected ${expected}; re-read it and retry`,
    {
      reason: "VERSION_MISMATCH",
      metadata: { collection, id, expected_version: String(expected), current_version: String(current) },
      resource: { type: "record", name: `${collection}/${id}` },
    },
  );
}

/**
 * Applies `m` to `current` (null: no such record). Throws a DomainError when
 * the mutation must fail as a whole; never mutates `current`.
 */
export function applyMutation(current: StoredRecord | null, m: MutationInput, ctx: ApplyContext): ApplyOutcome {
  const id = current?.id ?? ctx.id;
  const currentVersion = current?.version ?? 0;
  if (m.expectedVersion !== undefined && m.expectedVersion !== currentVersion) {
    throw versionMismatch(m.collection, id, m.expectedVersion, currentVersion);
  }
  const newVersion = currentVersion + 1;
  const clock: FieldClock = { version: newVersion, hlc: ctx.hlc, source: m.source, actor: ctx.actor, device: m.device };

  if (m.delete) {
    if (!current || current.deleted) {
      if (!current) {
        throw new DomainError("not_found", `record ${m.collection}/${id} does not exist`, {
          reason: "RECORD_NOT_FOUND",
          resource: { type: "record", name: `${m.collection}/${id}` },
        });
      }
      return { change: null, result: resultOf(current, false, [], true) };
    }
    const record: StoredRecord = { ...current, version: newVersion, deleted: true, updateTime: ctx.now };
    return {
      change: { record, oldVersion: currentVersion, set: {}, cleared: [], clocks: {}, created: false },
      result: resultOf(record, false, [], true),
    };
  }

  const fields: Record<string, StoredValue> = { ...(current?.fields ?? {}) };
  const clocks: Record<string, FieldClock> = { ...(current?.clocks ?? {}) };
  const set: Record<string, StoredValue> = {};
  const cleared: string[] = [];
  const changedClocks: Record<string, FieldClock> = {};
  const outcomes: FieldOutcome[] = [];

  for (const [field, value] of Object.entries(m.set)) {
    if (field in fields && storedEquals(fields[field] as StoredValue, value)) {
      outcomes.push({ field, status: "unchanged" });
      continue;
    }
    fields[field] = value;
    set[field] = value;
    clocks[field] = changedClocks[field] = clock;
    outcomes.push({ field, status: "applied" });
  }
  for (const field of m.clear) {
    if (!(field in fields)) {
      outcomes.push({ field, status: "unchanged" });
      continue;
    }
    delete fields[field];
    cleared.push(field);
    clocks[field] = changedClocks[field] = clock;
    outcomes.push({ field, status: "applied" });
  }

  const missing = missingRequired(ctx.schema, fields);
  if (missing.length > 0) {
    throw invalidArgument(
      `${m.collection} requires ${missing.join(", ")}`,
      missing.map((f) => ({ field: `set.${f}`, description: `${f} is required in ${m.collection}`, reason: "REQUIRED" })),
      "REQUIRED_FIELD_MISSING",
    );
  }

  const revived = current?.deleted === true;
  if (current && !revived && Object.keys(changedClocks).length === 0) {
    return { change: null, result: resultOf(current, false, outcomes, false) };
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
    change: { record, oldVersion: currentVersion, set, cleared, clocks: changedClocks, created: current === null },
    result: resultOf(record, current === null, outcomes, false),
  };
}

function resultOf(r: StoredRecord, created: boolean, fields: FieldOutcome[], deleted: boolean): MutationResult {
  return { collection: r.collection, id: r.id, version: r.version, created, replayed: false, deleted, fields, cursor: "" };
}
