// The hand encoder of upsert events decodes to exactly what the reflective
// path builds, for every value type, masks, clears, clocks and times.
import { equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ChangeEventSchema } from "../../../gen/deltamesh/v1/changes_pb.js";
import fc from "fast-check";
import { cursorEncoder, decodeCursor, encodeCursor } from "../../../services/changes/cursor.js";
import { eventMessage, frame } from "../../../services/changes/encode.js";
import type { StreamEvent } from "../../../services/changes/events.js";
import { encodeUpsert } from "../../../services/changes/fast-encode.js";
import { parseSchemaSet } from "../../../services/schema/load.js";
import type { StoredValue } from "../../../services/schema/types.js";
import { clock } from "./fixtures.js";

const schemas = parseSchemaSet({
  collections: {
    c: {
      fields: {
        s: { type: "string" },
        n: { type: "int" },
        d: { type: "decimal" },
        b: { type: "bool" },
        t: { type: "timestamp" },
        e: { type: "enum", values: ["x", "y"] },
        l: { type: "string_list" },
        j: { type: "json" },
      },
    },
  },
});

const upsert = (over: Partial<Extract<StreamEvent, { kind: "upsert" }>>): Extract<StreamEvent, { kind: "upsert" }> => ({
  kind: "upsert",
  collection: "c",
  id: "r-1",
  version: 7,
  set: {},
  masked: [],
  cleared: [],
  clocks: {},
  created: false,
  commitTime: new Date(1_700_000_000_123),
  ...over,
});

const shared = clock(9);
const long = { ...clock(10), source: "s".repeat(140), device: "d".repeat(60) };

const cases: [string, Extract<StreamEvent, { kind: "upsert" }>, string][] = [
  ["empty", upsert({}), "cur-1"],
  [
    "every value type",
    upsert({
      set: { s: "hé", n: -42, d: "12.50", b: false, t: "2024-02-29T12:00:00.5Z", e: "y", l: ["a", "b"], j: { k: [1, null] } },
      clocks: { s: clock(7), n: clock(6) },
      created: true,
    }),
    "cur-2",
  ],
  ["masked, cleared, a dropped field, before 1970", upsert({ set: { s: "138****5678", n: 5, gone: "x" }, masked: ["s"], cleared: ["d", "e"], commitTime: new Date(-1_500) }), ""],
  ["a masked non-string", upsert({ set: { n: "***" }, masked: ["n"] }), "c"],
  ["fields sharing one clock (the common case)", upsert({ set: { s: "a", n: 1, b: true }, clocks: { s: shared, n: shared, b: shared } }), "c"],
  [
    "a shared clock longer than 127 bytes, between others",
    upsert({ set: { s: "a", n: 1 }, clocks: { s: long, d: clock(2), n: long, e: long, [`f${"x".repeat(130)}`]: long } }),
    "c",
  ],
];

describe("encodeUpsert", () => {
  it.each(cases)("%s", (_name, ev, cursor) => {
    const fast = fromBinary(ChangeEventSchema, encodeUpsert(ev, cursor, schemas.collections.get("c")));
    const reflective = eventMessage(ev, cursor, schemas);
    expect(equals(ChangeEventSchema, fast, reflective), JSON.stringify([toBinary(ChangeEventSchema, fast).length, toBinary(ChangeEventSchema, reflective).length])).toBe(true);
  });

  it("agrees with the reflective path for any stored value of any field type, masked or not", () => {
    const schema = schemas.collections.get("c")!;
    const names = [...schema.fields.keys()];
    // Values of the field's own type and of any other shape (a field whose type changed since it was written).
    const stored = fc.oneof(
      fc.string(),
      fc.string({ unit: "grapheme", maxLength: 8 }),
      fc.integer(),
      fc.maxSafeInteger(),
      fc.double(),
      fc.boolean(),
      fc.array(fc.string(), { maxLength: 3 }),
      fc.jsonValue({ maxDepth: 2 }),
      fc.constantFrom("2024-02-29T12:00:00.5Z", "12.50", "x"),
    );
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...names), stored), fc.subarray(names), fc.string(), (set, maskedNames, maskText) => {
        // A masked field holds its mask's text, whatever its type (services/access/view.ts applies the mask first).
        const masked = maskedNames.filter((m) => m in set);
        for (const m of masked) set[m] = maskText;
        const ev = upsert({ set: set as Record<string, StoredValue>, masked });
        const fast = fromBinary(ChangeEventSchema, encodeUpsert(ev, "c", schema));
        expect(equals(ChangeEventSchema, fast, eventMessage(ev, "c", schemas))).toBe(true);
      }),
    );
  });

  it.each(cases)("%s, framed as an events entry", (_name, ev, cursor) => {
    const schema = schemas.collections.get("c");
    expect(Buffer.from(encodeUpsert(ev, cursor, schema, true))).toEqual(Buffer.from(frame(encodeUpsert(ev, cursor, schema))));
  });
});

describe("cursorEncoder", () => {
  it("encodes what encodeCursor encodes, for any seq", () => {
    const databaseId = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
    const encode = cursorEncoder(databaseId);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }), (seq) => {
        expect(encode(seq)).toBe(encodeCursor({ databaseId, seq }));
        expect(decodeCursor(encode(seq))).toEqual({ databaseId, seq });
      }),
    );
  });
});
