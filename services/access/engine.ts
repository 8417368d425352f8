// The policy engine: which grants apply to a principal, a collection and an
// action, which records they admit, and which fields they show or let write.
// Pure: callers pass the compiled Policy and the Principal. Several grants
// (of several roles) combine by union: a record is in scope when any grant
// admits it; a field is readable (writable) when any admitting grant lists
// it, and shown with the least hiding mask among them.
import { createHash } from "node:crypto";
import type { Principal } from "../platform/principal.js";
import type { CollectionSchema, MaskName, StoredValue } from "../schema/types.js";
import { ALL, fieldListed, grantCovers, grantMask, MASK_RANK, type Action, type Grant, type Policy } from "./policy.js";
import { celRecord, type CelPrincipal, type CelRecord } from "./scope.js";

/** The principal attribute holding the device class masks are chosen by ("mobile", "desktop", ...). */
export const DEVICE_CLASS_ATTRIBUTE = "device_class";

export function deviceClassOf(p: Principal): string {
  const dc = p.attributes[DEVICE_CLASS_ATTRIBUTE];
  return typeof dc === "string" ? dc : "";
}

/** The principal as scope expressions see it: sub, tenant, roles, then its attributes. */
export function celPrincipal(p: Principal): CelPrincipal {
  const m = new Map<string, unknown>(Object.entries(p.attributes));
  m.set("sub", p.subject);
  m.set("tenant", p.tenant);
  m.set("roles", [...p.roles]);
  return m;
}

/** Every grant of the principal's roles, in policy order. */
export function grantsOf(policy: Policy, principal: Principal): Grant[] {
  return principal.roles.flatMap((r) => policy.roles.get(r)?.grants ?? []);
}

/** Whether some grant of the principal allows `action` on some collection (any, for "*"). */
export function hasAction(policy: Policy, principal: Principal, action: Action, collection?: string): boolean {
  return grantsOf(policy, principal).some((g) => (collection === undefined ? g.actions.has(action) : grantCovers(g, collection, action)));
}

/**
 * The grants allowing one action on one collection to one principal, with
 * their scopes bound to that principal: answers "which of them admit this
 * record?" with one CEL evaluation per scoped grant.
 */
export class GrantSet {
  readonly grants: readonly Grant[];
  private readonly principal: CelPrincipal;
  private readonly recordFields: readonly string[] | "all";
  private readonly fieldsOfAll = new Map<"readFields" | "writeFields", ReadonlySet<string>>();

  constructor(
    policy: Policy,
    principal: Principal,
    readonly schema: CollectionSchema,
    readonly action: Action,
  ) {
    this.grants = grantsOf(policy, principal).filter((g) => grantCovers(g, schema.name, action));
    this.principal = celPrincipal(principal);
    const fields = new Set<string>();
    let all = false;
    for (const g of this.grants) {
      if (!g.scope) continue;
      if (g.scope.recordFields === "all") all = true;
      else for (const f of g.scope.recordFields) fields.add(f);
    }
    this.recordFields = all ? "all" : [...fields];
  }

  /** No grant at all: the action is not allowed on this collection, whatever the record. */
  get empty(): boolean {
    return this.grants.length === 0;
  }

  celRecord(fields: Readonly<Record<string, StoredValue>>): CelRecord {
    return celRecord(this.schema, fields, this.recordFields);
  }

  /** The grants admitting a record with these fields (`grants` itself when none is scoped). */
  admitting(fields: Readonly<Record<string, StoredValue>>): readonly Grant[] {
    if (this.grants.every((g) => !g.scope)) return this.grants;
    const rec = this.celRecord(fields);
    return this.grants.filter((g) => !g.scope || g.scope.matches(rec, this.principal));
  }

  admits(fields: Readonly<Record<string, StoredValue>>): boolean {
    if (this.grants.some((g) => !g.scope)) return true;
    if (this.grants.length === 0) return false;
    const rec = this.celRecord(fields);
    return this.grants.some((g) => g.scope!.matches(rec, this.principal));
  }

  /**
   * Fields the admitting grants list under `list` (read_fields or write_fields).
   * Asked for every mutation, mostly of all the grants: that answer is kept.
   */
  fieldsOf(admitting: readonly Grant[], list: "readFields" | "writeFields"): ReadonlySet<string> {
    if (admitting !== this.grants) return this.listedFields(admitting, list);
    let fields = this.fieldsOfAll.get(list);
    if (!fields) this.fieldsOfAll.set(list, (fields = this.listedFields(admitting, list)));
    return fields;
  }

  private listedFields(admitting: readonly Grant[], list: "readFields" | "writeFields"): ReadonlySet<string> {
    const out = new Set<string>();
    for (const g of admitting) {
      const l = g[list];
      if (l === ALL) return new Set(this.schema.fields.keys());
      for (const f of l) out.add(f);
    }
    return out;
  }

  /** The principal values the scopes read: two principals equal on these are admitted alike. */
  scopeInputs(): unknown[] {
    return this.grants.map((g) => {
      if (!g.scope) return null;
      const keys = g.scope.principalKeys === "all" ? [...this.principal.keys()].sort() : g.scope.principalKeys;
      return keys.map((k) => [k, this.principal.get(k) ?? null]);
    });
  }
}

/** The fields a set of admitting grants shows, each with its mask ("none": in clear). */
export interface FieldRules {
  readonly key: string;
  readonly visible: ReadonlyMap<string, MaskName>;
  /** Sensitive fields shown in clear: reading them is audited. */
  readonly unmaskedSensitive: readonly string[];
}

export function fieldRules(schema: CollectionSchema, admitting: readonly Grant[], deviceClass: string): FieldRules {
  const visible = new Map<string, MaskName>();
  for (const field of schema.fields.values()) {
    let best: MaskName | null = null;
    for (const g of admitting) {
      if (!fieldListed(g.readFields, field.name)) continue;
      const m = grantMask(g, field.name, deviceClass, field.mask);
      if (best === null || MASK_RANK[m] < MASK_RANK[best]) best = m;
    }
    if (best !== null) visible.set(field.name, best);
  }
  const unmaskedSensitive = [...visible].filter(([f, m]) => m === "none" && schema.fields.get(f)!.sensitive).map(([f]) => f);
  const key = [...visible].map(([f, m]) => `${f}:${m}`).join(",");
  return { key, visible, unmaskedSensitive };
}

export function shortHash(value: unknown): string {
  return createHash("sha256").update(JSON.stringify(value)).digest("base64url").slice(0, 22);
}
