// Check/explain: the verdict and the trace of every grant.
import { describe, expect, it } from "vitest";
import { explain } from "../../../services/access/explain.js";
import { customer, eastSales, example, principal } from "./fixtures.js";

const ask = (p: ReturnType<typeof principal>, q: Partial<Parameters<typeof explain>[2]>) =>
  explain(example.policy, p, { action: "read", collection: "customers", record: customer(), ...q });

describe("explain", () => {
  it("allowed: names the grant and the mask a field is shown with", () => {
    const e = ask(eastSales("mobile"), { field: "phone" });
    expect(e).toMatchObject({ allowed: true, verdict: "ALLOWED", allowedBy: ["policies.roles.sales.grants[0]"], mask: "phone" });
    expect(e.grants.find((g) => g.grant === "policies.roles.sales.grants[0]")).toMatchObject({ covers: true, scope: "match", fieldListed: true, mask: "phone" });
    expect(e.grants.find((g) => g.grant === "policies.roles.sales.grants[1]")).toMatchObject({ covers: false, scope: "not_evaluated" });
    expect(ask(eastSales("desktop"), { field: "phone" }).mask).toBe("none");
  });

  it("out of scope, action not granted, field not readable or writable, unknown field or collection", () => {
    expect(ask(eastSales(), { record: customer({ region: "north_china" }) })).toMatchObject({ allowed: false, verdict: "OUT_OF_SCOPE" });
    expect(ask(eastSales(), { action: "export" })).toMatchObject({ allowed: false, verdict: "ACTION_NOT_GRANTED" });
    expect(ask(eastSales(), { field: "id_number" })).toMatchObject({ allowed: false, verdict: "FIELD_NOT_READABLE" });
    expect(ask(eastSales(), { action: "write", field: "credit_limit" })).toMatchObject({ allowed: false, verdict: "FIELD_NOT_WRITABLE" });
    expect(ask(eastSales(), { field: "nope" })).toMatchObject({ allowed: false, verdict: "UNKNOWN_FIELD" });
    expect(ask(eastSales(), { collection: "nope" })).toMatchObject({ allowed: false, verdict: "UNKNOWN_COLLECTION" });
  });

  it("finance may export; with no record the answer holds within scope", () => {
    expect(ask(principal(["finance"]), { action: "export", record: null })).toMatchObject({ allowed: true, verdict: "ALLOWED_WITHIN_SCOPE" });
    expect(ask(eastSales(), { record: null })).toMatchObject({ allowed: true, verdict: "ALLOWED_WITHIN_SCOPE" });
  });

  it("a scope that errors (missing attribute) denies and says why", () => {
    const e = ask(principal(["sales"], {}), {});
    expect(e.allowed).toBe(false);
    expect(e.grants[0]).toMatchObject({ scope: "error" });
    expect(e.grants[0]!.scopeError).toContain("regions");
  });

  it("lists roles the policy does not define", () => {
    expect(ask(principal(["sales", "ghost"], { regions: ["east_china"] }), {}).unknownRoles).toEqual(["ghost"]);
  });
});
