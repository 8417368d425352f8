// A protobuf wire reader for the hand decoders of hot requests (WriteRecords).
// It reads straight from the request Buffer and is deliberately narrow: it
// handles the well-formed encodings a hand decoder expects and throws
// `NotHandled` on anything else (a truncated value, an overlong varint, a
// string that is not ASCII and not strict UTF-8). The decoder's caller then
// decodes the same bytes with protobuf-es, which either handles them (an
// unknown field, a repeated message field to merge) or refuses them with
// its own error, so the hand decoder never has to reproduce every corner of
// the format to stay exactly equivalent.
//
// Strings are decoded like protobuf-es decodes proto3 strings: a strict
// TextDecoder (which also drops a leading byte order mark). Pure ASCII, the
// common case for ids, names and keys, is sliced directly.

/** The bytes are outside what the hand decoder handles; decode them reflectively. */
export class NotHandled extends Error {
  constructor(why: string) {
    super(`hand decoder: ${why}`);
  }
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

export class WireReader {
  pos: number;

  constructor(
    readonly buf: Buffer,
    start = 0,
  ) {
    this.pos = start;
  }

  /** A tag's field number and wire type, as `(fieldNo << 3) | wireType`. */
  tag(): number {
    const start = this.pos;
    const t = this.uint32();
    if (this.pos - start > 5 || t >>> 3 === 0) throw new NotHandled("bad tag");
    return t;
  }

  /** A varint's low 32 bits, unsigned (uint32, lengths, tags). */
  uint32(): number {
    const buf = this.buf;
    if (this.pos >= buf.length) throw new NotHandled("truncated varint");
    let b = buf[this.pos++]!;
    if (b < 0x80) return b;
    let v = b & 0x7f;
    for (let shift = 7; shift < 70; shift += 7) {
      if (this.pos >= buf.length) throw new NotHandled("truncated varint");
      b = buf[this.pos++]!;
      if (shift < 32) v |= (b & 0x7f) << shift;
      if (b < 0x80) return v >>> 0;
    }
    throw new NotHandled("varint longer than 10 bytes");
  }

  /** A varint's low 32 bits, signed (int32). */
  int32(): number {
    return this.uint32() | 0;
  }

  uint64(): bigint {
    const buf = this.buf;
    // Up to 7 bytes (49 bits) fit a double exactly: no BigInt arithmetic.
    let v = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      if (this.pos >= buf.length) throw new NotHandled("truncated varint");
      const b = buf[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (b < 0x80) return BigInt(v);
      scale *= 128;
    }
    let big = BigInt(v);
    for (let shift = 49n; shift < 70n; shift += 7n) {
      if (this.pos >= buf.length) throw new NotHandled("truncated varint");
      const b = buf[this.pos++]!;
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asUintN(64, big);
    }
    throw new NotHandled("varint longer than 10 bytes");
  }

  int64(): bigint {
    return BigInt.asIntN(64, this.uint64());
  }

  bool(): boolean {
    return this.uint64() !== 0n;
  }

  /** Reads a length prefix; returns where the value ends. */
  lengthEnd(limit: number): number {
    const len = this.uint32();
    const end = this.pos + len;
    if (end > limit) throw new NotHandled("length beyond its message");
    return end;
  }

  string(limit: number): string {
    const end = this.lengthEnd(limit);
    const buf = this.buf;
    const start = this.pos;
    this.pos = end;
    let i = start;
    while (i < end && buf[i]! < 0x80) i++;
    if (i === end) return buf.toString("latin1", start, end);
    try {
      return strictUtf8.decode(buf.subarray(start, end));
    } catch {
      throw new NotHandled("invalid UTF-8");
    }
  }
}
