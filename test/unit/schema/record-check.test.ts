// The schema check's verdicts over records held in memory (the SQL reads are
// tested on PostgreSQL in test/integration/store/stored-fields.test.ts).
import { describe, expect, it } from "vitest";
import { DomainError } from "../../../services/platform/errors.js";
import { parseSchemaSet } from "../../../services/schema/load.js";
import { checkSchemaAgainstRecords, type StoredFieldReader } from "../../../services/schema/record-check.js";
import type { StoredValue } from "../../../services/schema/types.js";

type Fields = Record<string, Record<string, unknown>>;
const schemas = (fields: Fields) => parseSchemaSet({ default_phone_region: "CN", sources: ["erp"], collections: { customers: { fields } } });

/** Live customers by id, as the reader serves them. */
function reader(records: Record<string, Record<string, StoredValue>>): StoredFieldReader {
  const rows = Object.entries(records).map(([id, fields]) => ({ ref: { tenant: "default", id }, fields }));
  const holds = (f: Record<string, StoredValue>, name: string) => f[name] !== undefined && f[name] !== null;
  return {
    liveRecordsWithout: async (_c, name) => {
      const found = rows.filter((r) => !holds(r.fields, name) || r.fields[name] === "");
      return { count: found.length, examples: found.slice(0, 3).map((r) => r.ref) };
    },
    recordsWith: async (_c, name) => {
      const found = rows.filter((r) => holds(r.fields, name));
      return { count: found.length, examples: found.slice(0, 3).map((r) => r.ref) };
    },
    forEachLiveValue: async (_c, name, visit) => {
      for (const r of rows) if (holds(r.fields, name)) visit(r.ref, r.fields[name]!);
    },
  };
}

async function refusal(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof DomainError) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

const LEVELS: Fields = { name: { type: "string" }, level: { type: "enum", values: ["a", "b", "c"] }, visits: { type: "int" } };
const STORED = { r1: { name: "x", level: "a", visits: 1 }, r2: { name: "y", level: "b", visits: 2 }, r3: { name: "", level: "zzz" } };

describe("checkSchemaAgainstRecords", () => {
  it("does not hold a value the old definition refused too against a change: a looser rule goes through", async () => {
    const checks = await checkSchemaAgainstRecords(reader(STORED), schemas(LEVELS), schemas({ ...LEVELS, level: { type: "enum", values: ["a", "b", "c", "d"] } }));
    expect(checks.map((c) => c.kind)).toEqual(["values"]);
  });

  it("counts only the values this change makes wrong, and lists every field's problem", async () => {
    const e = await refusal(
      checkSchemaAgainstRecords(
        reader(STORED),
        schemas(LEVELS),
        schemas({ name: { type: "string", required: true }, level: { type: "enum", values: ["a"] }, visits: { type: "decimal" } }),
      ),
    );
    expect([e.kind, e.reason]).toEqual(["failed_precondition", "SCHEMA_DOES_NOT_FIT_RECORDS"]);
    expect(e.violations.map((v) => [v.field, v.reason])).toEqual([
      ["collections.customers.fields.name.required", "RECORDS_LACK_VALUE"],
      ["collections.customers.fields.level", "RECORDS_DO_NOT_FIT"],
      ["collections.customers.fields.visits", "RECORDS_DO_NOT_FIT"],
    ]);
    expect(e.violations[1]!.description).toContain("refuses the stored value of 1 record (NOT_IN_ENUM: 1; e.g. default/r2)");
    // An int stored as a number is a valid decimal, but not one stored as decimals are.
    expect(e.violations[2]!.description).toContain("2 records (NOT_STORED_FORM: 2; e.g. default/r1, default/r2)");
    expect(e.message).toMatch(/^the new schemas do not fit the stored records: customers\.name becomes required, but 1 record holds no value .* \(and 2 more problems\)$/);
  });
});
