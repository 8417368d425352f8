// Rows of `deltamesh export`: one record per row, `id` and `version` first,
// then the fields as the server showed them (masked fields hold their mask's
// text). JSON Lines rows also name their masked fields (`_masked`); CSV
// columns follow the schema's field order.
import type { Record as RecordPb } from "../../../gen/deltamesh/v1/types_pb.js";
import type { CollectionSchema } from "../../schema/types.js";
import { plainValue } from "../record-commands.js";

export type ExportFormat = "csv" | "jsonl";

export function jsonlLine(r: RecordPb): string {
  const fields = Object.fromEntries(Object.entries(r.fields).map(([k, v]) => [k, plainValue(v)]));
  return JSON.stringify({ id: r.id, version: Number(r.version), ...fields, ...(r.maskedFields.length > 0 ? { _masked: r.maskedFields } : {}) }) + "\n";
}

export function csvColumns(schema: CollectionSchema): string[] {
  return ["id", "version", ...schema.fields.keys()];
}

export function csvLine(columns: readonly string[], r: RecordPb): string {
  const cells = columns.map((c) => {
    if (c === "id") return r.id;
    if (c === "version") return String(r.version);
    const v = r.fields[c];
    if (!v) return "";
    const plain = plainValue(v);
    return Array.isArray(plain) ? plain.join(", ") : typeof plain === "object" && plain !== null ? JSON.stringify(plain) : String(plain);
  });
  return cells.map(csvCell).join(",") + "\n";
}

/** RFC 4180: quote cells holding a comma, quote or line break; double the quotes. */
export function csvCell(text: string): string {
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}
