// The WriteRecords response, encoded straight from the domain results.
//
// Why: it is the write path's largest response (one MutationResult with a
// FieldOutcome per field for every mutation of a batch), and building
// protobuf-es messages only to serialize them through reflection cost about
// an eighth of the server's CPU per write. Field numbers come from the
// generated descriptors, so a renumbering cannot silently desync this
// encoder; test/unit/records/fast-encode.test.ts checks that it decodes to
// exactly what the reflective path (`encodeResult`) builds.
import { WireType } from "@bufbuild/protobuf/wire";
import { WireWriter } from "../platform/wire/writer.js";
import { WriteRecordsResponseSchema } from "../../gen/deltamesh/v1/records_pb.js";
import { FieldClockSchema, FieldOutcomeSchema, MutationResultSchema } from "../../gen/deltamesh/v1/types_pb.js";
import { OUTCOME_STATUS } from "./convert.js";
import type { FieldClock, FieldOutcome, MutationResult } from "./model.js";

const RESPONSE_RESULTS = WriteRecordsResponseSchema.field.results.number;
const R = MutationResultSchema.field;
const O = FieldOutcomeSchema.field;
const C = FieldClockSchema.field;
const LEN = WireType.LengthDelimited;
/** Reused: encoding is synchronous, and finish() copies the message out. */
const writer = new WireWriter();
const VARINT = WireType.Varint;

/** A FieldClock's fields (inside a fork the caller opened). */
export function writeClock(w: WireWriter, c: FieldClock): void {
  if (c.version !== 0) w.tag(C.version.number, VARINT).uint64(c.version);
  if (c.hlc !== 0n) w.tag(C.hlc.number, VARINT).uint64(c.hlc);
  if (c.source) w.tag(C.source.number, LEN).string(c.source);
  if (c.actor) w.tag(C.actor.number, LEN).string(c.actor);
  if (c.device) w.tag(C.device.number, LEN).string(c.device);
}

function writeOutcome(w: WireWriter, o: FieldOutcome): void {
  if (o.field) w.tag(O.field.number, LEN).string(o.field);
  const status = OUTCOME_STATUS[o.status];
  if (status !== 0) w.tag(O.status.number, VARINT).int32(status);
  if (o.policy) w.tag(O.policy.number, LEN).string(o.policy);
  if (o.winner) {
    w.tag(O.winner.number, LEN).fork();
    writeClock(w, o.winner);
    w.join();
  }
  if (o.ticketId) w.tag(O.ticketId.number, LEN).string(o.ticketId);
}

function writeResult(w: WireWriter, r: MutationResult): void {
  if (r.collection) w.tag(R.collection.number, LEN).string(r.collection);
  if (r.id) w.tag(R.id.number, LEN).string(r.id);
  if (r.version !== 0) w.tag(R.version.number, VARINT).uint64(r.version);
  if (r.created) w.tag(R.created.number, VARINT).bool(true);
  if (r.replayed) w.tag(R.replayed.number, VARINT).bool(true);
  for (const o of r.fields) {
    w.tag(R.fields.number, LEN).fork();
    writeOutcome(w, o);
    w.join();
  }
  if (r.cursor) w.tag(R.cursor.number, LEN).string(r.cursor);
  if (r.deleted) w.tag(R.deleted.number, VARINT).bool(true);
}

/** A binary WriteRecordsResponse holding `results` in order. */
export function encodeWriteRecordsResponse(results: readonly MutationResult[]): Uint8Array {
  const w = writer.reset();
  for (const r of results) {
    w.tag(RESPONSE_RESULTS, LEN).fork();
    writeResult(w, r);
    w.join();
  }
  return w.finish();
}
