import { describe, expect, it } from "vitest";
import { parseSchemaSet } from "../../../services/schema/load.js";
import { misfit, recordChecks } from "../../../services/schema/record-fit.js";
import type { FieldSchema } from "../../../services/schema/types.js";

type Fields = Record<string, Record<string, unknown>>;

const BASE: Fields = {
  name: { type: "string", required: true, normalizers: ["trim"] },
  phone: { type: "string", identity: true, normalizers: ["phone"] },
  region: { type: "enum", values: ["east_china", "north_china"] },
  visits: { type: "int" },
  notes: { type: "string" },
};

const schemas = (fields: Fields, more: Record<string, Fields> = {}) =>
  parseSchemaSet({
    default_phone_region: "CN",
    sources: ["erp"],
    collections: Object.fromEntries([["customers", fields], ...Object.entries(more)].map(([name, f]) => [name, { fields: f }])),
  });

const withField = (name: string, def: Record<string, unknown>): Fields => ({ ...BASE, [name]: def });
const checksFor = (after: Fields, more: Record<string, Fields> = {}) =>
  recordChecks(schemas(BASE), schemas(after, more)).map((c) => `${c.kind} ${c.collection}.${c.field.name}`);

describe("recordChecks", () => {
  it("needs no check for the same schemas, relaxed rules, or policy, mask and description edits", () => {
    expect(checksFor(BASE)).toEqual([]);
    expect(checksFor(withField("name", { type: "string", normalizers: ["trim"] }))).toEqual([]); // no longer required
    expect(checksFor(withField("notes", { type: "string", description: "free text", policy: "manual_review", sensitive: true }))).toEqual([]);
  });

  it("checks the values of a field new to the schema, which an earlier removal may have left in the records", () => {
    expect(checksFor(withField("tier", { type: "string" }))).toEqual(["values customers.tier"]);
    expect(checksFor(BASE, { orders: { total: { type: "decimal", required: true } } })).toEqual(["required orders.total", "values orders.total"]);
    const [check] = recordChecks(schemas(BASE), schemas(withField("tier", { type: "string" })));
    expect(check?.kind === "values" && [check.was, check.exact]).toEqual([null, true]);
  });

  it("checks a field made required, whether it is new or was optional", () => {
    expect(checksFor(withField("notes", { type: "string", required: true }))).toEqual(["required customers.notes"]);
    expect(checksFor(withField("tier", { type: "string", required: true }))).toEqual(["required customers.tier", "values customers.tier"]);
  });

  it("checks a field made identity for values already stored, and no longer its values separately", () => {
    expect(checksFor(withField("notes", { type: "string", identity: true }))).toEqual(["identity customers.notes"]);
    expect(checksFor(withField("notes", { type: "string", identity: true, normalizers: ["lowercase"] }))).toEqual(["identity customers.notes"]);
  });

  it("checks stored values when what a value may be changes: type, enum values, normalizers, length", () => {
    expect(checksFor(withField("visits", { type: "string" }))).toEqual(["values customers.visits"]);
    expect(checksFor(withField("region", { type: "enum", values: ["east_china"] }))).toEqual(["values customers.region"]);
    expect(checksFor(withField("region", { type: "enum", values: ["east_china", "north_china", "overseas"] }))).toEqual(["values customers.region"]);
    expect(checksFor(withField("phone", { type: "string", identity: true, normalizers: ["trim"] }))).toEqual(["values customers.phone"]);
    expect(checksFor(withField("notes", { type: "string", max_length: 10 }))).toEqual(["values customers.notes"]);
  });

  it("wants values in the new type's stored form only when the type changes (or the field is an identity)", () => {
    const exact = (after: Fields) => recordChecks(schemas(BASE), schemas(after)).map((c) => c.kind === "values" && c.exact);
    expect(exact(withField("visits", { type: "decimal" }))).toEqual([true]);
    expect(exact(withField("notes", { type: "string", max_length: 10 }))).toEqual([false]);
    expect(exact(withField("phone", { type: "string", identity: true, normalizers: ["trim"] }))).toEqual([true]);
  });
});

describe("misfit", () => {
  const field = (def: Record<string, unknown>): FieldSchema => schemas(withField("f", def)).collections.get("customers")!.fields.get("f")!;

  it("accepts values the new definition stores as they are", () => {
    expect(misfit(field({ type: "string" }), "abc", "CN")).toBeNull();
    expect(misfit(field({ type: "enum", values: ["a", "b"] }), "b", "CN")).toBeNull();
    expect(misfit(field({ type: "decimal" }), "12.5", "CN")).toBeNull();
    expect(misfit(field({ type: "json" }), { any: [1, "x"] }, "CN")).toBeNull();
    // A non-identity field keeps working with values its new normalizers would have changed.
    expect(misfit(field({ type: "string", normalizers: ["lowercase"] }), "ABC", "CN")).toBeNull();
  });

  it("names why a value does not fit", () => {
    expect(misfit(field({ type: "int" }), "12", "CN")).toBe("WRONG_TYPE");
    expect(misfit(field({ type: "string" }), 12, "CN")).toBe("WRONG_TYPE");
    expect(misfit(field({ type: "enum", values: ["a"] }), "b", "CN")).toBe("NOT_IN_ENUM");
    expect(misfit(field({ type: "decimal" }), "1e5", "CN")).toBe("INVALID_DECIMAL");
    expect(misfit(field({ type: "string", max_length: 3 }), "abcd", "CN")).toBe("TOO_LONG");
    expect(misfit(field({ type: "string", normalizers: ["email"] }), "not an address", "CN")).toMatch(/EMAIL/);
  });

  it("wants an identity value exactly as its normalizers make it: keys are looked up normalized", () => {
    expect(misfit(field({ type: "string", identity: true, normalizers: ["lowercase"] }), "ABC", "CN")).toBe("NOT_STORED_FORM");
    expect(misfit(field({ type: "string", identity: true, normalizers: ["lowercase"] }), "abc", "CN")).toBeNull();
    expect(misfit(field({ type: "string", identity: true, normalizers: ["phone"] }), "+8613812345678", "CN")).toBeNull();
    expect(misfit(field({ type: "string", identity: true, normalizers: ["phone"] }), "13812345678", "CN")).toBe("NOT_STORED_FORM");
  });

  it("asked for the exact stored form, refuses a value another type stored: filters compare stored forms", () => {
    expect(misfit(field({ type: "decimal" }), 5, "CN")).toBeNull();
    expect(misfit(field({ type: "decimal" }), 5, "CN", true)).toBe("NOT_STORED_FORM");
    expect(misfit(field({ type: "decimal" }), "007.50", "CN", true)).toBe("NOT_STORED_FORM");
    expect(misfit(field({ type: "decimal" }), "7.5", "CN", true)).toBeNull();
    expect(misfit(field({ type: "timestamp" }), "2024-02-30T00:00:00Z", "CN", true)).not.toBeNull();
    expect(misfit(field({ type: "timestamp" }), "2024-02-28T00:00:00Z", "CN", true)).toBeNull();
  });
});
