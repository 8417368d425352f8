// The WriteRecords request, decoded by hand into the same protobuf-es
// messages `fromBinary` builds.
//
// Why: it is the write path's largest request (a map of Values per
// mutation), and protobuf-es's reflective decoder cost about a tenth of the
// server's CPU per mutation in the batch-write benchmark. The result is the
// plain objects protobuf-es itself would return, so handlers cannot tell the
// difference; test/unit/records/fast-decode.test.ts checks that it returns
// a strictly equal object to `fromBinary`'s (or leaves the bytes to it) for
// arbitrary requests and arbitrary corruptions of their bytes.
//
// Anything unusual (an unknown field, a wire type the schema does not use, a
// singular message field given twice, which protobuf-es merges) throws
// NotHandled, and the caller decodes the bytes with protobuf-es instead.
// Field numbers come from the generated descriptors.
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { WireType } from "@bufbuild/protobuf/wire";
import { NotHandled, WireReader } from "../platform/wire/reader.js";
import { WriteRecordsRequestSchema, type WriteRecordsRequest } from "../../gen/deltamesh/v1/records_pb.js";
import {
  IdentityKeySchema,
  MutationSchema,
  RecordRefSchema,
  StringListSchema,
  ValueSchema,
  type IdentityKey,
  type Mutation,
  type RecordRef,
  type StringList,
  type Value,
} from "../../gen/deltamesh/v1/types_pb.js";

const VARINT = WireType.Varint;
const LEN = WireType.LengthDelimited;
const tagOf = (field: { number: number }, wireType: WireType): number => ((field.number << 3) | wireType) >>> 0;

const REQ_MUTATIONS = tagOf(WriteRecordsRequestSchema.field.mutations, LEN);
const M = MutationSchema.field;
const M_REF = tagOf(M.ref, LEN);
const M_SET = tagOf(M.set, LEN);
const M_CLEAR = tagOf(M.clear, LEN);
const M_EXPECTED = tagOf(M.expectedVersion, VARINT);
const M_BASE = tagOf(M.baseVersion, VARINT);
const M_CMID = tagOf(M.clientMutationId, LEN);
const M_SOURCE = tagOf(M.source, LEN);
const M_DEVICE = tagOf(M.device, LEN);
const M_EDIT_TIME = tagOf(M.editTime, LEN);
const M_DELETE = tagOf(M.delete, VARINT);
const R = RecordRefSchema.field;
const R_COLLECTION = tagOf(R.collection, LEN);
const R_ID = tagOf(R.id, LEN);
const R_IDENTITY = tagOf(R.identity, LEN);
const K_FIELD = tagOf(IdentityKeySchema.field.field, LEN);
const K_VALUE = tagOf(IdentityKeySchema.field.value, LEN);
const V = ValueSchema.field;
const V_STRING = tagOf(V.stringValue, LEN);
const V_INT = tagOf(V.intValue, VARINT);
const V_DECIMAL = tagOf(V.decimalValue, LEN);
const V_BOOL = tagOf(V.boolValue, VARINT);
const V_TIMESTAMP = tagOf(V.timestampValue, LEN);
const V_ENUM = tagOf(V.enumValue, LEN);
const V_LIST = tagOf(V.stringListValue, LEN);
const V_JSON = tagOf(V.jsonValue, LEN);
const L_VALUES = tagOf(StringListSchema.field.values, LEN);
const T_SECONDS = tagOf(TimestampSchema.field.seconds, VARINT);
const T_NANOS = tagOf(TimestampSchema.field.nanos, VARINT);
// A map entry's key (field 1) and value (field 2), fixed by the protobuf spec.
const ENTRY_KEY = tagOf({ number: 1 }, LEN);
const ENTRY_VALUE = tagOf({ number: 2 }, LEN);

/** The request as protobuf-es's `fromBinary` decodes it, or null when the bytes need protobuf-es. */
export function decodeWriteRecordsRequest(bytes: Buffer): WriteRecordsRequest | null {
  try {
    const r = new WireReader(bytes);
    const end = bytes.length;
    const mutations: Mutation[] = [];
    while (r.pos < end) {
      if (r.tag() !== REQ_MUTATIONS) throw new NotHandled("unexpected field");
      mutations.push(mutation(r, r.lengthEnd(end)));
    }
    return { $typeName: WriteRecordsRequestSchema.typeName, mutations };
  } catch (e) {
    if (e instanceof NotHandled) return null;
    throw e;
  }
}

