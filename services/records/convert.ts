// Translation between the protobuf API types and the record domain model,
// with request validation. Every problem of a request is collected and
// reported at once as field violations, so a client can fix them all.
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ChangeSchema,
  FieldClockSchema,
  FieldOutcome_Status,
  FieldOutcomeSchema,
  MutationResultSchema,
  RecordSchema,
  ValueSchema,
  type Change,
  type FieldClock as FieldClockPb,
  type FieldOutcome as FieldOutcomePb,
  type Mutation,
  type MutationResult as MutationResultPb,
  type Record as RecordPb,
  type RecordRef,
  type Value,
} from "../../gen/deltamesh/v1/types_pb.js";
import { DomainError, invalidArgument, isDomainError, type FieldViolation } from "../platform/errors.js";
import type { CollectionSchema, FieldSchema, SchemaSet, StoredValue } from "../schema/types.js";
import { checkClears, decodeFieldMap, decodeValue, encodeValue, storableText, timestampInRange } from "../schema/values.js";
import type {
  ChangeEntry,
  FieldClock,
  FieldOutcome,
  FieldOutcomeStatus,
  MutationInput,
  MutationResult,
  RecordTarget,
  StoredRecord,
} from "./model.js";

/** Longest client-chosen record id, source, device or mutation id. */
const MAX_NAME_LENGTH = 128;
const RECORD_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

export function collectionOf(schemas: SchemaSet, name: string, field = "collection"): CollectionSchema {
  const schema = schemas.collections.get(name);
  if (schema) return schema;
  if (!name) throw invalidArgument("collection is required", [{ field, description: "name a collection", reason: "REQUIRED" }]);
  throw new DomainError("not_found", `collection ${JSON.stringify(name)} does not exist`, {
    reason: "COLLECTION_NOT_FOUND",
    resource: { type: "collection", name },
    metadata: { collection: name },
  });
}

export interface ResolvedRef {
  collection: CollectionSchema;
  target: RecordTarget;
}

/** Validates a RecordRef; violations are reported under `path`. */
export function decodeRef(schemas: SchemaSet, ref: RecordRef | undefined, path: string, violations: FieldViolation[]): ResolvedRef | null {
  if (!ref) {
    violations.push({ field: path, description: "a record reference is required", reason: "REQUIRED" });
    return null;
  }
  const collection = collectionOf(schemas, ref.collection, `${path}.collection`);
  switch (ref.target.case) {
    case "id":
      if (!RECORD_ID.test(ref.target.value)) {
        violations.push({
          field: `${path}.id`,
          description: "an id is 1-128 characters of letters, digits and . _ : @ -, starting with a letter or digit",
          reason: "INVALID_ID",
        });
        return null;
      }
      return { collection, target: { id: ref.target.value } };
    case "identity": {
      const { field, value } = ref.target.value;
      const fieldSchema = collection.fields.get(field);
      if (!fieldSchema?.identity) {
        violations.push({
          field: `${path}.identity.field`,
          description: `${JSON.stringify(field)} is not an identity field of ${collection.name}; identity fields: ${collection.identityFields.join(", ") || "none"}`,
          reason: "NOT_AN_IDENTITY_FIELD",
        });
        return null;
      }
      const decoded = decodeValue(fieldSchema, value ?? create(ValueSchema), { defaultPhoneRegion: schemas.defaultPhoneRegion, path: `${path}.identity.value` });
      if (!decoded.ok) {
        violations.push(decoded.violation);
        return null;
      }
      return { collection, target: { identity: { field, value: decoded.value } } };
    }
    default:
      violations.push({ field: path, description: "set either id or identity", reason: "REQUIRED" });
      return null;
  }
}

/** Equality filters (FieldFilter) on a collection's fields; problems go to `violations` under `path`. */
export function decodeFilters(
  schemas: SchemaSet,
  collection: CollectionSchema,
  filters: readonly { field: string; value?: Value | undefined }[],
  path: string,
  violations: FieldViolation[],
): Record<string, StoredValue> {
  const equals: Record<string, StoredValue> = {};
  filters.forEach((f, i) => {
    const field = collection.fields.get(f.field);
    const at = `${path}[${i}]`;
    if (!field) {
      violations.push({ field: `${at}.field`, description: `${collection.name} has no field ${JSON.stringify(f.field)}`, reason: "UNKNOWN_FIELD" });
      return;
    }
    if (filters.findIndex((g) => g.field === f.field) !== i) {
      // Filters all apply, so two on one field would match nothing (or, read as one, silently drop one).
      violations.push({ field: `${at}.field`, description: `${f.field} is filtered on more than once; filter on each field once`, reason: "DUPLICATE_FILTER" });
      return;
    }
    const decoded = decodeValue(field, f.value ?? create(ValueSchema), { defaultPhoneRegion: schemas.defaultPhoneRegion, path: `${at}.value` });
    if (decoded.ok) equals[f.field] = decoded.value;
    else violations.push(decoded.violation);
  });
  return equals;
}

