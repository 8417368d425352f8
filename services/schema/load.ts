// Validates the schema part of a config document (plain data from YAML or
// JSON, snake_case keys) and builds the SchemaSet; schemaSetToDoc is the
// inverse. Every problem is collected and reported at once, each with a path
// into the document, so an operator fixes a config in one pass.

import { isSupportedCountry } from "libphonenumber-js/max";
import { invalidArgument, type FieldViolation } from "../platform/errors.js";
import {
  CONFLICT_POLICIES,
  FIELD_TYPES,
  MASKS,
  NORMALIZERS,
  VALUE_LIMITS,
  type CollectionSchema,
  type ConflictPolicy,
  type FieldSchema,
  type FieldType,
  type MaskName,
  type NormalizerName,
  type SchemaSet,
} from "./types.js";

/** Collection and field names. */
export const NAME_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;
/** Source system names ("erp", "crm-desktop", "sales.app"). */
export const SOURCE_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** A field as written in the document. Flags that are false and defaults are left out by schemaSetToDoc. */
export interface FieldDoc {
  type: FieldType;
  description?: string;
  required?: boolean;
  core?: boolean;
  sensitive?: boolean;
  identity?: boolean;
  normalizers?: NormalizerName[];
  /** Allowed values; enum fields only. */
  values?: string[];
  /** Defaults to the collection's default_policy. */
  policy?: ConflictPolicy;
  /** Defaults to phone / email / redact for sensitive fields (by normalizer), else none. */
  mask?: MaskName;
  /** string: characters; string_list: items; json: characters of the text. 0 or absent = the global limit. */
  max_length?: number;
}

export interface CollectionDoc {
  description?: string;
  /** Defaults to lww. */
  default_policy?: ConflictPolicy;
  /** Sources ranked highest first; each must be declared in the top-level sources. */
  source_priority?: string[];
  fields: Record<string, FieldDoc>;
}

/** The schema sections of a config document. Other top-level sections are not read here. */
export interface SchemaDoc {
  /** ISO 3166-1 alpha-2; absent = phone numbers must carry a country code. */
  default_phone_region?: string;
  sources?: string[];
  collections: Record<string, CollectionDoc>;
}

const COLLECTION_KEYS = ["description", "default_policy", "source_priority", "fields"] as const;
const FIELD_KEYS = [
  "type",
  "description",
  "required",
  "core",
  "sensitive",
  "identity",
  "normalizers",
  "values",
  "policy",
  "mask",
  "max_length",
] as const;
const FLAG_KEYS = ["required", "core", "sensitive", "identity"] as const;
const IDENTITY_TYPES: readonly FieldType[] = ["string", "int", "enum"];
/** Masks that rewrite text, so only meaningful on string fields. */
export const TEXT_MASKS: readonly MaskName[] = ["phone", "id_number", "email"];
const LENGTH_LIMITS: Partial<Record<FieldType, number>> = {
  string: VALUE_LIMITS.stringChars,
  string_list: VALUE_LIMITS.listItems,
  json: VALUE_LIMITS.jsonChars,
};
const ENUM_VALUE_MAX = 256;

/**
 * Validates a config document's schema sections and builds the SchemaSet.
 * Reads `default_phone_region`, `sources` and `collections`; other top-level
 * keys are ignored (they belong to other config sections).
 * @throws DomainError invalid_argument, reason INVALID_SCHEMA, one violation per problem.
 */
