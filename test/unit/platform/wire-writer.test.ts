// The hand encoders' wire writer writes exactly the bytes protobuf-es's
// BinaryWriter writes, for any mix of the operations they use, including
// long strings and nested messages whose length needs more than one byte.
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WireWriter } from "../../../services/platform/wire/writer.js";

type Op =
  | { op: "string"; field: number; value: string }
  | { op: "bool"; field: number; value: boolean }
  | { op: "int32"; field: number; value: number }
  | { op: "uint64"; field: number; value: bigint }
  | { op: "int64"; field: number; value: bigint | number }
  | { op: "nested"; field: number; ops: Op[] };

const field = fc.integer({ min: 1, max: 5000 });
/** ASCII up to any UTF-16 unit (lone surrogates too), then more: the short-string fast path must hand over mid-string. */
const asciiThenAnyUnit = fc
  .tuple(fc.string({ maxLength: 70 }), fc.integer({ min: 0x80, max: 0xffff }), fc.string({ unit: "binary", maxLength: 10 }))
  .map(([head, unit, tail]) => head + String.fromCharCode(unit) + tail);
const leaf: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("string" as const), field, value: fc.oneof(fc.string(), fc.string({ unit: "grapheme", maxLength: 300 }), fc.string({ minLength: 100, maxLength: 400 }), asciiThenAnyUnit) }),
  fc.record({ op: fc.constant("bool" as const), field, value: fc.boolean() }),
  fc.record({ op: fc.constant("int32" as const), field, value: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) }),
  fc.record({ op: fc.constant("uint64" as const), field, value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ op: fc.constant("int64" as const), field, value: fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.maxSafeInteger(), fc.integer()) }),
);
const ops: fc.Arbitrary<Op[]> = fc.letrec<{ list: Op[]; op: Op }>((tie) => ({
  list: fc.array(tie("op"), { maxLength: 8 }),
  op: fc.oneof({ depthSize: "small" }, leaf, fc.record({ op: fc.constant("nested" as const), field, ops: tie("list") })),
})).list;

function write(w: BinaryWriter | WireWriter, list: Op[]): void {
  for (const o of list) {
    switch (o.op) {
      case "string":
        w.tag(o.field, WireType.LengthDelimited).string(o.value);
        break;
      case "bool":
        w.tag(o.field, WireType.Varint).bool(o.value);
        break;
      case "int32":
        w.tag(o.field, WireType.Varint).int32(o.value);
        break;
      case "uint64":
        w.tag(o.field, WireType.Varint).uint64(o.value);
        break;
      case "int64":
        w.tag(o.field, WireType.Varint).int64(o.value);
        break;
      case "nested":
        w.tag(o.field, WireType.LengthDelimited).fork();
        write(w, o.ops);
        w.join();
        break;
    }
  }
}

describe("WireWriter", () => {
  it("writes what BinaryWriter writes", () => {
    const reused = new WireWriter(8);
    fc.assert(
      fc.property(ops, (list) => {
        const expected = new BinaryWriter();
        write(expected, list);
        write(reused.reset(), list);
        expect(Buffer.from(reused.finish())).toEqual(Buffer.from(expected.finish()));
      }),
      { numRuns: 150 },
    );
  });

  it("takes the first bytes written and keeps the rest at the front, raw bytes included", () => {
    fc.assert(
      fc.property(ops, fc.uint8Array({ maxLength: 300 }), ops, (head, raw, rest) => {
        const w = new WireWriter(8);
        write(w, head);
        const cut = w.length;
        w.raw(raw);
        write(w, rest);
        const whole = new BinaryWriter();
        write(whole, head);
        const expectedHead = whole.finish();
        const tail = new BinaryWriter();
        write(tail, rest);
        expect(Buffer.from(w.take(cut))).toEqual(Buffer.from(expectedHead));
        expect(Buffer.from(w.take(w.length))).toEqual(Buffer.concat([raw, tail.finish()]));
        expect(w.length).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it("refuses an unbalanced join or finish", () => {
    expect(() => new WireWriter().join()).toThrow(/without fork/);
    expect(() => new WireWriter().tag(1, WireType.LengthDelimited).fork().finish()).toThrow(/open fork/);
  });
});
