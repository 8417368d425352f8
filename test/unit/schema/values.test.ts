import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { StringListSchema, ValueSchema, type Value } from "../../../gen/deltamesh/v1/types_pb.js";
import { parseSchemaSet } from "../../../services/schema/load.js";
import type { FieldSchema, StoredValue } from "../../../services/schema/types.js";
import {
  canonicalDecimal,
  checkClears,
  decodeFieldMap,
  decodeValue,
  encodeValue,
  missingRequired,
  storedEquals,
  textToTimestamp,
  timestampToText,
} from "../../../services/schema/values.js";

const set = parseSchemaSet({
  default_phone_region: "CN",
  collections: {
    customers: {
      fields: {
        name: { type: "string", required: true, normalizers: ["trim"] },
        phone: { type: "string", identity: true, normalizers: ["phone"] },
        email: { type: "string", normalizers: ["email"] },
        code: { type: "string", max_length: 5 },
        notes: { type: "string" },
        visits: { type: "int" },
        credit: { type: "decimal" },
        vip: { type: "bool" },
        birthday: { type: "timestamp" },
        level: { type: "enum", values: ["a", "b"] },
        tags: { type: "string_list", max_length: 3 },
        aliases: { type: "string_list" },
        musts: { type: "string_list", required: true },
        extra: { type: "json" },
        small: { type: "json", max_length: 10 },
      },
    },
  },
});
const customers = set.collections.get("customers")!;
const f = (name: string): FieldSchema => customers.fields.get(name)!;
const ctx = { defaultPhoneRegion: "CN", path: "mutations[0].set.x" };

const str = (value: string) => create(ValueSchema, { kind: { case: "stringValue", value } });
const int = (value: bigint) => create(ValueSchema, { kind: { case: "intValue", value } });
const dec = (value: string) => create(ValueSchema, { kind: { case: "decimalValue", value } });
const bool = (value: boolean) => create(ValueSchema, { kind: { case: "boolValue", value } });
const ts = (seconds: bigint, nanos = 0) =>
  create(ValueSchema, { kind: { case: "timestampValue", value: create(TimestampSchema, { seconds, nanos }) } });
const en = (value: string) => create(ValueSchema, { kind: { case: "enumValue", value } });
const list = (values: string[]) =>
  create(ValueSchema, { kind: { case: "stringListValue", value: create(StringListSchema, { values }) } });
const json = (value: string) => create(ValueSchema, { kind: { case: "jsonValue", value } });
const empty = () => create(ValueSchema);

function decoded(field: string, v: Value): StoredValue {
  const r = decodeValue(f(field), v, ctx);
  if (!r.ok) throw new Error(`unexpected violation: ${JSON.stringify(r.violation)}`);
  return r.value;
}

function refused(field: string, v: Value, reason: string, description?: string | RegExp): void {
  const r = decodeValue(f(field), v, ctx);
  expect(r.ok, `expected ${field} to refuse`).toBe(false);
  if (r.ok) return;
  expect(r.violation.field).toBe(ctx.path);
  expect(r.violation.reason).toBe(reason);
  if (typeof description === "string") expect(r.violation.description).toContain(description);
  else if (description) expect(r.violation.description).toMatch(description);
}