function mutation(r: WireReader, end: number): Mutation {
  // Property order and presence as protobuf-es's zero message: implicit
  // fields always, explicit ones (messages, `optional`) only when set.
  const m: Mutation = {
    $typeName: MutationSchema.typeName,
    set: {},
    clear: [],
    baseVersion: 0n,
    clientMutationId: "",
    source: "",
    device: "",
    delete: false,
  };
  while (r.pos < end) {
    switch (r.tag()) {
      case M_REF:
        if (m.ref) throw new NotHandled("ref given twice");
        m.ref = recordRef(r, r.lengthEnd(end));
        break;
      case M_SET:
        mapEntry(r, r.lengthEnd(end), m.set);
        break;
      case M_CLEAR:
        m.clear.push(r.string(end));
        break;
      case M_EXPECTED:
        m.expectedVersion = r.uint64();
        break;
      case M_BASE:
        m.baseVersion = r.uint64();
        break;
      case M_CMID:
        m.clientMutationId = r.string(end);
        break;
      case M_SOURCE:
        m.source = r.string(end);
        break;
      case M_DEVICE:
        m.device = r.string(end);
        break;
      case M_EDIT_TIME:
        if (m.editTime) throw new NotHandled("edit_time given twice");
        m.editTime = timestamp(r, r.lengthEnd(end));
        break;
      case M_DELETE:
        m.delete = r.bool();
        break;
      default:
        throw new NotHandled("unexpected field");
    }
  }
  return atEnd(r, end, m);
}

function recordRef(r: WireReader, end: number): RecordRef {
  const ref: RecordRef = { $typeName: RecordRefSchema.typeName, collection: "", target: { case: undefined } };
  while (r.pos < end) {
    switch (r.tag()) {
      case R_COLLECTION:
        ref.collection = r.string(end);
        break;
      case R_ID:
        ref.target = { case: "id", value: r.string(end) };
        break;
      case R_IDENTITY:
        if (ref.target.case === "identity") throw new NotHandled("identity given twice");
        ref.target = { case: "identity", value: identityKey(r, r.lengthEnd(end)) };
        break;
      default:
        throw new NotHandled("unexpected field");
    }
  }
  return atEnd(r, end, ref);
}

function identityKey(r: WireReader, end: number): IdentityKey {
  const k: IdentityKey = { $typeName: IdentityKeySchema.typeName, field: "" };
  while (r.pos < end) {
    switch (r.tag()) {
      case K_FIELD:
        k.field = r.string(end);
        break;
      case K_VALUE:
        if (k.value) throw new NotHandled("value given twice");
        k.value = value(r, r.lengthEnd(end));
        break;
      default:
        throw new NotHandled("unexpected field");
    }
  }
  return atEnd(r, end, k);
}

function mapEntry(r: WireReader, end: number, into: Record<string, Value>): void {
  let key = "";
  let v: Value | undefined;
  while (r.pos < end) {
    switch (r.tag()) {
      case ENTRY_KEY:
        key = r.string(end);
        // Assigning it would set the object's prototype: left to protobuf-es.
        if (key === "__proto__") throw new NotHandled("reserved map key");
        break;
      case ENTRY_VALUE:
        if (v) throw new NotHandled("map value given twice");
        v = value(r, r.lengthEnd(end));
        break;
      default:
        throw new NotHandled("unexpected field");
    }
  }
  atEnd(r, end, null);
  into[key] = v ?? { $typeName: ValueSchema.typeName, kind: { case: undefined } };
}

function value(r: WireReader, end: number): Value {
  const v: Value = { $typeName: ValueSchema.typeName, kind: { case: undefined } };
  while (r.pos < end) {
    switch (r.tag()) {
      case V_STRING:
        v.kind = { case: "stringValue", value: r.string(end) };
        break;
      case V_INT:
        v.kind = { case: "intValue", value: r.int64() };
        break;
      case V_DECIMAL:
        v.kind = { case: "decimalValue", value: r.string(end) };
        break;
      case V_BOOL:
        v.kind = { case: "boolValue", value: r.bool() };
        break;
      case V_TIMESTAMP:
        if (v.kind.case === "timestampValue") throw new NotHandled("timestamp given twice");
        v.kind = { case: "timestampValue", value: timestamp(r, r.lengthEnd(end)) };
        break;
      case V_ENUM:
        v.kind = { case: "enumValue", value: r.string(end) };
        break;
      case V_LIST:
        if (v.kind.case === "stringListValue") throw new NotHandled("list given twice");
        v.kind = { case: "stringListValue", value: stringList(r, r.lengthEnd(end)) };
        break;
      case V_JSON:
        v.kind = { case: "jsonValue", value: r.string(end) };
        break;
      default:
        throw new NotHandled("unexpected field");
    }
  }
  return atEnd(r, end, v);
}

function stringList(r: WireReader, end: number): StringList {
  const values: string[] = [];
  while (r.pos < end) {
    if (r.tag() !== L_VALUES) throw new NotHandled("unexpected field");
    values.push(r.string(end));
  }
  return atEnd(r, end, { $typeName: StringListSchema.typeName, values });
}

function timestamp(r: WireReader, end: number): Timestamp {
  const t: Timestamp = { $typeName: TimestampSchema.typeName, seconds: 0n, nanos: 0 };
  while (r.pos < end) {
    switch (r.tag()) {
      case T_SECONDS:
        t.seconds = r.int64();
        break;
      case T_NANOS:
        t.nanos = r.int32();
        break;
      default:
        throw new NotHandled("unexpected field");
    }
  }
  return atEnd(r, end, t);
}

/** A nested message must end exactly where its length said (a varint may not run past it). */
function atEnd<T>(r: WireReader, end: number, message: T): T {
  if (r.pos !== end) throw new NotHandled("value ran past its message");
  return message;
}
