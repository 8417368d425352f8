// A file row as an upsert mutation. The client only carries values in the
// kind the schema names for their field; it does not validate or normalize
// (the server does, and explains). Text that cannot be read as the field's
// kind is sent as a string value, so the server's WRONG_TYPE violation names
// the field in the report. Pure.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { StringListSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { applyNormalizers } from "../../schema/normalize.js";
import type { CollectionSchema, FieldSchema, JsonValue } from "../../schema/types.js";
import { textToTimestamp } from "../../schema/values.js";
import type { RowValues } from "./rows.js";
import type { ImportMutation, ValueKind } from "./wire.js";

const INT = /^[+-]?\d+$/;
const TRUE = new Set(["true", "1", "yes", "y", "t"]);
const FALSE = new Set(["false", "0", "no", "n", "f"]);

const asText = (raw: JsonValue): string => (typeof raw === "string" ? raw : JSON.stringify(raw));
const stringValue = (raw: JsonValue): ValueKind => ({ case: "stringValue", value: asText(raw) });
const stringList = (values: string[]): ValueKind => ({ case: "stringListValue", value: create(StringListSchema, { values }) });

function timestampOf(text: string): ValueKind | null {
  const exact = textToTimestamp(text.trim());
  if (exact) return { case: "timestampValue", value: exact };
  const ms = Date.parse(text.trim());
  return Number.isNaN(ms) ? null : { case: "timestampValue", value: timestampFromDate(new Date(ms)) };
}

/** A file value as a Value of the field's kind (CSV cells are strings; JSON Lines carry JSON types). */
export function importValue(field: FieldSchema | undefined, raw: Exclude<JsonValue, null>): ValueKind {
  const text = typeof raw === "number" || typeof raw === "boolean" ? String(raw) : typeof raw === "string" ? raw : null;
  switch (field?.type) {
    case undefined: // not in the local schema: the server answers UNKNOWN_FIELD
    case "string":
      return text === null ? stringValue(raw) : { case: "stringValue", value: text };
    case "enum":
      return { case: "enumValue", value: text ?? asText(raw) };
    case "int":
      if (typeof raw === "number" && Number.isInteger(raw)) return { case: "intValue", value: BigInt(raw) };
      if (typeof raw === "string" && INT.test(raw.trim())) return { case: "intValue", value: BigInt(raw.trim()) };
      return stringValue(raw);
    case "decimal":
      return text === null ? stringValue(raw) : { case: "decimalValue", value: text.trim() };
    case "bool": {
      if (typeof raw === "boolean") return { case: "boolValue", value: raw };
      const t = text?.trim().toLowerCase() ?? "";
      if (TRUE.has(t)) return { case: "boolValue", value: true };
      if (FALSE.has(t)) return { case: "boolValue", value: false };
      return stringValue(raw);
    }
    case "timestamp":
      return (typeof raw === "string" ? timestampOf(raw) : null) ?? stringValue(raw);
    case "string_list":
      if (Array.isArray(raw) && raw.every((v) => typeof v === "string")) {
        return stringList(raw as string[]);
      }
      if (typeof raw === "string") {
        // A CSV cell lists its items comma-separated ("vip, north").
        return stringList(raw.split(",").map((s) => s.trim()).filter(Boolean));
      }
      return stringValue(raw);
    case "json":
      // CSV: the cell is JSON text. JSON Lines: the value itself.
      return { case: "jsonValue", value: typeof raw === "string" && isJsonText(raw) ? raw : JSON.stringify(raw) };
  }
}

function isJsonText(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

export interface ImportTarget {
  collection: CollectionSchema;
  /** The identity field rows are upserted by. */
  key: FieldSchema;
  /** Required fields other than the key (a new record must get them). */
  required: string[];
  defaultPhoneRegion: string;
  source: string;
  device: string;
  /** Makes each row's client_mutation_id: the same file row always gets the same id. */
  mutationId: (line: number) => string;
}

export type PreparedRow =
  | {
      line: number;
      /** The key as the server will compare it (normalized), so rows of one record are written in file order. */
      orderKey: string;
      keyText: string;
      mutation: ImportMutation;
      /**
       * The row lacks a required field, so the server refuses it if it would
       * create the record. Only the server knows; the importer just sends such
       * rows in small batches, where a refusal costs little.
       */
      risky: boolean;
    }
  | { line: number; keyText: string; rejected: { reason: string; message: string } };

/** The key as the server stores it, for ordering only; when it cannot be normalized, the text itself. */
export function orderKeyOf(key: FieldSchema, text: string, defaultPhoneRegion: string): string {
  if (key.type !== "string") return text.trim();
  const n = applyNormalizers(key.normalizers, text, { defaultPhoneRegion });
  return n.ok ? n.value : text;
}

/**
 * A row as an upsert by its key: present values are set, JSON `null` clears
 * the field, absent fields (and empty CSV cells) are left as they are.
 */
export function prepareRow(t: ImportTarget, line: number, values: RowValues): PreparedRow {
  const raw = values[t.key.name];
  const keyText = raw === undefined || raw === null ? "" : asText(raw);
  if (keyText.trim() === "") {
    return {
      line,
      keyText,
      rejected: { reason: "KEY_MISSING", message: `the row has no ${t.key.name}, the key it is upserted by` },
    };
  }
  const set: [string, ValueKind][] = [];
  const clear: string[] = [];
  for (const [name, v] of Object.entries(values)) {
    if (name === t.key.name) continue;
    if (v === null) clear.push(name);
    else set.push([name, importValue(t.collection.fields.get(name), v)]);
  }
  const given = new Set(set.map(([name]) => name));
  return {
    line,
    keyText,
    risky: t.required.some((f) => !given.has(f)),
    orderKey: orderKeyOf(t.key, keyText, t.defaultPhoneRegion),
    mutation: {
      collection: t.collection.name,
      keyField: t.key.name,
      keyValue: importValue(t.key, raw as Exclude<JsonValue, null>),
      set,
      clear,
      baseVersion: 0n,
      clientMutationId: t.mutationId(line),
      source: t.source,
      device: t.device,
    },
  };
}