describe("decodeValue: kinds", () => {
  it("refuses an empty value", () => {
    refused("name", empty(), "MISSING_VALUE", "set string_value");
    refused("visits", empty(), "MISSING_VALUE", "set int_value");
  });

  it("refuses the wrong kind, naming expected and actual", () => {
    refused("name", int(1n), "WRONG_TYPE", "name is a string field: expected string_value, got int_value");
    refused("visits", str("1"), "WRONG_TYPE", 'visits is an int field: expected int_value, got string_value "1"');
    refused("visits", str("abc"), "WRONG_TYPE", 'got string_value "abc"');
    refused("level", str("x".repeat(100)), "WRONG_TYPE", `got string_value "${"x".repeat(61)}..."`);
    refused("name", dec("1.5"), "WRONG_TYPE", 'name is a string field: expected string_value, got decimal_value "1.5"');
    refused("credit", str("1.5"), "WRONG_TYPE", "expected decimal_value, got string_value");
    refused("vip", str("true"), "WRONG_TYPE", "expected bool_value, got string_value");
    refused("birthday", str("2024-01-01T00:00:00Z"), "WRONG_TYPE", "expected timestamp_value");
    refused("level", str("a"), "WRONG_TYPE", "expected enum_value, got string_value");
    refused("tags", str("a"), "WRONG_TYPE", "expected string_list_value");
    refused("extra", str("{}"), "WRONG_TYPE", "expected json_value");
    refused("name", list(["a"]), "WRONG_TYPE", "got string_list_value");
    refused("name", ts(0n), "WRONG_TYPE", "got timestamp_value");
    refused("name", bool(true), "WRONG_TYPE", "got bool_value");
    refused("name", dec("1"), "WRONG_TYPE", "got decimal_value");
    refused("name", en("a"), "WRONG_TYPE", "got enum_value");
    refused("name", json("1"), "WRONG_TYPE", "got json_value");
  });
});

describe("decodeValue: string", () => {
  it("runs normalizers before validation", () => {
    expect(decoded("name", str("  张三 "))).toBe("张三");
    expect(decoded("phone", str("138 0013 8000"))).toBe("+8613800138000");
    expect(decoded("email", str(" A@B.CN "))).toBe("a@b.cn");
    expect(decoded("notes", str("  kept  "))).toBe("  kept  ");
    expect(decoded("notes", str(""))).toBe("");
  });

  it("reports normalizer failures with their reason", () => {
    refused("phone", str("12345"), "PHONE_INVALID", '"12345" is not a valid phone number for region CN');
    refused("email", str("nope"), "EMAIL_INVALID");
  });

  it("uses the context's phone region", () => {
    const r = decodeValue(f("phone"), str("9123 4567"), { defaultPhoneRegion: "HK", path: "p" });
    expect(r).toEqual({ ok: true, value: "+85291234567" });
  });

  it("refuses an empty required string after normalization", () => {
    refused("name", str("   "), "REQUIRED", "name is required and cannot be empty");
  });

  it("enforces max_length in characters (code points), after normalizers", () => {
    expect(decoded("code", str("12345"))).toBe("12345");
    expect(decoded("code", str("😀😀😀😀😀"))).toBe("😀😀😀😀😀"); // 10 UTF-16 units, 5 characters
    refused("code", str("123456"), "TOO_LONG", "code holds at most 5 characters; got 6");
    expect(decoded("name", str("  " + "x".repeat(65536) + "  "))).toHaveLength(65536);
  });

  it("enforces the global 64 KiB-character limit", () => {
    expect(decoded("notes", str("x".repeat(65536)))).toHaveLength(65536);
    refused("notes", str("x".repeat(65537)), "TOO_LONG", "at most 65536 characters");
  });

  it("refuses characters PostgreSQL cannot store", () => {
    refused("notes", str("a\u0000b"), "INVALID_CHARACTER");
    refused("notes", str("a\ud800b"), "INVALID_CHARACTER");
    expect(decoded("notes", str("\ud83d\ude00"))).toBe("😀");
  });
});

describe("decodeValue: int", () => {
  it("stores safe integers as numbers", () => {
    expect(decoded("visits", int(0n))).toBe(0);
    expect(decoded("visits", int(-42n))).toBe(-42);
    expect(decoded("visits", int(9007199254740991n))).toBe(Number.MAX_SAFE_INTEGER);
    expect(decoded("visits", int(-9007199254740991n))).toBe(Number.MIN_SAFE_INTEGER);
  });

  it("refuses integers beyond the safe range", () => {
    refused("visits", int(9007199254740992n), "OUT_OF_RANGE", "got 9007199254740992");
    refused("visits", int(-9007199254740992n), "OUT_OF_RANGE");
    refused("visits", int(9223372036854775807n), "OUT_OF_RANGE");
  });
});

