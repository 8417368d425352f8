import { describe, expect, it } from "vitest";
import { DomainError, type FieldViolation } from "../../../services/platform/errors.js";
import { parseSchemaSet, schemaSetToDoc } from "../../../services/schema/load.js";

type Doc = Record<string, unknown>;

function base(): Doc {
  return {
    default_phone_region: "CN",
    sources: ["erp", "crm-desktop", "sales-app"],
    collections: {
      customers: {
        description: "customers",
        default_policy: "lww",
        source_priority: ["erp", "crm-desktop"],
        fields: {
          name: { type: "string", required: true, core: true, normalizers: ["trim"] },
          phone: { type: "string", identity: true, sensitive: true, normalizers: ["phone"], policy: "lww" },
          email: { type: "string", sensitive: true, normalizers: ["email"] },
          id_number: { type: "string", sensitive: true, mask: "id_number" },
          birthday: { type: "timestamp", sensitive: true },
          region: { type: "enum", values: ["east_china", "north_china"] },
          credit_limit: { type: "decimal", policy: "source_priority" },
          tags: { type: "string_list", max_length: 20 },
          extra: { type: "json" },
          visits: { type: "int", identity: true },
        },
      },
    },
  };
}

/** The violations parseSchemaSet throws for doc (fails the test if it does not throw). */
function problems(doc: unknown): FieldViolation[] {
  try {
    parseSchemaSet(doc);
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    const err = e as DomainError;
    expect(err.kind).toBe("invalid_argument");
    expect(err.reason).toBe("INVALID_SCHEMA");
    return err.violations;
  }
  throw new Error("expected parseSchemaSet to throw");
}

/** base() with one field of customers replaced. */
function withField(name: string, def: unknown): Doc {
  const doc = base();
  ((doc.collections as Doc).customers as { fields: Doc }).fields[name] = def;
  return doc;
}

function withCollection(patch: Doc): Doc {
  const doc = base();
  const c = (doc.collections as Doc).customers as Doc;
  Object.assign(c, patch);
  return doc;
}

function expectProblem(doc: unknown, field: string, description: RegExp | string): FieldViolation {
  const all = problems(doc);
  const found = all.find((p) => p.field === field);
  expect(found, `no violation at ${field}; got ${JSON.stringify(all)}`).toBeDefined();
  if (typeof description === "string") expect(found!.description).toContain(description);
  else expect(found!.description).toMatch(description);
  return found!;
}

