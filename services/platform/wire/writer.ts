// A protobuf wire writer for the hand encoders of hot messages (stream events,
// write responses). It writes into one growing Buffer: strings go in with
// Buffer#utf8Write (no TextEncoder array per string), and a nested message
// reserves one length byte, moving its bytes only in the rare case that its
// length needs more. protobuf-es's BinaryWriter allocates a chunk per string
// and per fork; in the catch-up profile its string encoding, fork/join and
// finish were about a third of the server's CPU.
//
// Same calling style as BinaryWriter (tag, typed values, fork/join, finish),
// for the subset the hand encoders use; their tests decode the output with
// the generated schemas and compare it with the reflective encoder's. One
// writer can be reused (`reset`): `finish` copies the message out, so the
// result is exactly its size and the writer's buffer is not kept alive.
import type { WireType } from "@bufbuild/protobuf/wire";

const INITIAL_BYTES = 256;
/** Strings up to this many UTF-16 units are tried as ASCII by a JS loop before Buffer#write. */
const SHORT_STRING = 64;

export class WireWriter {
  private buf: Buffer;
  private pos = 0;
  /** Where each open nested message's reserved length byte is. */
  private readonly forks: number[] = [];

  constructor(initialBytes = INITIAL_BYTES) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  tag(fieldNo: number, wireType: WireType): this {
    return this.varint32(((fieldNo << 3) | wireType) >>> 0);
  }

  string(value: string): this {
    // At most 3 bytes per UTF-16 unit, behind a length of at most 5 bytes.
    const length = value.length;
    this.ensure(5 + length * 3);
    const at = this.pos;
    const start = at + 1;
    const buf = this.buf;
    // Short ASCII strings (names, ids, cursors: most strings of an event)
    // are copied by this loop: Buffer#write is a native call costing ~85 ns
    // a string here, the loop ~30. The first non-ASCII unit hands the whole
    // string to Buffer#write.
    let i = 0;
    if (length <= SHORT_STRING) {
      for (; i < length; i++) {
        const unit = value.charCodeAt(i);
        if (unit >= 0x80) break;
        buf[start + i] = unit;
      }
    }
    const n = i === length ? length : buf.write(value, start, "utf8");
    this.pos = start + n;
    this.settleLength(at, n);
    return this;
  }

  bool(value: boolean): this {
    this.ensure(1);
    this.buf[this.pos++] = value ? 1 : 0;
    return this;
  }

  int32(value: number): this {
    // Negative int32 are sign-extended to 10 bytes, as protobuf requires.
    return value >= 0 ? this.varint32(value) : this.varint64(BigInt.asUintN(64, BigInt(value)));
  }

  uint64(value: bigint | number): this {
    return typeof value === "number" && value <= 0xffffffff ? this.varint32(value) : this.varint64(BigInt.asUintN(64, BigInt(value)));
  }

  int64(value: bigint | number): this {
    if (typeof value === "number") return value >= 0 ? this.uint64(value) : this.varint64(BigInt.asUintN(64, BigInt(value)));
    return this.uint64(value);
  }

  /** Opens a nested message (its tag is already written). */
  fork(): this {
    this.ensure(1);
    this.forks.push(this.pos);
    this.pos++;
    return this;
  }

  /** Closes the innermost nested message, writing its length. */
  join(): this {
    const at = this.forks.pop();
    if (at === undefined) throw new Error("WireWriter.join without fork");
    this.settleLength(at, this.pos - at - 1);
    return this;
  }

  /** Bytes already encoded (a framed event, say), as they are. */
  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  /** Appends a copy of bytes already written, `start` to `end`. */
  copy(start: number, end: number): this {
    this.ensure(end - start);
    this.buf.copyWithin(this.pos, start, end);
    this.pos += end - start;
    return this;
  }

  /** Bytes written since the last reset. */
  get length(): number {
    return this.pos;
  }

  /**
   * The first `end` bytes written, as a new array; the bytes after them stay,
   * moved to the front (for a batch that writes events until one overflows
   * its message).
   */
  take(end: number): Uint8Array {
    if (this.forks.length > 0) throw new Error("WireWriter.take with an open fork");
    const out = new Uint8Array(end);
    out.set(this.buf.subarray(0, end));
    this.buf.copyWithin(0, end, this.pos);
    this.pos -= end;
    return out;
  }

  /** The message written since the last reset, as a new array. */
  finish(): Uint8Array {
    if (this.forks.length > 0) throw new Error("WireWriter.finish with an open fork");
    const out = new Uint8Array(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    return out;
  }

  /** Starts a new message, keeping the buffer. */
  reset(): this {
    this.pos = 0;
    this.forks.length = 0;
    return this;
  }

  /** Writes `length` into the byte reserved at `at`, moving the `length` bytes after it if it needs more. */
  private settleLength(at: number, length: number): void {
    if (length < 0x80) {
      this.buf[at] = length;
      return;
    }
    const extra = varintSize(length) - 1;
    this.ensure(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    this.pos += extra;
    let p = at;
    let v = length;
    while (v > 0x7f) {
      this.buf[p++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[p] = v;
  }

  private varint32(value: number): this {
    this.ensure(5);
    let v = value >>> 0;
    while (v > 0x7f) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
    return this;
  }

  /** `value` in [0, 2^64): split in two 32-bit halves, so only two bigint operations. */
  private varint64(value: bigint): this {
    this.ensure(10);
    let lo = Number(value & 0xffffffffn) >>> 0;
    let hi = Number(value >> 32n) >>> 0;
    while (hi > 0 || lo > 0x7f) {
      this.buf[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.buf[this.pos++] = lo;
    return this;
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + bytes) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }
}

function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    n >>>= 7;
    size++;
  }
  return size;
}