export function parseSchemaSet(doc: unknown): SchemaSet {
  const problems: FieldViolation[] = [];
  const report = (field: string, description: string, reason = "INVALID_SCHEMA"): void => {
    problems.push({ field, description, reason });
  };

  if (!isMapping(doc)) {
    report("", `the config document must be a mapping with a collections section; got ${describe(doc)}`);
    throw fail(problems);
  }

  const defaultPhoneRegion = parseRegion(doc["default_phone_region"], report);
  const sources = parseSources(doc["sources"], report);
  const collections = new Map<string, CollectionSchema>();

  const rawCollections = doc["collections"];
  if (rawCollections === undefined || rawCollections === null) {
    report("collections", "collections is required: a mapping from collection name to { fields: ... }");
  } else if (!isMapping(rawCollections)) {
    report("collections", `collections must be a mapping from collection name to its schema; got ${describe(rawCollections)}`);
  } else {
    for (const [name, raw] of Object.entries(rawCollections)) {
      const c = parseCollection(name, raw, sources, report);
      if (c) collections.set(name, c);
    }
  }

  if (problems.length > 0) throw fail(problems);
  return { defaultPhoneRegion, sources, collections };
}

/** The document form of a SchemaSet: parseSchemaSet(schemaSetToDoc(s)) rebuilds s. */
export function schemaSetToDoc(set: SchemaSet): SchemaDoc {
  const collections: Record<string, CollectionDoc> = {};
  for (const c of set.collections.values()) {
    const fields: Record<string, FieldDoc> = {};
    for (const f of c.fields.values()) {
      const d: FieldDoc = { type: f.type };
      if (f.description !== "") d.description = f.description;
      for (const flag of FLAG_KEYS) if (f[flag]) d[flag] = true;
      if (f.normalizers.length > 0) d.normalizers = [...f.normalizers];
      if (f.type === "enum") d.values = [...f.enumValues];
      if (f.policy !== c.defaultPolicy) d.policy = f.policy;
      if (f.mask !== defaultMask(f.sensitive, f.normalizers)) d.mask = f.mask;
      if (f.maxLength > 0) d.max_length = f.maxLength;
      fields[f.name] = d;
    }
    const cd: CollectionDoc = { default_policy: c.defaultPolicy, fields };
    if (c.description !== "") cd.description = c.description;
    if (c.sourcePriority.length > 0) cd.source_priority = [...c.sourcePriority];
    collections[c.name] = cd;
  }
  const doc: SchemaDoc = { sources: [...set.sources], collections };
  if (set.defaultPhoneRegion !== "") doc.default_phone_region = set.defaultPhoneRegion;
  return doc;
}

/** The mask a field gets when the schema names none. */
export function defaultMask(sensitive: boolean, normalizers: readonly NormalizerName[]): MaskName {
  if (!sensitive) return "none";
  if (normalizers.includes("phone")) return "phone";
  if (normalizers.includes("email")) return "email";
  return "redact";
}

export type Report = (field: string, description: string, reason?: string) => void;

function fail(problems: FieldViolation[]): Error {
  const shown = problems
    .slice(0, 3)
    .map((p) => (p.field ? `${p.field}: ${p.description}` : p.description))
    .join("; ");
  const more = problems.length > 3 ? `; and ${problems.length - 3} more` : "";
  const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
  return invalidArgument(`invalid schema (${count}): ${shown}${more}`, problems, "INVALID_SCHEMA");
}

function parseRegion(raw: unknown, report: Report): string {
  if (raw === undefined || raw === null) return "";
  const path = "default_phone_region";
  if (typeof raw !== "string") {
    report(path, `default_phone_region must be an ISO 3166-1 alpha-2 region code such as CN; got ${describe(raw)}`);
    return "";
  }
  if (isSupportedCountry(raw)) return raw;
  const upper = raw.trim().toUpperCase();
  const hint = upper !== raw && isSupportedCountry(upper) ? ` (did you mean "${upper}"?)` : "";
  report(
    path,
    `unknown phone region ${JSON.stringify(raw)}${hint}: expected an upper-case ISO 3166-1 alpha-2 code supported by libphonenumber, e.g. CN, HK, US, GB`,
  );
  return "";
}

