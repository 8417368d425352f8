// The hand decoder of WriteRecords requests returns exactly what protobuf-es's
// fromBinary returns (same objects, same shape, same presence), or null and
// leaves the bytes to fromBinary: for arbitrary requests, for arbitrary
// corruptions of their bytes, and for the corners protobuf-es treats
// specially (merged message fields, strict UTF-8, a leading byte order mark,
// unknown fields).
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { WriteRecordsRequestSchema, type WriteRecordsRequest } from "../../../gen/deltamesh/v1/records_pb.js";
import { decodeWriteRecordsRequest } from "../../../services/records/fast-decode.js";

type RequestInit = MessageInitShape<typeof WriteRecordsRequestSchema>;
type ValueInit = NonNullable<NonNullable<RequestInit["mutations"]>[number]["set"]>[string];

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 20 }), fc.constantFrom("", "\uFEFFbom", "138 0013 8000", "Zoë 张伟"));
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const timestamp = fc.record({ seconds: int64, nanos: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) });
const value: fc.Arbitrary<ValueInit> = fc.oneof(
  fc.constant({}),
  text.map((v) => ({ kind: { case: "stringValue" as const, value: v } })),
  int64.map((v) => ({ kind: { case: "intValue" as const, value: v } })),
  text.map((v) => ({ kind: { case: "decimalValue" as const, value: v } })),
  fc.boolean().map((v) => ({ kind: { case: "boolValue" as const, value: v } })),
  timestamp.map((v) => ({ kind: { case: "timestampValue" as const, value: v } })),
  text.map((v) => ({ kind: { case: "enumValue" as const, value: v } })),
  fc.array(text, { maxLength: 4 }).map((values) => ({ kind: { case: "stringListValue" as const, value: { values } } })),
  text.map((v) => ({ kind: { case: "jsonValue" as const, value: v } })),
);
const target = fc.oneof(
  fc.constant({ case: undefined }),
  text.map((v) => ({ case: "id" as const, value: v })),
  fc.record({ field: text, value: fc.option(value, { nil: undefined }) }).map((v) => ({ case: "identity" as const, value: v })),
);
const mutation = fc.record(
  {
    ref: fc.record({ collection: text, target }),
    set: fc.dictionary(text, value, { maxKeys: 6 }),
    clear: fc.array(text, { maxLength: 3 }),
    expectedVersion: uint64,
    baseVersion: uint64,
    clientMutationId: text,
    source: text,
    device: text,
    editTime: timestamp,
    delete: fc.boolean(),
  },
  { requiredKeys: [] },
);
const request: fc.Arbitrary<RequestInit> = fc.record({ mutations: fc.array(mutation, { maxLength: 5 }) });

/** What the server would get: the hand decoder's result, else fromBinary's, else the error. */
function decodeBoth(bytes: Uint8Array): { fast: WriteRecordsRequest | null; slow: WriteRecordsRequest | Error } {
  const buf = Buffer.from(bytes);
  let slow: WriteRecordsRequest | Error;
  try {
    slow = fromBinary(WriteRecordsRequestSchema, buf);
  } catch (e) {
    slow = e as Error;
  }
  return { fast: decodeWriteRecordsRequest(buf), slow };
}

function expectSame(bytes: Uint8Array): WriteRecordsRequest | null {
  const { fast, slow } = decodeBoth(bytes);
  if (slow instanceof Error) expect(fast).toBeNull();
  else if (fast !== null) expect(fast).toStrictEqual(slow);
  return fast;
}

/** A request's bytes followed by one more mutation written by hand. */
function withExtraMutation(base: RequestInit, write: (w: BinaryWriter) => void): Uint8Array {
  const w = new BinaryWriter();
  w.raw(toBinary(WriteRecordsRequestSchema, create(WriteRecordsRequestSchema, base)));
  w.tag(1, WireType.LengthDelimited).fork();
  write(w);
  w.join();
  return w.finish();
}

describe("decodeWriteRecordsRequest", () => {
  it("decodes any request exactly as fromBinary does", () => {
    fc.assert(
      fc.property(request, (init) => {
        const bytes = toBinary(WriteRecordsRequestSchema, create(WriteRecordsRequestSchema, init));
        const fast = expectSame(bytes);
        // Well-formed requests are the hand decoder's whole point: it takes them all.
        expect(fast).not.toBeNull();
      }),
      { numRuns: 500 },
    );
  });

  it("returns fromBinary's result or null for corrupted bytes, never something else", () => {
    const corrupted = request.chain((init) => {
      const bytes = toBinary(WriteRecordsRequestSchema, create(WriteRecordsRequestSchema, init));
      return fc.record({
        bytes: fc.constant(bytes),
        edits: fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 4 }),
        cut: fc.option(fc.nat(), { nil: undefined }),
      });
    });
    fc.assert(
      fc.property(corrupted, ({ bytes, edits, cut }) => {
        if (bytes.length === 0) return;
        const b = Uint8Array.from(bytes);
        for (const e of edits) b[e.at % b.length] = e.byte;
        expectSame(cut === undefined ? b : b.subarray(0, cut % (b.length + 1)));
      }),
      { numRuns: 2000 },
    );
  });

  it("keeps the low 64 bits of a 10-byte varint, as fromBinary does", () => {
    // base_version (5): nine 0xff bytes and a last byte with bits beyond the 64th.
    const overlong = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f);
    const bytes = withExtraMutation({}, (w) => w.tag(5, WireType.Varint).raw(overlong));
    expect(expectSame(bytes)?.mutations[0]!.baseVersion).toBe(2n ** 64n - 1n);
  });

  it("leaves invalid UTF-8 to fromBinary, which refuses it", () => {
    const bytes = withExtraMutation({}, (w) => w.tag(6, WireType.LengthDelimited).bytes(Uint8Array.of(0x61, 0xc3, 0x28)));
    const { fast, slow } = decodeBoth(bytes);
    expect(fast).toBeNull();
    expect(slow).toBeInstanceOf(Error);
  });

  it("drops a leading byte order mark as fromBinary does", () => {
    const bytes = toBinary(WriteRecordsRequestSchema, create(WriteRecordsRequestSchema, { mutations: [{ source: "\uFEFF\uFEFFerp" }] }));
    expect(expectSame(bytes)?.mutations[0]!.source).toBe("\uFEFFerp");
  });

  it("leaves merges, unknown fields and the __proto__ key to fromBinary", () => {
    const cases: Uint8Array[] = [
      // `ref` twice: protobuf-es merges the two messages.
      withExtraMutation({}, (w) => {
        w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("customers").join();
        w.tag(1, WireType.LengthDelimited).fork().tag(2, WireType.LengthDelimited).string("c-1").join();
      }),
      // An unknown field, kept in $unknown by protobuf-es.
      withExtraMutation({}, (w) => w.tag(99, WireType.Varint).uint32(7)),
      // A map key that would set the object's prototype.
      withExtraMutation({}, (w) => w.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("__proto__").join()),
    ];
    for (const bytes of cases) {
      const { fast, slow } = decodeBoth(bytes);
      expect(fast).toBeNull();
      expect(slow).not.toBeInstanceOf(Error);
    }
    const merged = decodeBoth(cases[0]!).slow as WriteRecordsRequest;
    expect(merged.mutations[0]!.ref).toMatchObject({ collection: "customers", target: { case: "id", value: "c-1" } });
  });
});
