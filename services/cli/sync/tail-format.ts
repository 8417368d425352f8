// How `deltamesh tail` prints a change event: one line per event, time,
// kind, collection/id@version, then the changed fields. Masked values are
// marked, so nobody mistakes `138****5678` for a number someone typed.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ChangeEvent } from "../../../gen/deltamesh/v1/changes_pb.js";
import { ScopeReason } from "../../../gen/deltamesh/v1/changes_pb.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { Value } from "../../../gen/deltamesh/v1/types_pb.js";
import { plainValue } from "../record-commands.js";

const CODES = { green: 32, red: 31, yellow: 33, cyan: 36, dim: 2, bold: 1 } as const;
type Colour = keyof typeof CODES;

export interface Painter {
  (colour: Colour, text: string): string;
}

export const plain: Painter = (_c, text) => text;
export const ansi: Painter = (c, text) => `\u001b[${CODES[c]}m${text}\u001b[0m`;

function time(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toISOString().slice(11, 23) : "            ";
}

function fieldList(paint: Painter, set: Record<string, Value>, masked: readonly string[], cleared: readonly string[] = []): string {
  const parts = Object.entries(set)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, v]) => `${name}=${JSON.stringify(plainValue(v))}${masked.includes(name) ? paint("dim", " (masked)") : ""}`);
  for (const name of cleared) parts.push(paint("dim", `-${name}`));
  return parts.join(" ");
}

const reasonText = (r: ScopeReason) => (r === ScopeReason.POLICY ? "access changed" : r === ScopeReason.RESTORED ? "restored" : "fields changed");

/** The line for an event, or null for events not worth a line (heartbeats). */
export function formatEvent(e: ChangeEvent, paint: Painter = plain): string | null {
  const k = e.kind;
  switch (k.case) {
    case "upsert": {
      const v = k.value;
      const what = v.created ? paint("green", "create") : paint("cyan", "update");
      return `${time(v.commitTime)} ${what} ${paint("bold", `${v.collection}/${v.id}`)}@${v.version} ${fieldList(paint, v.set, v.maskedFields, v.cleared)}`.trimEnd();
    }
    case "delete":
      return `${time(k.value.commitTime)} ${paint("red", "delete")} ${paint("bold", `${k.value.collection}/${k.value.id}`)}@${k.value.version}`;
    case "enterScope": {
      const r = k.value.record!;
      return `${time(k.value.commitTime)} ${paint("green", "enter ")} ${paint("bold", `${r.collection}/${r.id}`)}@${r.version} (${reasonText(k.value.reason)}) ${fieldList(paint, r.fields, r.maskedFields)}`.trimEnd();
    }
    case "leaveScope":
      return `${time(k.value.commitTime)} ${paint("yellow", "leave ")} ${paint("bold", `${k.value.collection}/${k.value.id}`)}@${k.value.version} (${reasonText(k.value.reason)})`;
    case "snapshotRecord": {
      const r = k.value.record!;
      return `${time(undefined)} ${paint("dim", "record")} ${paint("bold", `${r.collection}/${r.id}`)}@${r.version} ${fieldList(paint, r.fields, r.maskedFields)}`.trimEnd();
    }
    case "snapshotEnd":
      return paint("dim", `-- ${k.value.recordCount} records; live changes follow --`);
    default:
      return null;
  }
}
