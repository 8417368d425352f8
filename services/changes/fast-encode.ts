// Upsert events, encoded by hand. Why: they are nearly every event a stream
// carries, and protobuf-es's reflective encoder spends most of its time on
// their two maps (values and clocks): profiled at ~60 µs an event, it was
// most of the CPU of catching up (7k deltas/s) and of live delivery to many
// views. Field numbers come from the generated descriptors;
// test/unit/changes/fast-encode.test.ts checks that the bytes decode to
// exactly what the reflective path (encode.ts eventMessage) builds.
import { WireType } from "@bufbuild/protobuf/wire";
import { WireWriter } from "../platform/wire/writer.js";
import { ChangeEventSchema, RecordUpsertSchema, SubscribeResponseSchema } from "../../gen/deltamesh/v1/changes_pb.js";
import { StringListSchema, ValueSchema, type Value } from "../../gen/deltamesh/v1/types_pb.js";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { encodeShown } from "../records/convert.js";
import { writeClock } from "../records/fast-encode.js";
import type { CollectionSchema, FieldSchema, FieldType, StoredValue } from "../schema/types.js";
import type { StreamEvent } from "./events.js";
import type { FieldClock } from "../records/model.js";

const E = ChangeEventSchema.field;
const U = RecordUpsertSchema.field;
const V = ValueSchema.field;
const T = TimestampSchema.field;
const LEN = WireType.LengthDelimited;
/** Reused: encoding is synchronous, and finish() copies the message out. */
const writer = new WireWriter();
const VARINT = WireType.Varint;
// Map entries: key = 1, value = 2.
const KEY = 1;
const VALUE = 2;

function writeValue(w: WireWriter, v: Value): void {
  const k = v.kind;
  switch (k.case) {
    case "stringValue":
      w.tag(V.stringValue.number, LEN).string(k.value);
      break;
    case "intValue":
      w.tag(V.intValue.number, VARINT).int64(k.value);
      break;
    case "decimalValue":
      w.tag(V.decimalValue.number, LEN).string(k.value);
      break;
    case "boolValue":
      w.tag(V.boolValue.number, VARINT).bool(k.value);
      break;
    case "timestampValue":
      w.tag(V.timestampValue.number, LEN).fork();
      if (k.value.seconds !== 0n) w.tag(T.seconds.number, VARINT).int64(k.value.seconds);
      if (k.value.nanos !== 0) w.tag(T.nanos.number, VARINT).int32(k.value.nanos);
      w.join();
      break;
    case "enumValue":
      w.tag(V.enumValue.number, LEN).string(k.value);
      break;
    case "stringListValue":
      w.tag(V.stringListValue.number, LEN).fork();
      for (const s of k.value.values) w.tag(StringListSchema.field.values.number, LEN).string(s);
      w.join();
      break;
    case "jsonValue":
      w.tag(V.jsonValue.number, LEN).string(k.value);
      break;
  }
}

/** The Value field of each type whose stored form is its wire string. */
const STRING_VALUE_FIELD: Partial<Record<FieldType, number>> = {
  string: V.stringValue.number,
  enum: V.enumValue.number,
  decimal: V.decimalValue.number,
};

/**
 * A field's value as a Value message's fields: the scalar types most values
 * have straight from their stored form, the rest through encodeShown (a
 * message object per value cost ~1 µs an event). Both agree byte for byte
 * (test/unit/changes/fast-encode.test.ts).
 */
function writeShown(w: WireWriter, field: FieldSchema, stored: StoredValue, masked: boolean): void {
  const asString = masked ? V.stringValue.number : STRING_VALUE_FIELD[field.type];
  if (masked || (asString !== undefined && typeof stored === "string")) {
    w.tag(asString!, LEN).string(String(stored));
  } else if (field.type === "int" && typeof stored === "number" && Number.isSafeInteger(stored)) {
    w.tag(V.intValue.number, VARINT).int64(stored);
  } else if (field.type === "bool" && typeof stored === "boolean") {
    w.tag(V.boolValue.number, VARINT).bool(stored);
  } else {
    writeValue(w, encodeShown(field, stored, false));
  }
}

/**
 * The ChangeEvent bytes of an upsert event; `framed`: as one `events` entry
 * of a SubscribeResponse (field 1), written in place instead of copied behind
 * a header.
 */
export function encodeUpsert(ev: Extract<StreamEvent, { kind: "upsert" }>, cursor: string, schema: CollectionSchema | undefined, framed = false): Uint8Array {
  writeUpsert(writer.reset(), ev, cursor, schema, framed);
  return writer.finish();
}

/** `encodeUpsert` appending to `w`. */
export function writeUpsert(w: WireWriter, ev: Extract<StreamEvent, { kind: "upsert" }>, cursor: string, schema: CollectionSchema | undefined, framed: boolean): void {
  if (framed) w.tag(SubscribeResponseSchema.field.events.number, LEN).fork();
  if (cursor) w.tag(E.cursor.number, LEN).string(cursor);
  w.tag(E.upsert.number, LEN).fork();
  if (ev.collection) w.tag(U.collection.number, LEN).string(ev.collection);
  if (ev.id) w.tag(U.id.number, LEN).string(ev.id);
  if (ev.version !== 0) w.tag(U.version.number, VARINT).uint64(ev.version);
  for (const name in ev.set) {
    const field = schema?.fields.get(name);
    // A field dropped from the schema since it was written is not served (as encodeFields).
    if (!field) continue;
    w.tag(U.set.number, LEN).fork();
    w.tag(KEY, LEN).string(name);
    w.tag(VALUE, LEN).fork();
    writeShown(w, field, ev.set[name]!, ev.masked.includes(name));
    w.join();
    w.join();
  }
  for (const c of ev.cleared) w.tag(U.cleared.number, LEN).string(c);
  // The fields of a change usually share one clock object: its bytes are
  // encoded once and copied for the others. They end the previous entry, and
  // nothing written since has moved them (only joins of enclosing messages
  // move bytes, after this loop).
  let shared: FieldClock | undefined;
  let sharedStart = 0;
  let sharedEnd = 0;
  for (const name in ev.clocks) {
    const clock = ev.clocks[name]!;
    w.tag(U.clocks.number, LEN).fork();
    w.tag(KEY, LEN).string(name);
    w.tag(VALUE, LEN).fork();
    const start = w.length;
    if (clock === shared) w.copy(sharedStart, sharedEnd);
    else writeClock(w, clock);
    const length = w.length - start;
    w.join();
    w.join();
    shared = clock;
    sharedEnd = w.length;
    sharedStart = sharedEnd - length;
  }
  if (ev.created) w.tag(U.created.number, VARINT).bool(true);
  const ms = ev.commitTime.getTime();
  w.tag(U.commitTime.number, LEN).fork();
  // A number, not a bigint: seconds of a Date are well within 2^53.
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms % 1000 + 1000) % 1000 * 1_000_000;
  if (seconds !== 0) w.tag(T.seconds.number, VARINT).int64(seconds);
  if (nanos !== 0) w.tag(T.nanos.number, VARINT).int32(nanos);
  w.join();
  for (const m of ev.masked) w.tag(U.maskedFields.number, LEN).string(m);
  w.join();
  if (framed) w.join();
}