describe("parseSchemaSet: a valid document", () => {
  const set = parseSchemaSet(base());
  const customers = set.collections.get("customers")!;

  it("reads top-level sections", () => {
    expect(set.defaultPhoneRegion).toBe("CN");
    expect(set.sources).toEqual(["erp", "crm-desktop", "sales-app"]);
    expect([...set.collections.keys()]).toEqual(["customers"]);
  });

  it("keeps field order and collects identity fields in schema order", () => {
    expect([...customers.fields.keys()]).toEqual([
      "name", "phone", "email", "id_number", "birthday", "region", "credit_limit", "tags", "extra", "visits",
    ]);
    expect(customers.identityFields).toEqual(["phone", "visits"]);
  });

  it("fills defaults", () => {
    const name = customers.fields.get("name")!;
    expect(name).toEqual({
      name: "name", type: "string", description: "", required: true, core: true, sensitive: false, identity: false,
      normalizers: ["trim"], enumValues: [], policy: "lww", mask: "none", maxLength: 0,
    });
    expect(customers.fields.get("tags")!.maxLength).toBe(20);
    expect(customers.fields.get("region")!.enumValues).toEqual(["east_china", "north_china"]);
  });

  it("derives default masks from sensitivity and normalizers", () => {
    expect(customers.fields.get("phone")!.mask).toBe("phone");
    expect(customers.fields.get("email")!.mask).toBe("email");
    expect(customers.fields.get("id_number")!.mask).toBe("id_number");
    expect(customers.fields.get("birthday")!.mask).toBe("redact");
    expect(customers.fields.get("extra")!.mask).toBe("none");
  });

  it("takes the field policy, else the collection default, else lww", () => {
    expect(customers.fields.get("credit_limit")!.policy).toBe("source_priority");
    expect(customers.fields.get("email")!.policy).toBe("lww");
    const doc = withCollection({ default_policy: "manual_review" });
    const c = parseSchemaSet(doc).collections.get("customers")!;
    expect(c.defaultPolicy).toBe("manual_review");
    expect(c.fields.get("email")!.policy).toBe("manual_review");
    expect(c.fields.get("phone")!.policy).toBe("lww");
    const noDefault = base();
    delete ((noDefault.collections as Doc).customers as Doc).default_policy;
    expect(parseSchemaSet(noDefault).collections.get("customers")!.defaultPolicy).toBe("lww");
  });

  it("ignores unknown top-level sections and allows absent region and sources", () => {
    const set2 = parseSchemaSet({ policies: { anything: [1, 2] }, retention: "7d", collections: { notes: { fields: { text: { type: "string" } } } } });
    expect(set2.defaultPhoneRegion).toBe("");
    expect(set2.sources).toEqual([]);
    expect(set2.collections.get("notes")!.sourcePriority).toEqual([]);
  });

  it("accepts null for optional keys", () => {
    const set2 = parseSchemaSet({ default_phone_region: null, sources: null, collections: { a: { description: null, fields: { b: { type: "int", policy: null, mask: null } } } } });
    expect(set2.collections.get("a")!.fields.get("b")!.policy).toBe("lww");
  });

  it("round-trips through schemaSetToDoc", () => {
    const doc = schemaSetToDoc(set);
    expect(parseSchemaSet(doc)).toEqual(set);
    // Defaults are left out of the document form.
    expect(doc.collections.customers!.fields.email).toEqual({ type: "string", sensitive: true, normalizers: ["email"] });
    expect(doc.collections.customers!.fields.credit_limit).toEqual({ type: "decimal", policy: "source_priority" });
    expect(doc.default_phone_region).toBe("CN");
    const noRegion = schemaSetToDoc(parseSchemaSet({ collections: { a: { fields: { b: { type: "bool", sensitive: true, mask: "none" } } } } }));
    expect(noRegion.default_phone_region).toBeUndefined();
    expect(noRegion.collections.a!.fields.b).toEqual({ type: "bool", sensitive: true, mask: "none" });
  });

  it("accepts every field type", () => {
    const fields: Doc = {};
    for (const t of ["string", "int", "decimal", "bool", "timestamp", "string_list", "json"]) fields[`f_${t}`] = { type: t };
    fields.f_enum = { type: "enum", values: ["x"] };
    expect(parseSchemaSet({ collections: { c: { fields } } }).collections.get("c")!.fields.size).toBe(8);
  });
});

describe("parseSchemaSet: document shape", () => {
  it("refuses a non-mapping document", () => {
    for (const doc of [null, undefined, [], "x", 3]) {
      expect(problems(doc)[0]!.description).toMatch(/must be a mapping/);
    }
  });

  it("requires collections as a mapping", () => {
    expectProblem({ sources: [] }, "collections", "collections is required");
    expectProblem({ collections: [] }, "collections", "must be a mapping");
  });

  it("requires each collection to be a mapping with at least one field", () => {
    expectProblem({ collections: { a: "x" } }, "collections.a", "must be a mapping");
    expectProblem({ collections: { a: {} } }, "collections.a.fields", "needs a fields mapping");
    expectProblem({ collections: { a: { fields: {} } } }, "collections.a.fields", "at least one field");
    expectProblem({ collections: { a: { fields: [] } } }, "collections.a.fields", "must be a mapping");
    expectProblem({ collections: { a: { fields: { b: "string" } } } }, "collections.a.fields.b", "must be a mapping such as { type: string }");
  });

  it("refuses unknown keys in collections and fields, suggesting the near miss", () => {
    expectProblem(withCollection({ feilds: {} }), "collections.customers.feilds", 'unknown key "feilds" (did you mean "fields"?)');
    expectProblem(withField("x", { type: "string", requried: true }), "collections.customers.fields.x.requried", /did you mean "required"\?.*expected one of type, description/);
  });

  it("validates collection and field names", () => {
    for (const bad of ["Customers", "1abc", "_x", "a-b", "a".repeat(64), ""]) {
      expectProblem({ collections: { [bad]: { fields: { a: { type: "int" } } } } }, `collections.${bad}`, "invalid collection name");
      expectProblem({ collections: { c: { fields: { [bad]: { type: "int" } } } } }, `collections.c.fields.${bad}`, "invalid field name");
    }
    expect(() => parseSchemaSet({ collections: { ["a" + "b".repeat(62)]: { fields: { x1_y: { type: "int" } } } } })).not.toThrow();
  });

  it("lists every problem at once", () => {
    const doc = {
      default_phone_region: "XX",
      sources: ["erp", "erp"],
      collections: {
        customers: {
          fields: {
            name: { type: "strng" },
            phone: { type: "int", normalizers: ["phone"] },
            status: { type: "enum" },
          },
        },
      },
    };
    const all = problems(doc);
    expect(all.map((p) => p.field)).toEqual([
      "default_phone_region",
      "sources[1]",
      "collections.customers.fields.name.type",
      "collections.customers.fields.phone.normalizers[0]",
      "collections.customers.fields.status.values",
    ]);
    try {
      parseSchemaSet(doc);
    } catch (e) {
      expect((e as Error).message).toMatch(/^invalid schema \(5 problems\): default_phone_region: .*; and 2 more$/);
    }
  });
});

