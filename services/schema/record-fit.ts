// Which stored records a schema change must be checked against, and whether
// a stored value fits a field's new definition. Pure: the records are read by
// services/store/stored-fields.ts and judged by ./record-check.ts.
//
// A change that stored records do not fit is refused rather than published:
// a field made `required` that old records lack fails their next edit; a new
// type or enum sends old values to clients in a kind their generated code does
// not expect; a field made `identity` over existing values has no keys for
// them, so lookups by it miss those records and an upsert by it creates a
// duplicate.
import { decodeValue, encodeValue, storedEquals } from "./values.js";
import type { FieldSchema, SchemaSet, StoredValue } from "./types.js";

export type RecordCheck =
  /** Every live record must hold a value for the field. */
  | { kind: "required"; collection: string; field: FieldSchema }
  /** No record (tombstones included: they keep their keys) may hold a value: none would have a key. */
  | { kind: "identity"; collection: string; field: FieldSchema }
  /** Every live record's value must be valid under the new definition. */
  | { kind: "values"; collection: string; field: FieldSchema };

/** What defines a field's stored values (a change to anything else needs no check). */
function valueRules(f: FieldSchema): string {
  return JSON.stringify([f.type, f.enumValues, f.normalizers, f.maxLength]);
}

/**
 * The checks `after` needs against records stored under `before`. A schema
 * change that only adds optional fields, relaxes rules or edits policies,
 * masks and descriptions needs none (and costs no query).
 */
export function recordChecks(before: SchemaSet, after: SchemaSet): RecordCheck[] {
  const checks: RecordCheck[] = [];
  for (const [name, collection] of after.collections) {
    const old = before.collections.get(name);
    for (const field of collection.fields.values()) {
      const was = old?.fields.get(field.name);
      if (field.required && !was?.required) checks.push({ kind: "required", collection: name, field });
      if (field.identity && !was?.identity) checks.push({ kind: "identity", collection: name, field });
      else if (was && valueRules(was) !== valueRules(field)) checks.push({ kind: "values", collection: name, field });
    }
  }
  return checks;
}

/**
 * Why a stored value does not fit `field` (a reason code such as WRONG_TYPE or
 * NOT_IN_ENUM), or null when it does. An identity field's value must also be
 * exactly what its normalizers make of it: keys are looked up normalized.
 */
export function misfit(field: FieldSchema, stored: StoredValue, defaultPhoneRegion: string): string | null {
  const decoded = decodeValue(field, encodeValue(field, stored), { defaultPhoneRegion, path: field.name });
  if (!decoded.ok) return decoded.violation.reason ?? "INVALID_VALUE";
  if (field.identity && !storedEquals(decoded.value, stored)) return "NOT_NORMALIZED";
  return null;
}
