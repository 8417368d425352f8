// Loading the policies section: the shipped example compiles; every kind of
// mistake is refused with a path and a message naming it.
import { describe, expect, it } from "vitest";
import { DomainError } from "../../../services/platform/errors.js";
import { example, withPolicies } from "./fixtures.js";

function problems(policies: unknown): { field: string; description: string; reason?: string }[] {
  try {
    withPolicies(policies);
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    expect((e as DomainError).reason).toBe("INVALID_POLICY");
    expect((e as DomainError).kind).toBe("invalid_argument");
    return (e as DomainError).violations;
  }
  throw new Error("expected the policy to be refused");
}

const grant = (g: Record<string, unknown>) => ({ roles: { r: { grants: [{ collections: ["customers"], actions: ["read"], ...g }] } } });

describe("policies section", () => {
  it("the shipped example compiles: roles, grants, scopes, certificates", () => {
    const p = example.policy;
    expect([...p.roles.keys()]).toEqual(["admin", "sales", "sales_manager", "service", "finance", "erp_integration"]);
    const sales = p.roles.get("sales")!.grants[0]!;
    expect(sales.id).toBe("policies.roles.sales.grants[0]");
    expect(sales.scope?.recordFields).toEqual(["owner", "region"]);
    expect(sales.scope?.principalKeys).toEqual(["regions", "sub"]);
    expect(p.certificates[0]).toMatchObject({ subject: "svc-erp", roles: ["erp_integration"], match: { cn: "erp-gateway" } });
    expect(p.revision).toBe("example");
  });

  it("no policies section: an empty policy (nobody may do anything)", () => {
    expect(withPolicies(undefined).policy.roles.size).toBe(0);
  });

  it("refuses an unknown collection, with a suggestion", () => {
    const v = problems({ roles: { r: { grants: [{ collections: ["customer"], actions: ["read"] }] } } });
    expect(v).toEqual([expect.objectContaining({ field: "policies.roles.r.grants[0].collections[0]", reason: "UNKNOWN_COLLECTION" })]);
    expect(v[0]!.description).toContain('unknown collection "customer" (did you mean "customers"?)');
  });

  it("refuses unknown fields in read_fields, write_fields and masks", () => {
    const v = problems(grant({ actions: ["read", "write"], read_fields: ["phon"], write_fields: ["nmae"], masks: { emial: "none" } }));
    expect(v.map((x) => x.field)).toEqual([
      "policies.roles.r.grants[0].read_fields[0]",
      "policies.roles.r.grants[0].write_fields[0]",
      "policies.roles.r.grants[0].masks.emial",
    ]);
    expect(v[0]!.description).toBe('customers has no field "phon" (did you mean "phone"?)');
  });

  it("a field must exist in every collection of the grant", () => {
    const v = problems({ roles: { r: { grants: [{ collections: ["customers", "followups"], actions: ["read"], read_fields: ["phone"] }] } } });
    expect(v[0]!.description).toContain('followups has no field "phone"');
  });

  it("refuses unknown actions and masks, and text masks on non-string fields", () => {
    const v = problems(grant({ actions: ["reed"], masks: { phone: "fone", birthday: "phone", "*": "email" } }));
    expect(v.map((x) => x.field)).toEqual([
      "policies.roles.r.grants[0].actions[0]",
      "policies.roles.r.grants[0].masks.phone",
      "policies.roles.r.grants[0].masks.birthday",
      "policies.roles.r.grants[0].masks.*",
    ]);
    expect(v[0]!.description).toContain('unknown action "reed" (did you mean "read"?)');
    expect(v[2]!.description).toContain("birthday is a timestamp field");
  });

  it("refuses invalid CEL and unknown record fields or variables in a scope", () => {
    expect(problems(grant({ scope: "record.region ==" }))[0]).toMatchObject({ field: "policies.roles.r.grants[0].scope", reason: "INVALID_SCOPE" });
    expect(problems(grant({ scope: "record.regoin == 'x'" }))[0]!.description).toContain('customers has no field "regoin"');
    expect(problems(grant({ scope: "user.region == record.region" }))[0]!.description).toContain('unknown variable "user"');
    expect(problems(grant({ scope: "" }))[0]!.field).toBe("policies.roles.r.grants[0].scope");
  });

  it("accepts macros with loop variables", () => {
    const s = withPolicies(grant({ scope: "principal.regions.exists(r, r == record.region)" }));
    expect(s.policy.roles.get("r")!.grants[0]!.scope!.recordFields).toEqual(["region"]);
  });

  it("write needs write_fields, and write_fields need write", () => {
    expect(problems(grant({ actions: ["write"] }))[0]!.field).toBe("policies.roles.r.grants[0].write_fields");
    expect(problems(grant({ write_fields: ["name"] }))[0]!.description).toContain("without the write action");
  });

  it("a grant on every collection can only name every field", () => {
    const v = problems({ roles: { r: { grants: [{ collections: ["*"], actions: ["read"], read_fields: ["name"] }] } } });
    expect(v[0]!.description).toContain('every collection ("*")');
  });

  it("device masks must name declared device classes", () => {
    const v = problems({ device_classes: ["desktop"], ...grant({ device_masks: { mobil: { phone: "phone" } } }) });
    expect(v[0]!.field).toBe("policies.roles.r.grants[0].device_masks.mobil");
    expect(v[0]!.description).toContain("declare it in policies.device_classes");
  });

  it("refuses unknown keys, bad role names and certificate mappings to unknown roles", () => {
    const v = problems({
      rolez: {},
      roles: { "bad role": { grants: [] }, ok: { grants: [{ collections: ["customers"], actions: ["read"], scoep: "true" }] } },
      client_certificates: [{ match: {}, subject: "", roles: ["nope"] }],
    });
    const fields = v.map((x) => x.field);
    expect(fields).toContain("policies.rolez");
    expect(fields).toContain("policies.roles.bad role");
    expect(fields).toContain("policies.roles.ok.grants[0].scoep");
    expect(fields).toContain("policies.client_certificates[0].match");
    expect(fields).toContain("policies.client_certificates[0].subject");
    expect(fields).toContain("policies.client_certificates[0].roles[0]");
  });

  it("reports every problem of a document at once", () => {
    expect(problems(grant({ actions: ["x"], read_fields: ["y"], scope: "(" })).length).toBe(3);
  });
});