describe("parseSchemaSet: types", () => {
  it("names the unknown type and lists the expected ones", () => {
    const p = expectProblem(withField("x", { type: "strng" }), "collections.customers.fields.x.type", 'unknown type "strng" (did you mean "string"?)');
    expect(p.description).toContain("expected one of string, int, decimal, bool, timestamp, enum, string_list, json");
  });

  it("requires a type", () => {
    expectProblem(withField("x", {}), "collections.customers.fields.x.type", "needs a type");
    expectProblem(withField("x", { type: 3 }), "collections.customers.fields.x.type", "unknown type (the number 3)");
  });
});

describe("parseSchemaSet: flags and strings", () => {
  it("requires booleans for flags", () => {
    for (const flag of ["required", "core", "sensitive", "identity"]) {
      expectProblem(withField("x", { type: "string", [flag]: "yes" }), `collections.customers.fields.x.${flag}`, 'must be true or false; got the string "yes"');
    }
  });

  it("requires string descriptions", () => {
    expectProblem(withField("x", { type: "string", description: 5 }), "collections.customers.fields.x.description", "must be a string");
    expectProblem(withCollection({ description: ["a"] }), "collections.customers.description", "must be a string");
  });
});

describe("parseSchemaSet: enums", () => {
  it("needs a non-empty values list", () => {
    expectProblem(withField("s", { type: "enum" }), "collections.customers.fields.s.values", "needs a non-empty values list");
    expectProblem(withField("s", { type: "enum", values: [] }), "collections.customers.fields.s.values", "needs a non-empty values list");
    expectProblem(withField("s", { type: "enum", values: "a" }), "collections.customers.fields.s.values", 'got the string "a"');
  });

  it("needs unique, non-empty string values", () => {
    expectProblem(withField("s", { type: "enum", values: ["a", "a"] }), "collections.customers.fields.s.values[1]", 'enum value "a" is listed twice');
    expectProblem(withField("s", { type: "enum", values: ["a", ""] }), "collections.customers.fields.s.values[1]", "non-empty strings");
    expectProblem(withField("s", { type: "enum", values: [" a"] }), "collections.customers.fields.s.values[0]", "without surrounding spaces");
    expectProblem(withField("s", { type: "enum", values: [1] }), "collections.customers.fields.s.values[0]", "(the number 1)");
  });

  it("refuses values on non-enum fields", () => {
    expectProblem(withField("s", { type: "string", values: ["a"] }), "collections.customers.fields.s.values", "values applies only to enum fields; s is a string field");
  });
});