function parseSources(raw: unknown, report: Report): string[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    report("sources", `sources must be a list of source system names, e.g. [erp, crm-desktop]; got ${describe(raw)}`);
    return [];
  }
  const out: string[] = [];
  raw.forEach((s: unknown, i) => {
    const path = `sources[${i}]`;
    if (typeof s !== "string" || !SOURCE_PATTERN.test(s)) {
      report(
        path,
        `invalid source name ${describeValue(s)}: use 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit`,
      );
    } else if (out.includes(s)) {
      report(path, `source ${JSON.stringify(s)} is listed twice`);
    } else {
      out.push(s);
    }
  });
  return out;
}

function parseCollection(name: string, raw: unknown, sources: string[], report: Report): CollectionSchema | null {
  const base = `collections.${name}`;
  if (!NAME_PATTERN.test(name)) {
    report(base, `invalid collection name ${JSON.stringify(name)}: ${NAME_RULE}`);
  }
  if (!isMapping(raw)) {
    report(base, `collection ${name} must be a mapping with a fields section; got ${describe(raw)}`);
    return null;
  }
  checkKeys(raw, COLLECTION_KEYS, base, report);

  const description = optionalString(raw["description"], `${base}.description`, report);

  let defaultPolicy: ConflictPolicy = "lww";
  const rawDefault = raw["default_policy"];
  if (rawDefault !== undefined && rawDefault !== null) {
    const p = oneOf(rawDefault, CONFLICT_POLICIES, "policy", `${base}.default_policy`, report);
    if (p) defaultPolicy = p;
  }

  const sourcePriority: string[] = [];
  const rawPriority = raw["source_priority"];
  let priorityDeclared = false;
  if (rawPriority !== undefined && rawPriority !== null) {
    if (!Array.isArray(rawPriority)) {
      report(`${base}.source_priority`, `source_priority must be a list of sources, highest first; got ${describe(rawPriority)}`);
    } else {
      priorityDeclared = rawPriority.length > 0;
      rawPriority.forEach((s: unknown, i) => {
        const path = `${base}.source_priority[${i}]`;
        if (typeof s !== "string") {
          report(path, `source_priority entries must be source names; got ${describe(s)}`);
        } else if (!sources.includes(s)) {
          const declared = sources.length > 0 ? sources.join(", ") : "none";
          report(
            path,
            `unknown source ${JSON.stringify(s)} in ${name}.source_priority: declare it in the top-level sources list (declared: ${declared})`,
            "UNKNOWN_SOURCE",
          );
        } else if (sourcePriority.includes(s)) {
          report(path, `source ${JSON.stringify(s)} is listed twice in ${name}.source_priority`);
        } else {
          sourcePriority.push(s);
        }
      });
    }
  }

  const fields = new Map<string, FieldSchema>();
  const rawFields = raw["fields"];
  if (rawFields === undefined || rawFields === null) {
    report(`${base}.fields`, `collection ${name} needs a fields mapping with at least one field`);
  } else if (!isMapping(rawFields)) {
    report(`${base}.fields`, `fields must be a mapping from field name to { type: ... }; got ${describe(rawFields)}`);
  } else if (Object.keys(rawFields).length === 0) {
    report(`${base}.fields`, `collection ${name} needs at least one field`);
  } else {
    for (const [fieldName, rawField] of Object.entries(rawFields)) {
      const f = parseField(name, fieldName, rawField, defaultPolicy, report);
      if (f) fields.set(fieldName, f);
    }
  }

  const usingPriority = [...fields.values()].filter((f) => f.policy === "source_priority").map((f) => f.name);
  if ((defaultPolicy === "source_priority" || usingPriority.length > 0) && !priorityDeclared) {
    const who = defaultPolicy === "source_priority" ? "default_policy" : `fields ${usingPriority.join(", ")}`;
    report(
      `${base}.source_priority`,
      `collection ${name} uses the source_priority policy (${who}) but has no source_priority list: rank its sources highest first, e.g. source_priority: [${sources.slice(0, 2).join(", ") || "erp"}]`,
    );
  }

  return {
    name,
    description,
    fields,
    defaultPolicy,
    sourcePriority,
    identityFields: [...fields.values()].filter((f) => f.identity).map((f) => f.name),
  };
}

