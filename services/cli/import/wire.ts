// Hand-written protobuf encoding of the import's WriteRecords requests and
// decoding of the parts of the response it reads. The reflective codec costs
// ~45 µs to build and encode a mutation and ~20 µs to decode a result here;
// at the import's target rate that alone would take most of a core, beside a
// server on the same two cores. The wire format is the one of
// proto/deltamesh/v1/{types,records}.proto; test/unit/cli/import-wire.test.ts
// checks every shape against the generated codec. Pure.
import type { Value } from "../../../gen/deltamesh/v1/types_pb.js";

/** A value's oneof case, exactly as protobuf-es models it. */
export type ValueKind = Exclude<Value["kind"], { case: undefined }>;

/** An upsert by identity key: the only mutation shape the importer sends. */
export interface ImportMutation {
  collection: string;
  keyField: string;
  keyValue: ValueKind;
  set: [string, ValueKind][];
  clear: string[];
  /** 0: no base (a blind write). */
  baseVersion: bigint;
  clientMutationId: string;
  source: string;
  device: string;
}

/** What the importer reads of a MutationResult. */
export interface ResultSummary {
  version: bigint;
  created: boolean;
  replayed: boolean;
  /** FieldOutcome.Status of each field, in order. */
  fieldStatuses: number[];
}

const LEN = 2;
const VARINT = 0;

/** A growable buffer; length-delimited fields reserve one length byte and shift when they need more. */
class Writer {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(v: number): void {
    this.ensure(10);
    while (v > 127) {
      this.buf[this.pos++] = (v & 127) | 128;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }

  varint64(v: bigint): void {
    // Two's complement for negative int64, as protobuf does.
    let u = BigInt.asUintN(64, v);
    if (u <= 0xffffffffn * 0x20000n) return this.varint(Number(u)); // fits a double exactly (< 2^49)
    this.ensure(10);
    while (u > 127n) {
      this.buf[this.pos++] = Number(u & 127n) | 128;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  string(field: number, s: string): void {
    this.tag(field, LEN);
    const max = s.length * 3;
    this.ensure(max + 5);
    if (max < 128) {
      // Short strings: write after a one-byte length and fill it in.
      const at = this.pos++;
      const n = this.buf.write(s, this.pos, "utf8");
      this.buf[at] = n;
      this.pos += n;
      return;
    }
    const n = Buffer.byteLength(s);
    this.varint(n);
    this.pos += this.buf.write(s, this.pos, "utf8");
  }

  /** Writes a length-delimited submessage whose body `body` writes. */
  message(field: number, body: () => void): void {
    this.tag(field, LEN);
    this.ensure(1);
    const at = this.pos++;
    body();
    const len = this.pos - at - 1;
    if (len < 128) {
      this.buf[at] = len;
      return;
    }
    let extra = 0;
    for (let l = len >> 7; l > 0; l >>= 7) extra++;
    this.ensure(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos = at;
    this.varint(len);
    this.pos += len;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

function writeValue(w: Writer, field: number, v: ValueKind): void {
  w.message(field, () => {
    switch (v.case) {
      case "stringValue":
        return w.string(1, v.value);
      case "intValue":
        w.tag(2, VARINT);
        return w.varint64(v.value);
      case "decimalValue":
        return w.string(3, v.value);
      case "boolValue":
        w.tag(4, VARINT);
        return w.varint(v.value ? 1 : 0);
      case "timestampValue":
        return w.message(5, () => {
          if (v.value.seconds !== 0n) {
            w.tag(1, VARINT);
            w.varint64(v.value.seconds);
          }
          if (v.value.nanos !== 0) {
            w.tag(2, VARINT);
            w.varint64(BigInt(v.value.nanos));
          }
        });
      case "enumValue":
        return w.string(6, v.value);
      case "stringListValue":
        return w.message(7, () => {
          for (const s of v.value.values) w.string(1, s);
        });
      case "jsonValue":
        return w.string(8, v.value);
    }
  });
}

function writeMutation(w: Writer, m: ImportMutation): void {
  w.message(1, () => {
    w.message(1, () => {
      w.string(1, m.collection);
      w.message(3, () => {
        w.string(1, m.keyField);
        writeValue(w, 2, m.keyValue);
      });
    });
    for (const [name, value] of m.set) {
      w.message(2, () => {
        w.string(1, name);
        writeValue(w, 2, value);
      });
    }
    for (const name of m.clear) w.string(3, name);
    if (m.baseVersion !== 0n) {
      w.tag(5, VARINT);
      w.varint64(m.baseVersion);
    }
    if (m.clientMutationId) w.string(6, m.clientMutationId);
    if (m.source) w.string(7, m.source);
    if (m.device) w.string(8, m.device);
  });
}

/** A WriteRecordsRequest holding `mutations`, in protobuf binary form. */
export function encodeWriteRequest(mutations: readonly ImportMutation[]): Buffer {
  const w = new Writer(256 * mutations.length + 64);
  for (const m of mutations) writeMutation(w, m);
  return w.finish();
}

/** Reads protobuf binary: varints, tags, skipping what is not needed. */
class Reader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 127) << shift;
      if (b < 128) return result;
      shift += 7n;
    }
  }

  /** A varint known to be small (tags, lengths, enums, bools). */
  small(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= this.end) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 127) * mul;
      if (b < 128) return result;
      mul *= 128;
    }
  }

  skip(wire: number): void {
    if (wire === 0) this.small();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) {
      // Not `this.pos += this.small()`: that reads pos before the length is consumed.
      const len = this.small();
      this.pos += len;
    }
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function readFieldStatus(r: Reader, end: number): number {
  const sub = new Reader(r.buf, r.pos, end);
  let status = 0;
  while (sub.pos < end) {
    const tag = sub.small();
    if (tag >>> 3 === 2 && (tag & 7) === VARINT) status = sub.small();
    else sub.skip(tag & 7);
  }
  return status;
}

function readResult(r: Reader, end: number): ResultSummary {
  const out: ResultSummary = { version: 0n, created: false, replayed: false, fieldStatuses: [] };
  const sub = new Reader(r.buf, r.pos, end);
  while (sub.pos < end) {
    const tag = sub.small();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 3 && wire === VARINT) out.version = sub.varint();
    else if (field === 4 && wire === VARINT) out.created = sub.small() !== 0;
    else if (field === 5 && wire === VARINT) out.replayed = sub.small() !== 0;
    else if (field === 6 && wire === LEN) {
      const len = sub.small();
      out.fieldStatuses.push(readFieldStatus(sub, sub.pos + len));
      sub.pos += len;
    } else sub.skip(wire);
  }
  return out;
}

/** The results of a WriteRecordsResponse, in request order. */
export function decodeWriteResults(buf: Uint8Array): ResultSummary[] {
  const r = new Reader(buf);
  const results: ResultSummary[] = [];
  while (r.pos < r.end) {
    const tag = r.small();
    if (tag >>> 3 === 1 && (tag & 7) === LEN) {
      const len = r.small();
      results.push(readResult(r, r.pos + len));
      r.pos += len;
    } else r.skip(tag & 7);
  }
  return results;
}