describe("parseSchemaSet: normalizers", () => {
  it("accepts known normalizers on string fields, in order", () => {
    const set = parseSchemaSet(withField("x", { type: "string", normalizers: ["trim", "lowercase"] }));
    expect(set.collections.get("customers")!.fields.get("x")!.normalizers).toEqual(["trim", "lowercase"]);
  });

  it("refuses unknown normalizers", () => {
    expectProblem(withField("x", { type: "string", normalizers: ["phon"] }), "collections.customers.fields.x.normalizers[0]", 'unknown normalizer "phon" (did you mean "phone"?): expected one of trim, lowercase, email, phone');
  });

  it("refuses normalizers on non-string fields", () => {
    for (const [type, extra] of [["int", {}], ["string_list", {}], ["enum", { values: ["a"] }], ["json", {}]] as const) {
      for (const n of ["trim", "lowercase", "email", "phone"]) {
        expectProblem(withField("x", { type, ...extra, normalizers: [n] }), "collections.customers.fields.x.normalizers[0]", `normalizer "${n}" applies only to string fields; x is a ${type} field`);
      }
    }
  });

  it("refuses a non-list, duplicates, and phone with email", () => {
    expectProblem(withField("x", { type: "string", normalizers: "trim" }), "collections.customers.fields.x.normalizers", "must be a list");
    expectProblem(withField("x", { type: "string", normalizers: ["trim", "trim"] }), "collections.customers.fields.x.normalizers[1]", "listed twice");
    expectProblem(withField("x", { type: "string", normalizers: ["phone", "email"] }), "collections.customers.fields.x.normalizers", "both a phone number and an email");
  });
});

describe("parseSchemaSet: policies and sources", () => {
  it("refuses unknown policies", () => {
    expectProblem(withField("x", { type: "string", policy: "last_write_wins" }), "collections.customers.fields.x.policy", /unknown policy "last_write_wins".*expected one of lww, source_priority, keep_original, manual_review, reject/);
    expectProblem(withCollection({ default_policy: "LWW" }), "collections.customers.default_policy", 'did you mean "lww"?');
  });

  it("accepts every policy", () => {
    for (const policy of ["lww", "source_priority", "keep_original", "manual_review", "reject"]) {
      expect(parseSchemaSet(withField("x", { type: "string", policy })).collections.get("customers")!.fields.get("x")!.policy).toBe(policy);
    }
  });

  it("refuses an undeclared source in source_priority, naming it", () => {
    const p = expectProblem(withCollection({ source_priority: ["erp", "legacy-crm"] }), "collections.customers.source_priority[1]", 'unknown source "legacy-crm"');
    expect(p.reason).toBe("UNKNOWN_SOURCE");
    expect(p.description).toContain("declared: erp, crm-desktop, sales-app");
    expect(p.description).toContain("customers.source_priority");
  });

  it("names the source even when no sources are declared", () => {
    const doc = { collections: { c: { source_priority: ["erp"], fields: { a: { type: "int" } } } } };
    expectProblem(doc, "collections.c.source_priority[0]", /unknown source "erp".*declared: none/);
  });

  it("refuses duplicates and non-lists in source_priority", () => {
    expectProblem(withCollection({ source_priority: ["erp", "erp"] }), "collections.customers.source_priority[1]", "listed twice");
    expectProblem(withCollection({ source_priority: "erp" }), "collections.customers.source_priority", "must be a list");
    expectProblem(withCollection({ source_priority: [7] }), "collections.customers.source_priority[0]", "must be source names");
  });

  it("requires a source_priority list when a field uses that policy", () => {
    const p = expectProblem(withCollection({ source_priority: [] }), "collections.customers.source_priority", "uses the source_priority policy (fields credit_limit)");
    expect(p.description).toContain("source_priority: [erp, crm-desktop]");
    const noList = base();
    delete ((noList.collections as Doc).customers as Doc).source_priority;
    expectProblem(noList, "collections.customers.source_priority", "but has no source_priority list");
  });

  it("requires a source_priority list when it is the default policy", () => {
    const doc = { sources: ["erp"], collections: { c: { default_policy: "source_priority", fields: { a: { type: "int" } } } } };
    expectProblem(doc, "collections.c.source_priority", "(default_policy)");
    expect(() => parseSchemaSet({ ...doc, collections: { c: { ...doc.collections.c, source_priority: ["erp"] } } })).not.toThrow();
  });

  it("validates source names", () => {
    expectProblem({ sources: ["ERP"], collections: base().collections }, "sources[0]", 'invalid source name "ERP"');
    expectProblem({ sources: [""], collections: base().collections }, "sources[0]", "invalid source name");
    expectProblem({ sources: [3], collections: base().collections }, "sources[0]", "(the number 3)");
    expectProblem({ sources: "erp", collections: base().collections }, "sources", "must be a list");
    const ok = ["a.b_c-1", "9x", "erp", "crm-desktop"];
    expect(parseSchemaSet({ sources: ok, collections: base().collections }).sources).toEqual(ok);
  });
});