describe("decodeValue: decimal", () => {
  it.each([
    ["0", "0"],
    ["-0", "0"],
    ["-0.000", "0"],
    ["007.50", "7.5"],
    ["-12.50", "-12.5"],
    ["100", "100"],
    ["100.000", "100"],
    ["0.001", "0.001"],
    ["-0.10", "-0.1"],
    ["1".repeat(30) + "." + "9".repeat(18), "1".repeat(30) + "." + "9".repeat(18)],
  ])("%s -> %s", (input, out) => {
    expect(decoded("credit", dec(input))).toBe(out);
    expect(canonicalDecimal(input)).toBe(out);
  });

  it.each(["", "1.", ".5", "+1", "1e5", "1,000", " 1", "1 ", "--1", "NaN", "Infinity", "1".repeat(31), "0." + "1".repeat(19), "１"])(
    "refuses %j",
    (input) => {
      refused("credit", dec(input), "INVALID_DECIMAL", "must be a decimal number");
    },
  );
});

describe("decodeValue: bool", () => {
  it("stores booleans", () => {
    expect(decoded("vip", bool(true))).toBe(true);
    expect(decoded("vip", bool(false))).toBe(false);
  });
});

describe("decodeValue: timestamp", () => {
  it.each([
    [0n, 0, "1970-01-01T00:00:00Z"],
    [1714552200n, 0, "2024-05-01T08:30:00Z"],
    [1714552200n, 120_000_000, "2024-05-01T08:30:00.120Z"],
    [1714552200n, 123_456_000, "2024-05-01T08:30:00.123456Z"],
    [1714552200n, 1, "2024-05-01T08:30:00.000000001Z"],
    [1714552200n, 999_999_999, "2024-05-01T08:30:00.999999999Z"],
    [-1n, 0, "1969-12-31T23:59:59Z"],
    [-62135596800n, 0, "0001-01-01T00:00:00Z"],
    [253402300799n, 999_999_999, "9999-12-31T23:59:59.999999999Z"],
  ])("%s s + %s ns -> %s", (seconds, nanos, text) => {
    expect(decoded("birthday", ts(seconds, nanos))).toBe(text);
    expect(textToTimestamp(text)).toMatchObject({ seconds, nanos });
  });

  it("refuses out-of-range seconds and nanos", () => {
    refused("birthday", ts(-62135596801n), "OUT_OF_RANGE", "0001-01-01T00:00:00Z");
    refused("birthday", ts(253402300800n), "OUT_OF_RANGE");
    refused("birthday", ts(0n, -1), "OUT_OF_RANGE");
    refused("birthday", ts(0n, 1_000_000_000), "OUT_OF_RANGE");
  });

  it("converts directly", () => {
    expect(timestampToText(create(TimestampSchema))).toBe("1970-01-01T00:00:00Z");
    expect(timestampToText(create(TimestampSchema, { seconds: 1n, nanos: 5_000_000 }))).toBe("1970-01-01T00:00:01.005Z");
  });

  it("parses only the stored form", () => {
    for (const bad of ["2024-05-01", "2024-05-01T08:30:00+08:00", "2024-05-01T08:30:00.Z", "2024-13-01T00:00:00Z", "x"]) {
      expect(textToTimestamp(bad)).toBeNull();
    }
  });
});

describe("decodeValue: enum", () => {
  it("accepts declared values only", () => {
    expect(decoded("level", en("a"))).toBe("a");
    refused("level", en("c"), "NOT_IN_ENUM", 'level must be one of a, b; got "c"');
    refused("level", en("A"), "NOT_IN_ENUM");
    refused("level", en(""), "NOT_IN_ENUM");
  });
});