/** Checks a client-chosen name (mutation id, source, device): stored as text, so bounded and free of NUL. */
export function checkName(value: string, path: string, violations: FieldViolation[]): void {
  if (value.length > MAX_NAME_LENGTH) {
    violations.push({ field: path, description: `at most ${MAX_NAME_LENGTH} characters`, reason: "TOO_LONG" });
  } else if (!storableText(value)) {
    violations.push({ field: path, description: "contains a NUL character or an unpaired surrogate, which cannot be stored", reason: "INVALID_CHARACTER" });
  }
}

/**
 * A uint64 version as a number. Versions count a record's changes, so one
 * above 2^53 cannot match any record; refused rather than rounded (rounding
 * would name a version the client never sent).
 */
function decodeVersion(value: bigint, path: string, violations: FieldViolation[]): number {
  if (value <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(value);
  violations.push({ field: path, description: `at most ${Number.MAX_SAFE_INTEGER}; got ${value}`, reason: "OUT_OF_RANGE" });
  return 0;
}

function decodeEditTime(m: Mutation, path: string, violations: FieldViolation[]): number | undefined {
  if (!m.editTime) return undefined;
  if (timestampInRange(m.editTime)) return timestampDate(m.editTime).getTime();
  violations.push({ field: path, description: "a timestamp from year 1 to 9999 with nanos from 0 to 999,999,999", reason: "OUT_OF_RANGE" });
  return undefined;
}

/** Validates and normalizes a batch of mutations; throws INVALID_ARGUMENT listing every problem. */
export function decodeMutations(schemas: SchemaSet, mutations: readonly Mutation[]): MutationInput[] {
  const violations: FieldViolation[] = [];
  const inputs: MutationInput[] = [];
  mutations.forEach((m, i) => {
    const path = `mutations[${i}]`;
    let ref: ResolvedRef | null;
    try {
      ref = decodeRef(schemas, m.ref, `${path}.ref`, violations);
    } catch (e) {
      // An unknown collection fails the write as NOT_FOUND, naming the mutation.
      throw isDomainError(e) && e.kind === "not_found" ? e.withPrefix(path, { mutation_index: String(i) }) : e;
    }
    if (!ref) return;
    const ctx = { defaultPhoneRegion: schemas.defaultPhoneRegion, path: `${path}.set` };
    const decoded = decodeFieldMap(ref.collection, m.set, ctx);
    violations.push(...decoded.violations);
    violations.push(...checkClears(ref.collection, m.clear, `${path}.clear`));
    for (const field of m.clear) {
      if (field in m.set) {
        violations.push({ field: `${path}.clear`, description: `${field} is both set and cleared`, reason: "SET_AND_CLEARED" });
      }
    }
    if (m.delete && (Object.keys(m.set).length > 0 || m.clear.length > 0)) {
      violations.push({ field: `${path}.delete`, description: "a delete mutation cannot also set or clear fields", reason: "DELETE_WITH_FIELDS" });
    }
    if (!m.delete && Object.keys(m.set).length === 0 && m.clear.length === 0 && !("identity" in ref.target)) {
      violations.push({ field: path, description: "the mutation sets, clears and deletes nothing", reason: "EMPTY_MUTATION" });
    }
    checkName(m.clientMutationId, `${path}.client_mutation_id`, violations);
    checkName(m.source, `${path}.source`, violations);
    checkName(m.device, `${path}.device`, violations);
    inputs.push({
      collection: ref.collection.name,
      target: ref.target,
      set: decoded.values,
      clear: [...m.clear],
      expectedVersion: m.expectedVersion === undefined ? undefined : decodeVersion(m.expectedVersion, `${path}.expected_version`, violations),
      baseVersion: decodeVersion(m.baseVersion, `${path}.base_version`, violations),
      clientMutationId: m.clientMutationId,
      source: m.source,
      device: m.device,
      editTimeMs: decodeEditTime(m, `${path}.edit_time`, violations),
      delete: m.delete,
    });
  });
  if (violations.length > 0) {
    throw invalidArgument(
      `the write has ${violations.length} invalid field${violations.length === 1 ? "" : "s"}: ${violations
        .slice(0, 3)
        .map((v) => `${v.field}: ${v.description}`)
        .join("; ")}${violations.length > 3 ? "; ..." : ""}`,
      violations,
    );
  }
  return inputs;
}

export function encodeClock(c: FieldClock): FieldClockPb {
  return create(FieldClockSchema, { version: BigInt(c.version), hlc: c.hlc, source: c.source, actor: c.actor, device: c.device });
}

/** A masked value is its mask's text, whatever the field's type (see Record.masked_fields). */
export function encodeShown(field: FieldSchema, stored: StoredValue, masked: boolean): Value {
  return masked ? create(ValueSchema, { kind: { case: "stringValue", value: String(stored) } }) : encodeValue(field, stored);
}

/** `masked`: fields whose values are mask texts (services/access). */
export function encodeFields(schema: CollectionSchema | undefined, fields: Record<string, StoredValue>, masked: readonly string[] = []): Record<string, Value> {
  const out: Record<string, Value> = {};
  for (const [name, stored] of Object.entries(fields)) {
    const field = schema?.fields.get(name);
    // A field dropped from the schema since it was written is not served.
    if (field) out[name] = encodeShown(field, stored, masked.includes(name));
  }
  return out;
}

export function encodeRecord(schema: CollectionSchema | undefined, r: StoredRecord, masked: readonly string[] = []): RecordPb {
  return create(RecordSchema, {
    tenant: r.tenant,
    collection: r.collection,
    id: r.id,
    version: BigInt(r.version),
    fields: encodeFields(schema, r.fields, masked),
    clocks: Object.fromEntries(Object.entries(r.clocks).map(([k, c]) => [k, encodeClock(c)])),
    deleted: r.deleted,
    createTime: timestampFromDate(r.createTime),
    updateTime: timestampFromDate(r.updateTime),
    maskedFields: [...masked],
  });
}

export const OUTCOME_STATUS: Readonly<Record<FieldOutcomeStatus, FieldOutcome_Status>> = {
  applied: FieldOutcome_Status.APPLIED,
  superseded: FieldOutcome_Status.SUPERSEDED,
  kept: FieldOutcome_Status.KEPT,
  queued_for_review: FieldOutcome_Status.QUEUED_FOR_REVIEW,
  unchanged: FieldOutcome_Status.UNCHANGED,
};

/** With a schema, history decisions also carry the value the edit proposed. */
export function encodeOutcome(o: FieldOutcome, schema?: CollectionSchema, masked: readonly string[] = []): FieldOutcomePb {
  const field = schema?.fields.get(o.field);
  const proposed = field && o.proposed !== undefined && o.proposed !== null ? encodeShown(field, o.proposed, masked.includes(o.field)) : undefined;
  return create(FieldOutcomeSchema, {
    field: o.field,
    status: OUTCOME_STATUS[o.status],
    policy: o.policy ?? "",
    winner: o.winner ? encodeClock(o.winner) : undefined,
    ticketId: o.ticketId ?? "",
    proposed,
    proposedClear: field !== undefined && o.proposed === null,
  });
}

export function encodeResult(r: MutationResult): MutationResultPb {
  return create(MutationResultSchema, {
    collection: r.collection,
    id: r.id,
    version: BigInt(r.version),
    created: r.created,
    replayed: r.replayed,
    deleted: r.deleted,
    fields: r.fields.map((o) => encodeOutcome(o)),
    cursor: r.cursor,
  });
}

export function encodeChange(schema: CollectionSchema | undefined, c: ChangeEntry, cursor: string, masked: readonly string[] = []): Change {
  return create(ChangeSchema, {
    cursor,
    tenant: c.tenant,
    collection: c.collection,
    recordId: c.recordId,
    oldVersion: BigInt(c.oldVersion),
    newVersion: BigInt(c.newVersion),
    set: encodeFields(schema, c.set, masked),
    cleared: c.cleared,
    deleted: c.deleted,
    created: c.created,
    actor: c.actor,
    source: c.source,
    device: c.device,
    clientMutationId: c.clientMutationId,
    commitTime: timestampFromDate(c.commitTime),
    clocks: Object.fromEntries(Object.entries(c.clocks).map(([k, v]) => [k, encodeClock(v)])),
    decisions: c.decisions.map((o) => encodeOutcome(o, schema, masked)),
    maskedFields: [...masked],
  });
}