describe("parseSchemaSet: identity", () => {
  it("allows string, int and enum identities", () => {
    for (const [type, extra] of [["string", {}], ["int", {}], ["enum", { values: ["a"] }]] as const) {
      expect(() => parseSchemaSet(withField("k", { type, ...extra, identity: true }))).not.toThrow();
    }
  });

  it("refuses other identity types", () => {
    for (const type of ["json", "string_list", "decimal", "bool", "timestamp"]) {
      expectProblem(withField("k", { type, identity: true }), "collections.customers.fields.k.identity", `identity fields must be string, int, enum typed; k is a ${type} field`);
    }
  });
});

describe("parseSchemaSet: masks", () => {
  it("accepts an explicit mask", () => {
    const set = parseSchemaSet(withField("k", { type: "string", sensitive: true, normalizers: ["phone"], mask: "hash" }));
    expect(set.collections.get("customers")!.fields.get("k")!.mask).toBe("hash");
  });

  it("refuses unknown masks", () => {
    expectProblem(withField("k", { type: "string", mask: "partial" }), "collections.customers.fields.k.mask", /unknown mask "partial".*none, phone, id_number, email, redact, hash/);
  });

  it("refuses text masks on non-string fields", () => {
    expectProblem(withField("k", { type: "int", mask: "phone" }), "collections.customers.fields.k.mask", 'mask "phone" applies only to string fields');
    expect(() => parseSchemaSet(withField("k", { type: "int", mask: "redact" }))).not.toThrow();
  });
});

describe("parseSchemaSet: max_length", () => {
  it("accepts it within the global limit of the type", () => {
    expect(() => parseSchemaSet(withField("k", { type: "string", max_length: 65536 }))).not.toThrow();
    expect(() => parseSchemaSet(withField("k", { type: "json", max_length: 0 }))).not.toThrow();
  });

  it("refuses bad values and types", () => {
    expectProblem(withField("k", { type: "string", max_length: -1 }), "collections.customers.fields.k.max_length", "whole number >= 0");
    expectProblem(withField("k", { type: "string", max_length: 1.5 }), "collections.customers.fields.k.max_length", "whole number >= 0");
    expectProblem(withField("k", { type: "string", max_length: "10" }), "collections.customers.fields.k.max_length", "whole number >= 0");
    expectProblem(withField("k", { type: "string", max_length: 65537 }), "collections.customers.fields.k.max_length", "exceeds the global limit of 65536");
    expectProblem(withField("k", { type: "string_list", max_length: 1001 }), "collections.customers.fields.k.max_length", "exceeds the global limit of 1000");
    expectProblem(withField("k", { type: "int", max_length: 3 }), "collections.customers.fields.k.max_length", "applies only to string, string_list and json");
  });
});

describe("parseSchemaSet: default_phone_region", () => {
  it("accepts supported regions", () => {
    for (const r of ["CN", "HK", "US", "GB", "SG", "TW", "MO"]) {
      expect(parseSchemaSet({ ...base(), default_phone_region: r }).defaultPhoneRegion).toBe(r);
    }
  });

  it("refuses unknown or mis-cased regions", () => {
    expectProblem({ ...base(), default_phone_region: "cn" }, "default_phone_region", 'unknown phone region "cn" (did you mean "CN"?)');
    expectProblem({ ...base(), default_phone_region: "XX" }, "default_phone_region", /unknown phone region "XX": expected/);
    expectProblem({ ...base(), default_phone_region: "CHN" }, "default_phone_region", "unknown phone region");
    expectProblem({ ...base(), default_phone_region: 86 }, "default_phone_region", "must be an ISO 3166-1 alpha-2");
  });
});
