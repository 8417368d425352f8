// Client side of the CLI's record commands: typing `field=value` arguments by
// the schema, and printing records as plain JSON.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { RecordService } from "../../gen/deltamesh/v1/records_pb.js";
import type { Record as RecordPb, RecordRefSchema, Value, ValueSchema } from "../../gen/deltamesh/v1/types_pb.js";
import type { CollectionSchema, FieldSchema, SchemaSet } from "../schema/types.js";
import { connectService, loadSchemas, type ServerFlags } from "./connect.js";

type ValueInit = MessageInitShape<typeof ValueSchema>;

export async function connectRecords(flags: ServerFlags): Promise<{
  client: Client<typeof RecordService>;
  schemas: SchemaSet;
}> {
  return { client: connectService(RecordService, flags), schemas: await loadSchemas(flags) };
}

function split(assignment: string): [string, string] {
  const eq = assignment.indexOf("=");
  if (eq <= 0) throw new Error(`expected field=value, got ${JSON.stringify(assignment)}`);
  return [assignment.slice(0, eq), assignment.slice(eq + 1)];
}

/** A command-line string as a Value of the field's type (the server validates it). */
export function valueFromText(field: FieldSchema | undefined, text: string): ValueInit {
  switch (field?.type) {
    case "int":
      return { kind: { case: "intValue", value: BigInt(text) } };
    case "decimal":
      return { kind: { case: "decimalValue", value: text } };
    case "bool":
      return { kind: { case: "boolValue", value: text === "true" || text === "1" || text === "yes" } };
    case "timestamp":
      return { kind: { case: "timestampValue", value: timestampFromDate(new Date(text)) } };
    case "enum":
      return { kind: { case: "enumValue", value: text } };
    case "string_list":
      return { kind: { case: "stringListValue", value: { values: text.split(",").map((s) => s.trim()).filter(Boolean) } } };
    case "json":
      return { kind: { case: "jsonValue", value: text } };
    default:
      return { kind: { case: "stringValue", value: text } };
  }
}

export function parseAssignments(schema: CollectionSchema, assignments: string[]): Record<string, ValueInit> {
  return Object.fromEntries(assignments.map(split).map(([f, v]) => [f, valueFromText(schema.fields.get(f), v)]));
}

export function refFor(schemas: SchemaSet, collection: string, id?: string, key?: string): MessageInitShape<typeof RecordRefSchema> {
  if (key) {
    const [field, text] = split(key);
    const value = valueFromText(schemas.collections.get(collection)?.fields.get(field), text);
    return { collection, target: { case: "identity", value: { field, value } } };
  }
  if (!id) throw new Error("give a record id or --key field=value");
  return { collection, target: { case: "id", value: id } };
}

export function plainValue(v: Value): unknown {
  switch (v.kind.case) {
    case "intValue":
      return Number(v.kind.value);
    case "timestampValue":
      return timestampDate(v.kind.value).toISOString();
    case "stringListValue":
      return v.kind.value.values;
    case "jsonValue":
      return JSON.parse(v.kind.value) as unknown;
    default:
      return v.kind.value;
  }
}

export function printRecord(_schemas: SchemaSet, r: RecordPb): void {
  const fields = Object.fromEntries(Object.entries(r.fields).map(([k, v]) => [k, plainValue(v)]));
  process.stdout.write(
    JSON.stringify({ collection: r.collection, id: r.id, version: Number(r.version), deleted: r.deleted || undefined, fields }, null, 2) + "\n",
  );
}
