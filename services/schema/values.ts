// The codec between the wire `Value` (a oneof of kinds) and the stored form
// of a field value (StoredValue, plain JSON), with normalization and
// validation against the field's schema. Pure: no I/O.
//
// Stored forms (also documented on StoredValue):
//   string     string, after the field's normalizers
//   int        number, a safe integer (|n| <= 2^53 - 1)
//   decimal    canonical text: no leading zeros, no trailing fractional zeros,
//              no "-0" ("007.50" -> "7.5", "-0.00" -> "0"); up to 30 integer
//              and 18 fractional digits
//   bool       boolean
//   timestamp  RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits, as the
//              protobuf JSON mapping writes it ("2024-05-01T08:30:00Z",
//              "2024-05-01T08:30:00.120Z", "...00.000000001Z"); one text per
//              instant, but compare instants, not texts, for ordering
//   enum       string, one of the field's values
//   string_list string[]
//   json       the parsed JSON value (not null: clear the field instead)

import { create } from "@bufbuild/protobuf";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { StringListSchema, ValueSchema, type Value } from "../../gen/deltamesh/v1/types_pb.js";
import type { FieldViolation } from "../platform/errors.js";
import { applyNormalizers } from "./normalize.js";
import { VALUE_LIMITS, type CollectionSchema, type FieldSchema, type FieldType, type JsonValue, type StoredValue } from "./types.js";

export interface DecodeContext {
  /** Region for phone numbers without a country code (SchemaSet.defaultPhoneRegion). */
  defaultPhoneRegion: string;
  /** Where the value sits in the request, e.g. `mutations[0].set.phone`; used as the violation path. */
  path: string;
}

export type DecodeResult = { ok: true; value: StoredValue } | { ok: false; violation: FieldViolation };

/** The Value oneof case each field type takes. */
export const KIND_OF_TYPE: Record<FieldType, NonNullable<Value["kind"]["case"]>> = {
  string: "stringValue",
  int: "intValue",
  decimal: "decimalValue",
  bool: "boolValue",
  timestamp: "timestampValue",
  enum: "enumValue",
  string_list: "stringListValue",
  json: "jsonValue",
};

const KIND_NAMES: Record<NonNullable<Value["kind"]["case"]>, string> = {
  stringValue: "string_value",
  intValue: "int_value",
  decimalValue: "decimal_value",
  boolValue: "bool_value",
  timestampValue: "timestamp_value",
  enumValue: "enum_value",
  stringListValue: "string_list_value",
  jsonValue: "json_value",
};

export const DECIMAL_PATTERN = /^-?\d{1,30}(\.\d{1,18})?$/;
/** Timestamp range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z. */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;
/** NUL cannot be stored by PostgreSQL text/jsonb; lone surrogates are not UTF-8. */
const BAD_CHAR = /[\u0000\uD800-\uDFFF]/u;
const TIMESTAMP_RE = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/;

