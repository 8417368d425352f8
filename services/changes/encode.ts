// Stream events to wire bytes. Each event is encoded once into the bytes of
// one `events` entry of a SubscribeResponse (tag, length, ChangeEvent). A
// protobuf message is the concatenation of its fields, so any run of such
// entries, joined, is a valid SubscribeResponse: the hub encodes an event
// once per view and every subscriber of that view sends the same bytes,
// batched with its other pending events, through `preEncoded`.
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  ChangeEventSchema,
  ScopeReason as ScopeReasonPb,
  type ChangeEvent,
} from "../../gen/deltamesh/v1/changes_pb.js";
import { RecordSchema } from "../../gen/deltamesh/v1/types_pb.js";
import type { SchemaSet } from "../schema/types.js";
import { encodeClock, encodeFields } from "../records/convert.js";
import type { EventRecord, ScopeReason, StreamEvent } from "./events.js";
import { encodeUpsert, writeUpsert } from "./fast-encode.js";
import type { WireWriter } from "../platform/wire/writer.js";

/** One encoded event, shared by every subscriber of a view. */
export interface EncodedEvent {
  /** A framed `events` entry of SubscribeResponse. */
  readonly bytes: Uint8Array;
  /** Log position of the event (for heartbeats and resume). */
  readonly seq: bigint;
  readonly cursor: string;
  /** Commit time of the change, ms since epoch (0 when not from a change). */
  readonly commitMs: number;
}

const REASONS: Record<ScopeReason, ScopeReasonPb> = {
  fields: ScopeReasonPb.FIELDS,
  policy: ScopeReasonPb.POLICY,
  restored: ScopeReasonPb.RESTORED,
};

const clocksPb = (clocks: EventRecord["clocks"]) => Object.fromEntries(Object.entries(clocks).map(([k, c]) => [k, encodeClock(c)]));

/** An event's record as a wire Record. */
export function recordPb(schemas: SchemaSet, r: EventRecord) {
  return create(RecordSchema, {
    tenant: r.tenant,
    collection: r.collection,
    id: r.id,
    version: BigInt(r.version),
    fields: encodeFields(schemas.collections.get(r.collection), r.fields, r.masked),
    clocks: clocksPb(r.clocks),
    maskedFields: [...r.masked],
    deleted: false,
    createTime: r.createTime ? timestampFromDate(r.createTime) : undefined,
    updateTime: r.updateTime ? timestampFromDate(r.updateTime) : undefined,
  });
}

const time = (d: Date | null) => (d ? timestampFromDate(d) : undefined);

/** The ChangeEvent message of an event. */
export function eventMessage(ev: StreamEvent, cursor: string, schemas: SchemaSet): ChangeEvent {
  switch (ev.kind) {
    case "upsert":
      return create(ChangeEventSchema, {
        cursor,
        kind: {
          case: "upsert",
          value: {
            collection: ev.collection,
            id: ev.id,
            version: BigInt(ev.version),
            set: encodeFields(schemas.collections.get(ev.collection), ev.set, ev.masked),
            maskedFields: [...ev.masked],
            cleared: ev.cleared,
            clocks: clocksPb(ev.clocks),
            created: ev.created,
            commitTime: time(ev.commitTime),
          },
        },
      });
    case "delete":
      return create(ChangeEventSchema, {
        cursor,
        kind: { case: "delete", value: { collection: ev.collection, id: ev.id, version: BigInt(ev.version), commitTime: time(ev.commitTime) } },
      });
    case "enter":
      return create(ChangeEventSchema, {
        cursor,
        kind: { case: "enterScope", value: { record: recordPb(schemas, ev.record), reason: REASONS[ev.reason], commitTime: time(ev.commitTime) } },
      });
    case "leave":
      return create(ChangeEventSchema, {
        cursor,
        kind: {
          case: "leaveScope",
          value: { collection: ev.collection, id: ev.id, version: BigInt(ev.version), reason: REASONS[ev.reason], commitTime: time(ev.commitTime) },
        },
      });
    case "snapshot":
      return create(ChangeEventSchema, { cursor, kind: { case: "snapshotRecord", value: { record: recordPb(schemas, ev.record) } } });
  }
}

/** Frames encoded ChangeEvent bytes as one `events` entry (field 1, length-delimited). */
export function frame(event: Uint8Array): Uint8Array {
  let len = event.length;
  const head: number[] = [0x0a];
  while (len > 0x7f) {
    head.push((len & 0x7f) | 0x80);
    len >>>= 7;
  }
  head.push(len);
  const out = new Uint8Array(head.length + event.length);
  out.set(head, 0);
  out.set(event, head.length);
  return out;
}

export function encodeEvent(ev: StreamEvent, cursor: string, schemas: SchemaSet): Uint8Array {
  // Upserts (nearly every event) take the hand encoder; the rest, reflection.
  if (ev.kind === "upsert") return encodeUpsert(ev, cursor, schemas.collections.get(ev.collection), true);
  return frame(toBinary(ChangeEventSchema, eventMessage(ev, cursor, schemas)));
}

/** `encodeEvent` appending to `w`: a batch writes its events into one buffer. */
export function writeEvent(w: WireWriter, ev: StreamEvent, cursor: string, schemas: SchemaSet): void {
  if (ev.kind === "upsert") writeUpsert(w, ev, cursor, schemas.collections.get(ev.collection), true);
  else w.raw(frame(toBinary(ChangeEventSchema, eventMessage(ev, cursor, schemas))));
}

export function encodeHeartbeat(cursor: string, nowMs: number): Uint8Array {
  return frame(toBinary(ChangeEventSchema, create(ChangeEventSchema, { cursor, kind: { case: "heartbeat", value: { serverTime: timestampFromMs(nowMs) } } })));
}

export function encodeSnapshotEnd(cursor: string, records: number): Uint8Array {
  return frame(toBinary(ChangeEventSchema, create(ChangeEventSchema, { cursor, kind: { case: "snapshotEnd", value: { recordCount: BigInt(records) } } })));
}

/** How many framed events the bytes of a SubscribeResponse hold (reads only the frame headers). */
export function countEvents(message: Uint8Array): number {
  let n = 0;
  let i = 0;
  const varint = () => {
    let v = 0;
    let scale = 1;
    for (;;) {
      const b = message[i++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return v;
      scale *= 128;
    }
  };
  while (i < message.length) {
    varint(); // the tag of `events`
    const length = varint(); // read first: `i += varint()` would add to the old `i`
    i += length;
    n++;
  }
  return n;
}

/** Joins framed events into the bytes of one SubscribeResponse. */
export function joinEvents(parts: readonly Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
