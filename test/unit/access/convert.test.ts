// The policy document <-> API form: a round trip keeps the policy.
import { describe, expect, it } from "vitest";
import type { Action } from "../../../gen/deltamesh/v1/access_pb.js";
import { policyDocToPb, policyPbToDoc } from "../../../services/access/convert.js";
import { parsePolicy } from "../../../services/access/policy-load.js";
import { example, exampleDoc } from "./fixtures.js";

describe("policy conversion", () => {
  it("the example survives doc -> API -> doc and compiles to the same grants", () => {
    const back = policyPbToDoc(policyDocToPb(exampleDoc.policies));
    const again = parsePolicy(back, example.schemas, "x");
    const summary = (p: typeof again) =>
      [...p.roles.values()].flatMap((r) => r.grants.map((g) => [g.id, [...g.actions], g.scope?.text ?? null, g.readFields === "*" ? "*" : [...g.readFields], g.writeFields === "*" ? "*" : [...g.writeFields], [...g.masks], [...g.deviceMasks].map(([d, m]) => [d, [...m]])]));
    expect(summary(again)).toEqual(summary(example.policy));
    expect(again.certificates).toEqual(example.policy.certificates);
    expect(again.deviceClasses).toEqual(example.policy.deviceClasses);
  });

  it("an unknown action number reaches the validator as a named problem", () => {
    const pb = policyDocToPb({ roles: { r: { grants: [{ collections: ["customers"], actions: ["read"] }] } } });
    pb.roles.r!.grants[0]!.actions.push(42 as Action);
    expect(() => parsePolicy(policyPbToDoc(pb), example.schemas, "x")).toThrow(/unknown action/);
  });
});
