// deltamesh messages as plain proto-loader objects (snake_case fields, 64-bit
// integers as strings, oneof case names): builders for requests, and readers
// that turn responses into the plain data the interop observations hold.
import type { PlainRecord } from "../records-observed.js";
import type { ObservedEvent, WriteOutcome } from "../changes-observed.js";
import type { Plain } from "./client.js";

export const COLLECTION = "customers";
export const RECORDS = "deltamesh.v1.RecordService";
export const CHANGES = "deltamesh.v1.ChangeService";
/** The `device` every mutation of the grpc-js scenarios names. */
export const DEVICE = "grpc-js-interop";

export const string = (v: string): Plain => ({ string_value: v });
export const enumValue = (v: string): Plain => ({ enum_value: v });
export const byId = (id: string): Plain => ({ collection: COLLECTION, id });
export const byKey = (field: string, value: Plain): Plain => ({ collection: COLLECTION, identity: { field, value } });

export function mutation(ref: Plain, set: Record<string, Plain>, opts: { cmid?: string; expectedVersion?: number } = {}): Plain {
  return {
    ref,
    set,
    client_mutation_id: opts.cmid ?? "",
    source: "crm-desktop",
    device: DEVICE,
    ...(opts.expectedVersion === undefined ? {} : { expected_version: String(opts.expectedVersion) }),
  };
}

/** A Value as plain data; `kind` names the oneof case (proto-loader `oneofs: true`). */
export function plainValue(v: Plain): unknown {
  const kind = v.kind as string | undefined;
  if (kind === undefined) return null;
  if (kind === "int_value") return Number(v.int_value);
  if (kind === "string_list_value") return (v.string_list_value as { values?: string[] }).values ?? [];
  return v[kind];
}

/** A map<string, Value> as plain data, keys sorted. */
export function plainValues(values: unknown): Record<string, unknown> {
  const entries = Object.entries((values ?? {}) as Record<string, Plain>).sort(([a], [b]) => (a < b ? -1 : 1));
  return Object.fromEntries(entries.map(([k, v]) => [k, plainValue(v)]));
}

export function plainRecord(r: Plain): PlainRecord {
  return { id: String(r.id), version: Number(r.version ?? 0), deleted: r.deleted === true, fields: plainValues(r.fields) };
}

/** An applied mutation's id, version and change-log cursor. */
export const writeOutcome = (r: Plain): WriteOutcome => ({ id: String(r.id), version: Number(r.version), cursor: String(r.cursor) });

const maskedFields = (m: Plain): string[] => (m.masked_fields ?? []) as string[];

/** A ChangeEvent as plain data (the same shape the Python scenario prints). */
export function plainEvent(e: Plain): ObservedEvent {
  const kind = e.kind as ObservedEvent["kind"];
  const out: ObservedEvent = { kind, cursor: String(e.cursor ?? "") };
  const body = (e[kind] ?? {}) as Plain;
  switch (kind) {
    case "upsert":
      return {
        ...out,
        id: String(body.id),
        version: Number(body.version),
        created: body.created === true,
        set: plainValues(body.set),
        masked_fields: maskedFields(body),
      };
    case "enter_scope":
    case "snapshot_record": {
      const r = body.record as Plain;
      return { ...out, id: String(r.id), version: Number(r.version), fields: plainValues(r.fields), masked_fields: maskedFields(r) };
    }
    case "delete":
    case "leave_scope":
      return { ...out, id: String(body.id), version: Number(body.version) };
    case "snapshot_end":
      return { ...out, record_count: Number(body.record_count ?? 0) };
    default:
      return out;
  }
}
