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
  /** Every live record must hold a (non-empty) value for the field. */
  | { kind: "required"; collection: string; field: FieldSchema }
  /** No record (tombstones included: they keep their keys) may hold a value: none would have a key. */
  | { kind: "identity"; collection: string; field: FieldSchema }
  /**
   * Every live record's value must be valid under the new definition, unless
   * it was not valid under the old one either (`was`; absent for a field new
   * to the schema, whose values an earlier removal left behind). `exact`:
   * valid is not enough, the value must be stored as the new definition
   * stores it (a new type, or an identity field: looked up as stored).
   */
  | { kind: "values"; collection: string; field: FieldSchema; was: FieldSchema | null; exact: boolean };

/** What defines a field's stored values (a change to anything else needs no check). */
function valueRules(f: FieldSchema): string {
  return JSON.stringify([f.type, f.enumValues, f.normalizers, f.maxLength]);
}

/**
 * The checks `after` needs against records stored under `before`. A schema
 * change that only edits policies, masks and descriptions or relaxes
 * `required` needs none (and costs no query).
 */
export function recordChecks(before: SchemaSet, after: SchemaSet): RecordCheck[] {
  const checks: RecordCheck[] = [];
  for (const [name, collection] of after.collections) {
    const old = before.collections.get(name);
    for (const field of collection.fields.values()) {
      const was = old?.fields.get(field.name);
      if (field.required && !was?.required) checks.push({ kind: "required", collection: name, field });
      if (field.identity && !was?.identity) checks.push({ kind: "identity", collection: name, field });
      else if (!was || valueRules(was) !== valueRules(field)) {
        // A field new to the schema may still have values: removing a field leaves them in the records.
        checks.push({ kind: "values", collection: name, field, was: was ?? null, exact: field.identity || was?.type !== field.type });
      }
    }
  }
  return checks;
}

/**
 * Why a stored value does not fit `field` (a reason code such as WRONG_TYPE or
 * NOT_IN_ENUM), or null when it does. `exact`: the value must also be what
 * the field stores for it (an int 5 is not the decimal "5", "007.50" not
 * "7.5", an identity value not one its normalizers would change), since
 * filters and key lookups compare stored forms.
 */
export function misfit(field: FieldSchema, stored: StoredValue, defaultPhoneRegion: string, exact = field.identity): string | null {
  const decoded = decodeValue(field, encodeValue(field, stored), { defaultPhoneRegion, path: field.name });
  if (!decoded.ok) return decoded.violation.reason ?? "INVALID_VALUE";
  if (exact && !storedEquals(decoded.value, stored)) return "NOT_STORED_FORM";
  return null;
}