describe("decodeValue: string_list", () => {
  it("stores a copy of the items", () => {
    const v = list(["x", "y"]);
    const out = decoded("tags", v);
    expect(out).toEqual(["x", "y"]);
    expect(out).not.toBe((v.kind.value as { values: string[] }).values);
    expect(decoded("tags", list([]))).toEqual([]);
  });

  it("enforces max_length in items and the global limit", () => {
    refused("tags", list(["a", "b", "c", "d"]), "TOO_LONG", "tags holds at most 3 items; got 4");
    expect(decoded("aliases", list(Array.from({ length: 1000 }, () => "a")))).toHaveLength(1000);
    refused("aliases", list(Array.from({ length: 1001 }, () => "a")), "TOO_LONG", "at most 1000 items");
  });

  it("checks each item", () => {
    refused("aliases", list(["ok", "x".repeat(65537)]), "TOO_LONG", "aliases[1] holds at most 65536 characters");
    refused("aliases", list(["\u0000"]), "INVALID_CHARACTER", "aliases[0]");
  });

  it("refuses an empty required list", () => {
    refused("musts", list([]), "REQUIRED");
    expect(decoded("musts", list(["a"]))).toEqual(["a"]);
  });
});

describe("decodeValue: json", () => {
  it("stores the parsed value", () => {
    expect(decoded("extra", json('{"a":[1,2,{"b":"c"}],"d":true}'))).toEqual({ a: [1, 2, { b: "c" }], d: true });
    expect(decoded("extra", json("3"))).toBe(3);
    expect(decoded("extra", json('"s"'))).toBe("s");
    expect(decoded("extra", json("[]"))).toEqual([]);
    expect(decoded("extra", json(" {} "))).toEqual({});
  });

  it("refuses text that is not JSON", () => {
    refused("extra", json("{a:1}"), "INVALID_JSON", "extra is not valid JSON");
    refused("extra", json(""), "INVALID_JSON");
    refused("extra", json("[1,]"), "INVALID_JSON");
  });

  it("refuses null, non-finite numbers, NUL characters and deep nesting", () => {
    refused("extra", json("null"), "INVALID_JSON", "clear the field instead");
    refused("extra", json("[1e400]"), "INVALID_JSON", "too large");
    refused("extra", json('{"a":"\\u0000"}'), "INVALID_CHARACTER");
    refused("extra", json('{"\\u0000":1}'), "INVALID_CHARACTER");
    refused("extra", json('["\\ud800"]'), "INVALID_CHARACTER");
    expect(decoded("extra", json("[".repeat(64) + "]".repeat(64)))).toBeDefined();
    refused("extra", json("[".repeat(65) + "]".repeat(65)), "TOO_DEEP");
    refused("extra", json("[".repeat(150_000) + "]".repeat(150_000)), "TOO_LONG"); // over the 256 KiB text limit
  });

  it("enforces max_length on the text", () => {
    expect(decoded("small", json('"12345678"'))).toBe("12345678");
    refused("small", json('"123456789"'), "TOO_LONG", "small holds at most 10 characters of JSON; got 11");
  });
});

describe("encodeValue", () => {
  it.each<[string, Value]>([
    ["name", str("张三")],
    ["visits", int(-42n)],
    ["visits", int(9007199254740991n)],
    ["credit", dec("-12.5")],
    ["vip", bool(false)],
    ["birthday", ts(1714552200n, 120_000_000)],
    ["birthday", ts(-62135596800n, 1)],
    ["level", en("b")],
    ["tags", list(["x", "y"])],
    ["tags", list([])],
    ["extra", json('{"a":[1,"b",null]}')],
  ])("round-trips %s", (field, v) => {
    const stored = decoded(field, v);
    const back = encodeValue(f(field), stored);
    expect(back.kind).toEqual(v.kind);
    expect(decoded(field, back)).toEqual(stored);
  });

  it("re-serializes JSON compactly", () => {
    const back = encodeValue(f("extra"), decoded("extra", json('{ "a" : 1 }')));
    expect(back.kind).toEqual({ case: "jsonValue", value: '{"a":1}' });
  });

  it("sends values stored under an older type by their shape", () => {
    expect(encodeValue(f("visits"), "12").kind).toEqual({ case: "stringValue", value: "12" });
    expect(encodeValue(f("name"), 12).kind).toEqual({ case: "intValue", value: 12n });
    expect(encodeValue(f("name"), true).kind).toEqual({ case: "boolValue", value: true });
    expect(encodeValue(f("name"), ["a"]).kind).toEqual({ case: "stringListValue", value: create(StringListSchema, { values: ["a"] }) });
    expect(encodeValue(f("name"), { a: 1 }).kind).toEqual({ case: "jsonValue", value: '{"a":1}' });
    expect(encodeValue(f("name"), 1.5).kind).toEqual({ case: "jsonValue", value: "1.5" });
    expect(encodeValue(f("birthday"), "not a time").kind).toEqual({ case: "stringValue", value: "not a time" });
    expect(encodeValue(f("credit"), 1.25).kind).toEqual({ case: "decimalValue", value: "1.25" });
    expect(encodeValue(f("tags"), [1, 2]).kind).toEqual({ case: "jsonValue", value: "[1,2]" });
  });
});

