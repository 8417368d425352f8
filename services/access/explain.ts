// "May principal P do action A on record R (field F)?", with the trace of
// every grant P's roles hold: which covered the collection and action, what
// its scope said about R, whether it lists F. The same rules as enforcement
// (engine.ts), spelled out. Pure.
import type { Principal } from "../platform/principal.js";
import type { MaskName } from "../schema/types.js";
import { celPrincipal, deviceClassOf, fieldRules, grantsOf } from "./engine.js";
import { fieldListed, grantCovers, grantMask, type Action, type Grant, type Policy } from "./policy.js";
import { celRecord } from "./scope.js";
import type { Fields } from "./view.js";

export type ScopeResult = "unscoped" | "match" | "no_match" | "error" | "not_evaluated";

export interface GrantTrace {
  grant: string;
  role: string;
  /** Names the collection and the action. */
  covers: boolean;
  scope: ScopeResult;
  scopeError: string;
  /** With a field: whether the grant lists it (read_fields, or write_fields for writes). */
  fieldListed: boolean | null;
  /** With a field and read: the mask this grant shows it with. */
  mask: MaskName | null;
}

export type Verdict =
  | "ALLOWED"
  /** No record given: allowed on the records the scopes admit. */
  | "ALLOWED_WITHIN_SCOPE"
  | "UNKNOWN_COLLECTION"
  | "ACTION_NOT_GRANTED"
  | "OUT_OF_SCOPE"
  | "UNKNOWN_FIELD"
  | "FIELD_NOT_READABLE"
  | "FIELD_NOT_WRITABLE";

export interface Explanation {
  allowed: boolean;
  verdict: Verdict;
  /** The grants that allow it. */
  allowedBy: string[];
  /** Read of a field: the mask it is shown with ("none": in clear). */
  mask: MaskName | null;
  /** Roles of the principal the policy does not define. */
  unknownRoles: string[];
  grants: GrantTrace[];
}

export interface AccessQuestion {
  action: Action;
  collection: string;
  /** The record's fields; null: no particular record. */
  record: Fields | null;
  field?: string;
  /** Default: the principal's device_class attribute. */
  deviceClass?: string;
}

export function explain(policy: Policy, principal: Principal, q: AccessQuestion): Explanation {
  const schema = policy.schemas.collections.get(q.collection);
  const unknownRoles = principal.roles.filter((r) => !policy.roles.has(r));
  const deviceClass = q.deviceClass ?? deviceClassOf(principal);
  const grants = grantsOf(policy, principal);
  const base = { mask: null, unknownRoles };
  if (!schema) {
    return { ...base, allowed: false, verdict: "UNKNOWN_COLLECTION", allowedBy: [], grants: grants.map((g) => trace(g, false, "not_evaluated", "")) };
  }
  const cp = celPrincipal(principal);
  const rec = q.record ? celRecord(schema, q.record, "all") : null;
  const fieldList = q.action === "write" ? "writeFields" : q.action === "read" || q.action === "resolve_conflicts" ? "readFields" : null;
  const field = q.field && fieldList ? q.field : undefined;
  const fieldSchema = field === undefined ? undefined : schema.fields.get(field);

  const traces = grants.map((g) => {
    const covers = grantCovers(g, schema.name, q.action);
    let scope: ScopeResult = "not_evaluated";
    let scopeError = "";
    if (covers && !g.scope) scope = "unscoped";
    else if (covers && rec) {
      const r = g.scope!.evaluate(rec, cp);
      if ("error" in r) [scope, scopeError] = ["error", r.error];
      else scope = r.value ? "match" : "no_match";
    }
    const t = trace(g, covers, scope, scopeError);
    if (field !== undefined && covers && fieldSchema) {
      t.fieldListed = fieldListed(g[fieldList!], field);
      if (q.action === "read" && t.fieldListed) t.mask = grantMask(g, field, deviceClass, fieldSchema.mask);
    }
    return { g, t };
  });

  const covering = traces.filter(({ t }) => t.covers);
  const admitting = covering.filter(({ t }) => t.scope === "unscoped" || t.scope === "match" || (t.scope === "not_evaluated" && !rec));
  const result = (verdict: Verdict, allowedBy: Grant[], mask: MaskName | null = null): Explanation => ({
    ...base,
    allowed: verdict === "ALLOWED" || verdict === "ALLOWED_WITHIN_SCOPE",
    verdict,
    allowedBy: allowedBy.map((g) => g.id),
    mask,
    grants: traces.map(({ t }) => t),
  });
  if (covering.length === 0) return result("ACTION_NOT_GRANTED", []);
  if (admitting.length === 0) return result("OUT_OF_SCOPE", []);
  const ok: Verdict = rec ? "ALLOWED" : "ALLOWED_WITHIN_SCOPE";
  if (field === undefined) return result(ok, admitting.map(({ g }) => g));
  if (!fieldSchema) return result("UNKNOWN_FIELD", []);
  const listing = admitting.filter(({ t }) => t.fieldListed);
  if (listing.length === 0) return result(q.action === "write" ? "FIELD_NOT_WRITABLE" : "FIELD_NOT_READABLE", []);
  const mask = q.action === "read" ? (fieldRules(schema, listing.map(({ g }) => g), deviceClass).visible.get(field) ?? null) : null;
  return result(ok, listing.map(({ g }) => g), mask);
}

function trace(g: Grant, covers: boolean, scope: ScopeResult, scopeError: string): GrantTrace {
  return { grant: g.id, role: g.role, covers, scope, scopeError, fieldListed: null, mask: null };
}