const NAME_RULE = "use 1-63 lower-case letters, digits or _, starting with a letter";

function parseField(collection: string, name: string, raw: unknown, defaultPolicy: ConflictPolicy, report: Report): FieldSchema | null {
  const base = `collections.${collection}.fields.${name}`;
  if (!NAME_PATTERN.test(name)) {
    report(base, `invalid field name ${JSON.stringify(name)}: ${NAME_RULE}`);
  }
  if (!isMapping(raw)) {
    report(base, `field ${name} must be a mapping such as { type: string }; got ${describe(raw)}`);
    return null;
  }
  checkKeys(raw, FIELD_KEYS, base, report);

  let type: FieldType | null = null;
  const rawType = raw["type"];
  if (rawType === undefined || rawType === null) {
    report(`${base}.type`, `field ${name} needs a type: one of ${FIELD_TYPES.join(", ")}`);
  } else {
    type = oneOf(rawType, FIELD_TYPES, "type", `${base}.type`, report);
  }
  const description = optionalString(raw["description"], `${base}.description`, report);
  const flags = { required: false, core: false, sensitive: false, identity: false };
  for (const flag of FLAG_KEYS) {
    const v = raw[flag];
    if (v === undefined || v === null) continue;
    if (typeof v === "boolean") flags[flag] = v;
    else report(`${base}.${flag}`, `${flag} must be true or false; got ${describe(v)}`);
  }

  // Normalizers.
  const normalizers: NormalizerName[] = [];
  const rawNormalizers = raw["normalizers"];
  if (rawNormalizers !== undefined && rawNormalizers !== null) {
    if (!Array.isArray(rawNormalizers)) {
      report(`${base}.normalizers`, `normalizers must be a list, e.g. [trim]; got ${describe(rawNormalizers)}`);
    } else {
      rawNormalizers.forEach((n: unknown, i) => {
        const path = `${base}.normalizers[${i}]`;
        const known = oneOf(n, NORMALIZERS, "normalizer", path, report);
        if (!known) return;
        if (type !== null && type !== "string") {
          report(path, `normalizer ${JSON.stringify(known)} applies only to string fields; ${name} is a ${type} field`);
        } else if (normalizers.includes(known)) {
          report(path, `normalizer ${JSON.stringify(known)} is listed twice`);
        } else {
          normalizers.push(known);
        }
      });
      if (normalizers.includes("phone") && normalizers.includes("email")) {
        report(`${base}.normalizers`, `a field cannot be both a phone number and an email address; keep one of phone, email`);
      }
    }
  }

  // Enum values.
  const enumValues: string[] = [];
  const rawValues = raw["values"];
  if (type === "enum") {
    if (!Array.isArray(rawValues) || rawValues.length === 0) {
      report(
        `${base}.values`,
        `enum field ${name} needs a non-empty values list, e.g. values: [active, inactive]` +
          (rawValues === undefined || rawValues === null ? "" : `; got ${describe(rawValues)}`),
      );
    } else {
      rawValues.forEach((v: unknown, i) => {
        const path = `${base}.values[${i}]`;
        if (typeof v !== "string" || v === "" || v.trim() !== v || v.length > ENUM_VALUE_MAX) {
          report(path, `enum values must be non-empty strings without surrounding spaces, at most ${ENUM_VALUE_MAX} characters; got ${describeValue(v)}`);
        } else if (enumValues.includes(v)) {
          report(path, `enum value ${JSON.stringify(v)} is listed twice`);
        } else {
          enumValues.push(v);
        }
      });
    }
  } else if (rawValues !== undefined && rawValues !== null && type !== null) {
    report(`${base}.values`, `values applies only to enum fields; ${name} is a ${type} field`);
  }

  // Policy.
  let policy = defaultPolicy;
  const rawPolicy = raw["policy"];
  if (rawPolicy !== undefined && rawPolicy !== null) {
    const p = oneOf(rawPolicy, CONFLICT_POLICIES, "policy", `${base}.policy`, report);
    if (p) policy = p;
  }

  // Identity.
  if (flags.identity && type !== null && !IDENTITY_TYPES.includes(type)) {
    report(`${base}.identity`, `identity fields must be ${IDENTITY_TYPES.join(", ")} typed; ${name} is a ${type} field`);
  }

  // Mask.
  let mask = defaultMask(flags.sensitive, normalizers);
  const rawMask = raw["mask"];
  if (rawMask !== undefined && rawMask !== null) {
    const m = oneOf(rawMask, MASKS, "mask", `${base}.mask`, report);
    if (m) {
      if (TEXT_MASKS.includes(m) && type !== null && type !== "string") {
        report(`${base}.mask`, `mask ${JSON.stringify(m)} applies only to string fields; ${name} is a ${type} field (use redact or hash)`);
      }
      mask = m;
    }
  }

  // Length limit.
  let maxLength = 0;
  const rawMax = raw["max_length"];
  if (rawMax !== undefined && rawMax !== null) {
    const limit = type !== null ? LENGTH_LIMITS[type] : undefined;
    if (typeof rawMax !== "number" || !Number.isInteger(rawMax) || rawMax < 0) {
      report(`${base}.max_length`, `max_length must be a whole number >= 0 (0 = the global limit); got ${describeValue(rawMax)}`);
    } else if (type !== null && limit === undefined) {
      report(`${base}.max_length`, `max_length applies only to string, string_list and json fields; ${name} is a ${type} field`);
    } else if (limit !== undefined && rawMax > limit) {
      report(`${base}.max_length`, `max_length ${rawMax} exceeds the global limit of ${limit} for ${type} fields`);
    } else {
      maxLength = rawMax;
    }
  }

  if (type === null) return null;
  return { name, type, description, ...flags, normalizers, enumValues, policy, mask, maxLength };
}

