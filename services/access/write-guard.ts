// Authorization of writes, deletes and conflict resolutions, record by record.
// The write pipeline calls `check` inside its transaction with the locked
// current record and the merged result, so a write can neither touch a record
// outside the writer's scope, nor set a field it may not write, nor move a
// record out of its scope. Pure; throws DomainErrors the client may see.
import { DomainError, withCause, type FieldViolation } from "../platform/errors.js";
import type { Principal } from "../platform/principal.js";
import type { MutationInput, StoredRecord } from "../records/model.js";
import { missingRecord } from "../records/apply-mutation.js";
import type { CollectionSchema } from "../schema/types.js";
import { GrantSet } from "./engine.js";
import type { Action, Policy } from "./policy.js";

/** Carried as the `cause` of access denials, so callers can audit them (never sent to clients). */
export interface AccessDenial {
  readonly accessDenied: { action: Action; reason: string; collection: string; recordId: string; fields: string[] };
}

export function accessDenialOf(e: unknown): AccessDenial["accessDenied"] | null {
  const cause = e instanceof DomainError ? e.cause : undefined;
  return typeof cause === "object" && cause !== null && "accessDenied" in cause ? (cause as AccessDenial).accessDenied : null;
}

/** The refusal of an action the principal has no grant for on the collection at all. */
export function actionDenied(action: Action, collection: string): DomainError {
  return new DomainError("permission_denied", `you may not ${action.replace("_", " ")} ${collection} records`, {
    reason: "ACTION_NOT_GRANTED",
    metadata: { action, collection },
    cause: denial(action, "ACTION_NOT_GRANTED", collection, "", []),
  });
}

/**
 * A record the principal may not see, met by a write or delete, reads exactly
 * like a record that does not exist (it is apply-mutation's RECORD_NOT_FOUND:
 * same code, reason, message and details), so probing learns nothing; the
 * denial rides along as the cause, for the audit log only.
 */
export function hiddenRecord(m: MutationInput, recordId: string, action: Action, hiddenField?: string): DomainError {
  const cause = hiddenField ? denial(action, "FIELD_NOT_READABLE", m.collection, recordId, [hiddenField]) : denial(action, "OUT_OF_SCOPE", m.collection, recordId, []);
  return withCause(missingRecord(m, recordId), cause);
}

function denial(action: Action, reason: string, collection: string, recordId: string, fields: string[]): AccessDenial {
  return { accessDenied: { action, reason, collection, recordId, fields } };
}

export interface WriteGuard {
  /** Fails fast, before any database work, on fields no grant of the action lets the principal write. */
  precheck(m: MutationInput): void;
  /** In the write transaction, before merging: the record as locked (null: none yet). */
  before(current: StoredRecord | null, m: MutationInput): void;
  /** In the write transaction, after merging: `next` is the record the mutation would leave. */
  after(current: StoredRecord | null, next: StoredRecord | null, m: MutationInput): void;
}

/**
 * A guard for mutations of one principal. Plain mutations need `write`
 * (deletes `delete`); with `resolve_conflicts`, the mutation is a conflict
 * resolution and may set the fields the resolving grants can read.
 */
export function writeGuard(policy: Policy, principal: Principal, mode: "write" | "resolve_conflicts" = "write"): WriteGuard {
  const sets = new Map<string, GrantSet>();
  const setFor = (m: MutationInput): GrantSet => {
    const action: Action = m.delete ? "delete" : mode;
    const k = `${m.collection}\u0000${action}`;
    let s = sets.get(k);
    if (!s) {
      const schema = policy.schemas.collections.get(m.collection);
      if (!schema) throw actionDenied(action, m.collection);
      sets.set(k, (s = new GrantSet(policy, principal, schema, action)));
    }
    return s;
  };
  const readSets = new Map<string, GrantSet>();
  /** Whether a read grant admitting `record` lists `field`. */
  const readableIn = (record: StoredRecord, field: string, schema: CollectionSchema): boolean => {
    let reads = readSets.get(schema.name);
    if (!reads) readSets.set(schema.name, (reads = new GrantSet(policy, principal, schema, "read")));
    return reads.fieldsOf(reads.admitting(record.fields), "readFields").has(field);
  };
  const list = mode === "resolve_conflicts" ? "readFields" : "writeFields";
  const touched = (m: MutationInput) => [...Object.keys(m.set), ...m.clear];

  return {
    precheck(m) {
      const set = setFor(m);
      if (set.empty) throw actionDenied(set.action, m.collection);
      if (!m.delete) refuseFields(set.schema, m, touched(m), set.fieldsOf(set.grants, list), set.action);
    },
    before(current, m) {
      const set = setFor(m);
      if (set.empty) throw actionDenied(set.action, m.collection);
      // Before the merge can answer anything (a version mismatch names the current version).
      if (current && !set.admits(current.fields)) throw hiddenRecord(m, current.id, set.action);
      // Addressed by an identity value the record hides from the caller: answering would confirm who holds it.
      if (current && "identity" in m.target && !readableIn(current, m.target.identity.field, set.schema)) {
        throw hiddenRecord(m, current.id, set.action, m.target.identity.field);
      }
    },
    after(current, next, m) {
      if (m.delete) return;
      const set = setFor(m);
      const id = current?.id ?? next?.id ?? "";
      if (next && !next.deleted && !set.admits(next.fields)) {
        const created = current === null;
        throw new DomainError(
          "permission_denied",
          created
            ? `you may not create this ${m.collection} record: it would be outside your scope`
            : `the write would move ${m.collection}/${id} out of your scope; nothing was written`,
          {
            reason: "OUT_OF_SCOPE_WRITE",
            metadata: { collection: m.collection, ...(created ? {} : { id }) },
            cause: denial(set.action, "OUT_OF_SCOPE_WRITE", m.collection, id, touched(m)),
          },
        );
      }
      // Rights come from the grants admitting the record as it was (as created, for a new one).
      const basis = current ?? next;
      const writable = basis ? set.fieldsOf(set.admitting(basis.fields), list) : new Set<string>();
      refuseFields(set.schema, m, touched(m), writable, set.action, id);
    },
  };
}

function refuseFields(schema: CollectionSchema, m: MutationInput, fields: string[], writable: ReadonlySet<string>, action: Action, id = ""): void {
  const refused = fields.filter((f) => !writable.has(f));
  if (refused.length === 0) return;
  const violations: FieldViolation[] = refused.map((f) => ({
    field: m.clear.includes(f) ? "clear" : `set.${f}`,
    description: `you may not write ${schema.name}.${f}`,
    reason: "FIELD_NOT_WRITABLE",
  }));
  throw new DomainError("permission_denied", `you may not write ${refused.join(", ")} of ${schema.name} records; nothing was written`, {
    reason: "FIELD_NOT_WRITABLE",
    metadata: { collection: schema.name, fields: refused.join(",") },
    violations,
    cause: denial(action, "FIELD_NOT_WRITABLE", schema.name, id, refused),
  });
}