describe("decodeFieldMap", () => {
  it("decodes known fields and reports unknown and invalid ones with paths", () => {
    const r = decodeFieldMap(
      customers,
      { name: str(" n "), visits: int(3n), nickname: str("x"), level: en("z") },
      { defaultPhoneRegion: "CN", path: "mutations[0].set" },
    );
    expect(r.values).toEqual({ name: "n", visits: 3 });
    expect(r.violations).toEqual([
      { field: "mutations[0].set.nickname", description: 'unknown field "nickname" in collection customers', reason: "UNKNOWN_FIELD" },
      { field: "mutations[0].set.level", description: 'level must be one of a, b; got "z"', reason: "NOT_IN_ENUM" },
    ]);
  });

  it("handles an empty map", () => {
    expect(decodeFieldMap(customers, {}, ctx)).toEqual({ values: {}, violations: [] });
  });
});

describe("checkClears", () => {
  it("refuses unknown and required fields", () => {
    expect(checkClears(customers, ["notes", "ghost", "name"], "mutations[1].clear")).toEqual([
      { field: "mutations[1].clear[1]", description: 'unknown field "ghost" in collection customers', reason: "UNKNOWN_FIELD" },
      { field: "mutations[1].clear[2]", description: "name is required in customers and cannot be cleared", reason: "REQUIRED" },
    ]);
    expect(checkClears(customers, [], "c")).toEqual([]);
  });
});

describe("missingRequired", () => {
  it("lists required fields without a value, in schema order", () => {
    expect(missingRequired(customers, {})).toEqual(["name", "musts"]);
    expect(missingRequired(customers, { name: "n", musts: null })).toEqual(["musts"]);
    expect(missingRequired(customers, { name: "", musts: [] })).toEqual([]);
    expect(missingRequired(customers, Object.create({ name: "inherited" }) as Record<string, StoredValue>)).toEqual(["name", "musts"]);
  });
});

describe("storedEquals", () => {
  it.each<[StoredValue, StoredValue, boolean]>([
    ["a", "a", true],
    ["a", "b", false],
    [1, 1, true],
    [1, "1", false],
    [true, true, true],
    [true, false, false],
    [null, null, true],
    [null, "", false],
    [[], [], true],
    [["a", "b"], ["a", "b"], true],
    [["a", "b"], ["b", "a"], false],
    [["a"], ["a", "a"], false],
    [{ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }, true],
    [{ a: 1 }, { a: 1, b: 2 }, false],
    [{ a: 1, b: undefined as unknown as StoredValue }, { a: 1, c: undefined as unknown as StoredValue }, false],
    [{ a: null }, {}, false],
    [[1], { 0: 1 }, false],
    [{}, [], false],
    [{ a: { b: { c: "x" } } }, { a: { b: { c: "y" } } }, false],
  ])("%j vs %j -> %s", (a, b, eq) => {
    expect(storedEquals(a, b)).toBe(eq);
    expect(storedEquals(b, a)).toBe(eq);
  });
});