/** Validates and normalizes one wire value for a field. */
export function decodeValue(field: FieldSchema, value: Value, ctx: DecodeContext): DecodeResult {
  const fail = (reason: string, description: string): DecodeResult => ({
    ok: false,
    violation: { field: ctx.path, description, reason },
  });
  const kind = value.kind;
  if (kind.case === undefined) {
    return fail("MISSING_VALUE", `${field.name} has no value; set ${KIND_NAMES[KIND_OF_TYPE[field.type]]} (to remove a value, clear the field)`);
  }
  const expected = KIND_OF_TYPE[field.type];
  if (kind.case !== expected) {
    // The text too, when the value carries one: an importer sends a CSV cell
    // it cannot read as the field's kind as a string, and the person fixing
    // the file needs to see which text was refused.
    const text = kind.case === "stringValue" || kind.case === "enumValue" || kind.case === "decimalValue" ? ` ${short(kind.value)}` : "";
    return fail(
      "WRONG_TYPE",
      `${field.name} is ${/^[aeiou]/.test(field.type) ? "an" : "a"} ${field.type} field: expected ${KIND_NAMES[expected]}, got ${KIND_NAMES[kind.case]}${text}`,
    );
  }

  switch (kind.case) {
    case "stringValue": {
      const n = applyNormalizers(field.normalizers, kind.value, { defaultPhoneRegion: ctx.defaultPhoneRegion });
      if (!n.ok) return fail(n.reason, n.description);
      const problem = checkText(field.name, n.value, field.maxLength || VALUE_LIMITS.stringChars);
      if (problem) return fail(problem.reason, problem.description);
      if (field.required && n.value === "") return fail("REQUIRED", `${field.name} is required and cannot be empty`);
      return { ok: true, value: n.value };
    }
    case "intValue": {
      const n = kind.value;
      if (n > BigInt(Number.MAX_SAFE_INTEGER) || n < BigInt(Number.MIN_SAFE_INTEGER)) {
        return fail("OUT_OF_RANGE", `${field.name} must be between ${Number.MIN_SAFE_INTEGER} and ${Number.MAX_SAFE_INTEGER}; got ${n}`);
      }
      return { ok: true, value: Number(n) };
    }
    case "decimalValue": {
      const canonical = canonicalDecimal(kind.value);
      if (canonical === null) {
        return fail(
          "INVALID_DECIMAL",
          `${field.name} must be a decimal number like "-12.50" (at most 30 integer and 18 fractional digits, no exponent or "+"); got ${short(kind.value)}`,
        );
      }
      return { ok: true, value: canonical };
    }
    case "boolValue":
      return { ok: true, value: kind.value };
    case "timestampValue": {
      const text = timestampToText(kind.value);
      if (text === null) {
        return fail(
          "OUT_OF_RANGE",
          `${field.name} must be a timestamp between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z with nanos in 0..999999999`,
        );
      }
      return { ok: true, value: text };
    }
    case "enumValue": {
      if (!field.enumValues.includes(kind.value)) {
        return fail("NOT_IN_ENUM", `${field.name} must be one of ${field.enumValues.join(", ")}; got ${short(kind.value)}`);
      }
      return { ok: true, value: kind.value };
    }
    case "stringListValue": {
      const items = kind.value.values;
      const limit = field.maxLength || VALUE_LIMITS.listItems;
      if (items.length > limit) return fail("TOO_LONG", `${field.name} holds at most ${limit} items; got ${items.length}`);
      for (const [i, item] of items.entries()) {
        const problem = checkText(`${field.name}[${i}]`, item, VALUE_LIMITS.stringChars);
        if (problem) return fail(problem.reason, problem.description);
      }
      if (field.required && items.length === 0) return fail("REQUIRED", `${field.name} is required and cannot be empty`);
      return { ok: true, value: [...items] };
    }
    case "jsonValue": {
      const text = kind.value;
      const limit = field.maxLength || VALUE_LIMITS.jsonChars;
      if (text.length > limit) return fail("TOO_LONG", `${field.name} holds at most ${limit} characters of JSON; got ${text.length}`);
      let parsed: JsonValue;
      try {
        parsed = JSON.parse(text) as JsonValue;
      } catch (e) {
        return fail("INVALID_JSON", `${field.name} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (parsed === null) return fail("INVALID_JSON", `${field.name} cannot hold JSON null; clear the field instead`);
      const problem = checkJson(field.name, parsed);
      if (problem) return fail(problem.reason, problem.description);
      return { ok: true, value: parsed };
    }
  }
}

/**
 * The wire form of a stored value. Never throws: a value stored under an
 * older schema whose type has since changed is sent in the kind that matches
 * its stored shape (string -> string_value, integer -> int_value, boolean ->
 * bool_value, list of strings -> string_list_value, anything else -> json_value).
 */
export function encodeValue(field: FieldSchema, stored: StoredValue): Value {
  switch (field.type) {
    case "string":
      if (typeof stored === "string") return value({ case: "stringValue", value: stored });
      break;
    case "int":
      if (typeof stored === "number" && Number.isSafeInteger(stored)) return value({ case: "intValue", value: BigInt(stored) });
      break;
    case "decimal":
      if (typeof stored === "string") return value({ case: "decimalValue", value: stored });
      if (typeof stored === "number" && Number.isFinite(stored)) return value({ case: "decimalValue", value: String(stored) });
      break;
    case "bool":
      if (typeof stored === "boolean") return value({ case: "boolValue", value: stored });
      break;
    case "timestamp":
      if (typeof stored === "string") {
        const ts = textToTimestamp(stored);
        if (ts) return value({ case: "timestampValue", value: ts });
      }
      break;
    case "enum":
      if (typeof stored === "string") return value({ case: "enumValue", value: stored });
      break;
    case "string_list":
      if (isStringList(stored)) return value({ case: "stringListValue", value: create(StringListSchema, { values: stored }) });
      break;
    case "json":
      return value({ case: "jsonValue", value: JSON.stringify(stored) });
  }
  return encodeByShape(stored);
}

/**
 * Decodes the `set` map of a mutation. Unknown fields and invalid values
 * become violations at `${ctx.path}.${field}`; valid values are returned
 * even when others are invalid.
 */
export function decodeFieldMap(
  collection: CollectionSchema,
  set: Record<string, Value>,
  ctx: DecodeContext,
): { values: Record<string, StoredValue>; violations: FieldViolation[] } {
  const values: Record<string, StoredValue> = {};
  const violations: FieldViolation[] = [];
  // protobuf-es decodes a map key "__proto__" into the map object's
  // prototype, where Object.entries never sees it: refuse it, don't drop it.
  const proto: unknown = Object.getPrototypeOf(set);
  if (proto !== Object.prototype && proto !== null) violations.push(unknownField(collection, "__proto__", `${ctx.path}.__proto__`));
  for (const [name, v] of Object.entries(set)) {
    const path = `${ctx.path}.${name}`;
    const field = collection.fields.get(name);
    if (!field) {
      violations.push(unknownField(collection, name, path));
      continue;
    }
    const r = decodeValue(field, v, { defaultPhoneRegion: ctx.defaultPhoneRegion, path });
    if (r.ok) values[name] = r.value;
    else violations.push(r.violation);
  }
  return { values, violations };
}

/** Violations for a mutation's `clear` list, at `${pathPrefix}[i]`. */
export function checkClears(collection: CollectionSchema, clear: readonly string[], pathPrefix: string): FieldViolation[] {
  const out: FieldViolation[] = [];
  clear.forEach((name, i) => {
    const path = `${pathPrefix}[${i}]`;
    const field = collection.fields.get(name);
    if (!field) out.push(unknownField(collection, name, path));
    else if (field.required) {
      out.push({ field: path, description: `${name} is required in ${collection.name} and cannot be cleared`, reason: "REQUIRED" });
    }
  });
  return out;
}

/** Required fields of the collection that `fields` holds no value for (absent or null), in schema order. */
export function missingRequired(collection: CollectionSchema, fields: Readonly<Record<string, StoredValue | undefined>>): string[] {
  const out: string[] = [];
  for (const f of collection.fields.values()) {
    if (!f.required) continue;
    const v = Object.prototype.hasOwnProperty.call(fields, f.name) ? fields[f.name] : undefined;
    if (v === undefined || v === null) out.push(f.name);
  }
  return out;
}

/** Deep equality of stored values: arrays by order, objects by key set regardless of key order. */
export function storedEquals(a: StoredValue, b: StoredValue): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!storedEquals(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!storedEquals(a[k] ?? null, b[k] ?? null)) return false;
  }
  return true;
}

/** Canonical decimal text, or null if `text` is not a decimal within the limits. */
export function canonicalDecimal(text: string): string | null {
  if (!DECIMAL_PATTERN.test(text)) return null;
  const negative = text.startsWith("-");
  const [intPart = "", fracPart = ""] = (negative ? text.slice(1) : text).split(".");
  const int = intPart.replace(/^0+(?=\d)/, "");
  const frac = fracPart.replace(/0+$/, "");
  const body = frac === "" ? int : `${int}.${frac}`;
  return negative && body !== "0" ? `-${body}` : body;
}

/** Whether a Timestamp is within the protobuf Timestamp range (years 1 to 9999, nanos 0 to 999,999,999). */
export function timestampInRange(ts: Timestamp): boolean {
  const { seconds, nanos } = ts;
  return seconds >= MIN_SECONDS && seconds <= MAX_SECONDS && Number.isInteger(nanos) && nanos >= 0 && nanos <= 999_999_999;
}

/** RFC 3339 UTC text of a Timestamp, or null when out of the protobuf Timestamp range. */
export function timestampToText(ts: Timestamp): string | null {
  if (!timestampInRange(ts)) return null;
  const { seconds, nanos } = ts;
  const base = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  if (nanos === 0) return `${base}Z`;
  const digits = String(nanos).padStart(9, "0");
  const frac = nanos % 1_000_000 === 0 ? digits.slice(0, 3) : nanos % 1_000 === 0 ? digits.slice(0, 6) : digits;
  return `${base}.${frac}Z`;
}

/** The Timestamp of stored timestamp text, or null if the text is not in the stored form. */
export function textToTimestamp(text: string): Timestamp | null {
  const m = TIMESTAMP_RE.exec(text);
  if (!m) return null;
  const ms = Date.parse(`${m[1] ?? ""}Z`);
  if (Number.isNaN(ms)) return null;
  const nanos = m[2] === undefined ? 0 : Number(m[2].padEnd(9, "0"));
  return create(TimestampSchema, { seconds: BigInt(ms / 1000), nanos });
}

function value(kind: Value["kind"]): Value {
  return create(ValueSchema, { kind });
}

function encodeByShape(stored: StoredValue): Value {
  if (typeof stored === "string") return value({ case: "stringValue", value: stored });
  if (typeof stored === "boolean") return value({ case: "boolValue", value: stored });
  if (typeof stored === "number" && Number.isSafeInteger(stored)) return value({ case: "intValue", value: BigInt(stored) });
  if (isStringList(stored)) return value({ case: "stringListValue", value: create(StringListSchema, { values: stored }) });
  return value({ case: "jsonValue", value: JSON.stringify(stored) });
}

function isStringList(v: StoredValue): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === "string");
}

function unknownField(collection: CollectionSchema, name: string, path: string): FieldViolation {
  return { field: path, description: `unknown field ${short(name)} in collection ${collection.name}`, reason: "UNKNOWN_FIELD" };
}

interface Problem {
  reason: string;
  description: string;
}

/** Whether PostgreSQL can store `s` as text (no NUL) and it is valid UTF-16 (no unpaired surrogate). */
export function storableText(s: string): boolean {
  return !BAD_CHAR.test(s);
}

/** Length (in code points) and character checks of one text. */
function checkText(what: string, s: string, limit: number): Problem | null {
  // s.length (UTF-16 units) >= code points, so only count when it could matter.
  if (s.length > limit) {
    let points = 0;
    for (const _ of s) points++;
    if (points > limit) return { reason: "TOO_LONG", description: `${what} holds at most ${limit} characters; got ${points}` };
  }
  if (!storableText(s)) {
    return { reason: "INVALID_CHARACTER", description: `${what} contains a NUL character or an unpaired surrogate, which cannot be stored` };
  }
  return null;
}

/** Depth and character checks of a parsed JSON value; iterative, so deep input cannot overflow the stack. */
function checkJson(what: string, root: JsonValue): Problem | null {
  const stack: Array<{ v: JsonValue; depth: number }> = [{ v: root, depth: 0 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (typeof v === "string") {
      if (BAD_CHAR.test(v)) return { reason: "INVALID_CHARACTER", description: `${what} contains a NUL character or an unpaired surrogate, which cannot be stored` };
      continue;
    }
    if (typeof v === "number") {
      // JSON.parse reads 1e400 as Infinity, which JSON cannot store.
      if (!Number.isFinite(v)) return { reason: "INVALID_JSON", description: `${what} holds a number too large for a double` };
      continue;
    }
    if (v === null || typeof v !== "object") continue;
    if (depth >= VALUE_LIMITS.jsonDepth) {
      return { reason: "TOO_DEEP", description: `${what} nests arrays/objects deeper than ${VALUE_LIMITS.jsonDepth} levels` };
    }
    if (Array.isArray(v)) {
      for (const item of v) stack.push({ v: item, depth: depth + 1 });
    } else {
      for (const [k, item] of Object.entries(v)) {
        if (BAD_CHAR.test(k)) return { reason: "INVALID_CHARACTER", description: `${what} has a key with a NUL character or an unpaired surrogate, which cannot be stored` };
        stack.push({ v: item, depth: depth + 1 });
      }
    }
  }
  return null;
}

function short(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s);
}