export function checkKeys(raw: Record<string, unknown>, allowed: readonly string[], base: string, report: Report): void {
  for (const key of Object.keys(raw)) {
    if (allowed.includes(key)) continue;
    const hint = suggest(key, allowed);
    report(`${base}.${key}`, `unknown key ${JSON.stringify(key)}${hint}: expected one of ${allowed.join(", ")}`);
  }
}

export function oneOf<T extends string>(raw: unknown, options: readonly T[], what: string, path: string, report: Report): T | null {
  if (typeof raw === "string" && (options as readonly string[]).includes(raw)) return raw as T;
  const hint = typeof raw === "string" ? suggest(raw, options) : "";
  report(path, `unknown ${what} ${describeValue(raw)}${hint}: expected one of ${options.join(", ")}`);
  return null;
}

function optionalString(raw: unknown, path: string, report: Report): string {
  if (raw === undefined || raw === null) return "";
  if (typeof raw === "string") return raw;
  report(path, `must be a string; got ${describe(raw)}`);
  return "";
}

export function isMapping(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** What kind of YAML value x is, for messages. */
export function describe(x: unknown): string {
  if (x === null || x === undefined) return "nothing";
  if (Array.isArray(x)) return "a list";
  if (typeof x === "object") return "a mapping";
  if (typeof x === "string") return `the string ${JSON.stringify(x)}`;
  return `the ${typeof x} ${String(x)}`;
}

export function describeValue(x: unknown): string {
  return typeof x === "string" ? JSON.stringify(x) : `(${describe(x)})`;
}

/** ` (did you mean "x"?)` for a near miss, else "". */
export function suggest(input: string, options: readonly string[]): string {
  const lower = input.toLowerCase();
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const o of options) {
    const d = lower === o ? 0 : editDistance(lower, o);
    if (d < bestDistance) {
      best = o;
      bestDistance = d;
    }
  }
  const allowed = Math.max(1, Math.floor(input.length / 3));
  return best !== null && bestDistance <= allowed ? ` (did you mean ${JSON.stringify(best)}?)` : "";
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
