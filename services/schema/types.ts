// The collection schema model: what fields a collection has, how their values
// are typed, normalized, merged and masked. Pure data; loaded by
// services/config and validated by ./load.ts.

export const FIELD_TYPES = ["string", "int", "decimal", "bool", "timestamp", "enum", "string_list", "json"] as const;
export type FieldType = (typeof FIELD_TYPES)[number];

export const NORMALIZERS = ["trim", "lowercase", "email", "phone"] as const;
export type NormalizerName = (typeof NORMALIZERS)[number];

export const CONFLICT_POLICIES = ["lww", "source_priority", "keep_original", "manual_review", "reject"] as const;
export type ConflictPolicy = (typeof CONFLICT_POLICIES)[number];

export const MASKS = ["none", "phone", "id_number", "email", "redact", "hash"] as const;
export type MaskName = (typeof MASKS)[number];

export interface FieldSchema {
  name: string;
  type: FieldType;
  description: string;
  /** A record must hold a value for it once created; it cannot be cleared. */
  required: boolean;
  /** Core master data (shown everywhere, edited with care). */
  core: boolean;
  /** Personal or secret data: masked by default, unmasked reads are audited. */
  sensitive: boolean;
  /** Unique per collection; a mutation may address a record by it. */
  identity: boolean;
  /** Applied in order before validation. */
  normalizers: NormalizerName[];
  /** Allowed values of an enum field. */
  enumValues: string[];
  /** Conflict policy for concurrent edits of this field. */
  policy: ConflictPolicy;
  /** Default mask for principals who may only see the field masked. */
  mask: MaskName;
  /** Longest accepted string (characters) or list (items); 0 = the global limit. */
  maxLength: number;
}

export interface CollectionSchema {
  name: string;
  description: string;
  fields: ReadonlyMap<string, FieldSchema>;
  /** Policy of fields that name none. */
  defaultPolicy: ConflictPolicy;
  /** Sources ranked highest first, for `source_priority` fields. */
  sourcePriority: string[];
  /** Names of the identity fields, in schema order. */
  identityFields: string[];
}

export interface SchemaSet {
  /** Region used to read phone numbers written without a country code (ISO 3166, e.g. "CN"). */
  defaultPhoneRegion: string;
  /** Source systems known to the deployment ("erp", "crm-desktop", ...). */
  sources: string[];
  collections: ReadonlyMap<string, CollectionSchema>;
}

/** JSON as stored in PostgreSQL. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * A field value in stored form, chosen by the field's type:
 * string, decimal (canonical text), enum and timestamp (RFC 3339 UTC) are
 * strings; int is a safe integer number; bool a boolean; string_list a
 * string array; json any JSON value.
 */
export type StoredValue = JsonValue;

/**
 * Global limits on a single field value; a field's `maxLength` may only
 * tighten them. Strings count Unicode code points; lists count items; JSON
 * counts characters of the text as sent.
 */
export const VALUE_LIMITS = {
  /** Longest string (and string-list item, enum value), in characters. */
  stringChars: 65_536,
  /** Most items in a string list. */
  listItems: 1_000,
  /** Longest JSON text, in characters. */
  jsonChars: 262_144,
  /** Deepest nesting of arrays/objects in a JSON value. */
  jsonDepth: 64,
} as const;
