// The stream seam's change signal: policy or schema edits wake it, other
// config edits do not; views rebuilt on it get new keys.
import { describe, expect, it } from "vitest";
import { onPolicyChange } from "../../../services/access/policy-changes.js";
import { viewFor } from "../../../services/access/view.js";
import { staticConfigSource } from "../../../services/config/source.js";
import { eastSales, exampleDoc, hasher } from "./fixtures.js";

describe("onPolicyChange", () => {
  it("fires on policy and schema changes only, with the new compiled policy", async () => {
    const src = staticConfigSource(exampleDoc);
    const seen: string[] = [];
    const stop = onPolicyChange(src, (p) => seen.push(p.revision));
    const customers = () => src.current().schemas.collections.get("customers")!;
    const before = viewFor(src.current().policy, eastSales(), customers(), { hasher });

    await src.putSection("retention", { change_log: "3d" }, "");
    expect(seen).toEqual([]);

    const policies = structuredClone(exampleDoc.policies) as { roles: { sales: { grants: { scope: string }[] } } };
    policies.roles.sales.grants[0]!.scope = "record.owner == principal.sub";
    const snap = await src.putSection("policies", policies, "");
    expect(seen).toEqual([snap.revision]);
    const after = viewFor(src.current().policy, eastSales(), customers(), { hasher });
    expect(after.key).not.toBe(before.key);
    expect(after.inScope({ region: "east_china", owner: "x" })).toBe(false);

    const collections = structuredClone(exampleDoc.collections) as Record<string, { fields: Record<string, { mask?: string }> }>;
    collections.customers!.fields.email!.mask = "redact";
    await src.putSection("collections", collections, "");
    expect(seen).toHaveLength(2);

    stop();
    await src.putSection("policies", exampleDoc.policies, "");
    expect(seen).toHaveLength(2);
  });
});
