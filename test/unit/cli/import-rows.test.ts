import { create } from "@bufbuild/protobuf";
import { TimestampSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { StringListSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { importValue, orderKeyOf, prepareRow, type ImportTarget } from "../../../services/cli/import/row-values.js";
import { parseSchemaSet } from "../../../services/schema/load.js";

const schemas = parseSchemaSet({
  default_phone_region: "CN",
  collections: {
    customers: {
      fields: {
        erp_id: { type: "string", identity: true, normalizers: ["trim"] },
        phone: { type: "string", identity: true, normalizers: ["phone"] },
        name: { type: "string", required: true },
        visits: { type: "int" },
        credit: { type: "decimal" },
        vip: { type: "bool" },
        birthday: { type: "timestamp" },
        level: { type: "enum", values: ["key", "regular"] },
        tags: { type: "string_list" },
        extra: { type: "json" },
      },
    },
  },
});
const customers = schemas.collections.get("customers")!;
const field = (name: string) => customers.fields.get(name)!;

const target: ImportTarget = {
  collection: customers,
  key: field("erp_id"),
  required: ["name"],
  defaultPhoneRegion: "CN",
  source: "erp",
  device: "deltamesh-import",
  mutationId: (line) => `import-abc-${line}`,
};

describe("import values", () => {
  it("carries CSV text in the kind of the field", () => {
    expect(importValue(field("name"), " Li ")).toEqual({ case: "stringValue", value: " Li " });
    expect(importValue(field("visits"), " 42 ")).toEqual({ case: "intValue", value: 42n });
    expect(importValue(field("credit"), "007.50")).toEqual({ case: "decimalValue", value: "007.50" });
    expect(importValue(field("vip"), "Yes")).toEqual({ case: "boolValue", value: true });
    expect(importValue(field("vip"), "0")).toEqual({ case: "boolValue", value: false });
    expect(importValue(field("level"), "key")).toEqual({ case: "enumValue", value: "key" });
    expect(importValue(field("tags"), "vip, north,")).toEqual({ case: "stringListValue", value: create(StringListSchema, { values: ["vip", "north"] }) });
    expect(importValue(field("extra"), '{"a":1}')).toEqual({ case: "jsonValue", value: '{"a":1}' });
    expect(importValue(field("birthday"), "2024-05-01T08:30:00.120Z")).toEqual({
      case: "timestampValue",
      value: create(TimestampSchema, { seconds: 1714552200n, nanos: 120_000_000 }),
    });
    expect(importValue(field("birthday"), "2024-05-01")).toEqual({ case: "timestampValue", value: create(TimestampSchema, { seconds: 1714521600n }) });
  });

  it("carries JSON Lines values by their JSON type", () => {
    expect(importValue(field("visits"), 7)).toEqual({ case: "intValue", value: 7n });
    expect(importValue(field("credit"), 12.5)).toEqual({ case: "decimalValue", value: "12.5" });
    expect(importValue(field("vip"), true)).toEqual({ case: "boolValue", value: true });
    expect(importValue(field("phone"), 13800138000)).toEqual({ case: "stringValue", value: "13800138000" });
    expect(importValue(field("tags"), ["a", "b"])).toEqual({ case: "stringListValue", value: create(StringListSchema, { values: ["a", "b"] }) });
    expect(importValue(field("extra"), { a: [1, 2] })).toEqual({ case: "jsonValue", value: '{"a":[1,2]}' });
  });

  it("sends what cannot be read as the field's kind as text, for the server to refuse by name", () => {
    expect(importValue(field("visits"), "many")).toEqual({ case: "stringValue", value: "many" });
    expect(importValue(field("visits"), 1.5)).toEqual({ case: "stringValue", value: "1.5" });
    expect(importValue(field("vip"), "perhaps")).toEqual({ case: "stringValue", value: "perhaps" });
    expect(importValue(field("birthday"), "someday")).toEqual({ case: "stringValue", value: "someday" });
    expect(importValue(undefined, "x")).toEqual({ case: "stringValue", value: "x" });
  });
});

describe("import rows as mutations", () => {
  it("upserts by the key: set what is there, clear what is null, keep the key out of set", () => {
    const row = prepareRow(target, 12, { erp_id: " E1 ", name: "Li", visits: "3", notes: null });
    expect(row).toEqual({
      line: 12,
      keyText: " E1 ",
      orderKey: "E1",
      risky: false,
      mutation: {
        collection: "customers",
        keyField: "erp_id",
        keyValue: { case: "stringValue", value: " E1 " },
        set: [
          ["name", { case: "stringValue", value: "Li" }],
          ["visits", { case: "intValue", value: 3n }],
        ],
        clear: ["notes"],
        baseVersion: 0n,
        clientMutationId: "import-abc-12",
        source: "erp",
        device: "deltamesh-import",
      },
    });
  });

  it("marks a row without a required field as likely to be refused (it is, if it creates the record)", () => {
    expect(prepareRow(target, 5, { erp_id: "E1", visits: "3" })).toMatchObject({ risky: true });
    expect(prepareRow(target, 6, { erp_id: "E1", name: null })).toMatchObject({ risky: true });
  });

  it("rejects a row without a key before sending it", () => {
    expect(prepareRow(target, 3, { name: "Li" })).toEqual({
      line: 3,
      keyText: "",
      rejected: { reason: "KEY_MISSING", message: "the row has no erp_id, the key it is upserted by" },
    });
    expect(prepareRow(target, 4, { erp_id: "  ", name: "Li" })).toMatchObject({ rejected: { reason: "KEY_MISSING" } });
  });

  it("orders rows by the key as the server will store it", () => {
    expect(orderKeyOf(field("phone"), "138 0013 8000", "CN")).toBe(orderKeyOf(field("phone"), "+86 13800138000", "CN"));
    expect(orderKeyOf(field("phone"), "12", "CN")).toBe("12");
    expect(orderKeyOf(field("erp_id"), " E1", "CN")).toBe("E1");
  });
});
