// Translation between the AccessService protobuf types and the access domain:
// the policy as its config document (the `policies` section), principals,
// explanations and audit entries.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  AccessDecisionSchema,
  Action as ActionPb,
  AttributeValueSchema,
  AuditEntrySchema,
  AuditEventKind,
  GrantEvaluationSchema,
  PolicySchema,
  PrincipalSchema,
  ScopeResult as ScopeResultPb,
  type AccessDecision,
  type AttributeValue,
  type AuditEntry as AuditEntryPb,
  type FieldMasks,
  type GrantEvaluation,
  type Policy as PolicyPb,
  type Principal as PrincipalPb,
} from "../../gen/deltamesh/v1/access_pb.js";
import { invalidArgument } from "../platform/errors.js";
import type { Principal } from "../platform/principal.js";
import type { AuditEntry, AuditKind } from "./audit-chain.js";
import type { Explanation, GrantTrace, ScopeResult } from "./explain.js";
import type { Action } from "./policy.js";

export const ACTION_TO_PB: Readonly<Record<Action, ActionPb>> = {
  read: ActionPb.READ,
  write: ActionPb.WRITE,
  delete: ActionPb.DELETE,
  export: ActionPb.EXPORT,
  resolve_conflicts: ActionPb.RESOLVE_CONFLICTS,
  admin: ActionPb.ADMIN,
};
const ACTION_FROM_PB = new Map<ActionPb, Action>(Object.entries(ACTION_TO_PB).map(([k, v]) => [v, k as Action]));

export function actionFromPb(a: ActionPb, field: string): Action {
  const action = ACTION_FROM_PB.get(a);
  if (!action) throw invalidArgument(`${field} must name an action`, [{ field, description: "read, write, delete, export, resolve_conflicts or admin", reason: "REQUIRED" }]);
  return action;
}

export const KIND_TO_PB: Readonly<Record<AuditKind, AuditEventKind>> = {
  read_unmasked: AuditEventKind.READ_UNMASKED,
  export: AuditEventKind.EXPORT,
  policy_change: AuditEventKind.POLICY_CHANGE,
  denied: AuditEventKind.DENIED,
  unauthenticated: AuditEventKind.UNAUTHENTICATED,
};
export const KIND_FROM_PB = new Map<AuditEventKind, AuditKind>(Object.entries(KIND_TO_PB).map(([k, v]) => [v, k as AuditKind]));

const SCOPE_TO_PB: Readonly<Record<ScopeResult, ScopeResultPb>> = {
  not_evaluated: ScopeResultPb.NOT_EVALUATED,
  unscoped: ScopeResultPb.UNSCOPED,
  match: ScopeResultPb.MATCH,
  no_match: ScopeResultPb.NO_MATCH,
  error: ScopeResultPb.ERROR,
};

type Attributes = Record<string, string | string[]>;

function attributesToPb(a: Readonly<Attributes>): Record<string, AttributeValue> {
  return Object.fromEntries(
    Object.entries(a).map(([k, v]) => [
      k,
      create(AttributeValueSchema, { kind: typeof v === "string" ? { case: "value", value: v } : { case: "values", value: { values: [...v] } } }),
    ]),
  );
}

function attributesFromPb(a: Record<string, AttributeValue>): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(a)) {
    if (v.kind.case === "value") out[k] = v.kind.value;
    else if (v.kind.case === "values") out[k] = [...v.kind.value.values];
  }
  return out;
}

export function principalToPb(p: Principal): PrincipalPb {
  return create(PrincipalSchema, { subject: p.subject, tenant: p.tenant, roles: [...p.roles], attributes: attributesToPb(p.attributes) });
}

export function principalFromPb(p: PrincipalPb, defaultTenant: string): Principal {
  return { subject: p.subject, tenant: p.tenant || defaultTenant, roles: [...p.roles], attributes: attributesFromPb(p.attributes) };
}

// --- the policy document <-> protobuf -------------------------------------

type Doc = Record<string, unknown>;
const isDoc = (x: unknown): x is Doc => typeof x === "object" && x !== null && !Array.isArray(x);
const strings = (x: unknown): string[] => (Array.isArray(x) ? x.filter((s): s is string => typeof s === "string") : []);
const str = (x: unknown): string => (typeof x === "string" ? x : "");
const masksOf = (x: unknown): Record<string, string> =>
  isDoc(x) ? Object.fromEntries(Object.entries(x).filter((e): e is [string, string] => typeof e[1] === "string")) : {};

/** The `policies` config section as the API shows it (absent: an empty policy). */
export function policyDocToPb(section: unknown): PolicyPb {
  const d = isDoc(section) ? section : {};
  const roles = isDoc(d.roles) ? d.roles : {};
  return create(PolicySchema, {
    deviceClasses: strings(d.device_classes),
    roles: Object.fromEntries(
      Object.entries(roles).map(([name, r]) => {
        const role = isDoc(r) ? r : {};
        const grants = Array.isArray(role.grants) ? role.grants.filter(isDoc) : [];
        return [
          name,
          {
            description: str(role.description),
            grants: grants.map((g) => ({
              description: str(g.description),
              collections: strings(g.collections),
              actions: strings(g.actions).map((a) => ACTION_TO_PB[a as Action] ?? ActionPb.UNSPECIFIED),
              scope: str(g.scope),
              readFields: strings(g.read_fields),
              writeFields: strings(g.write_fields),
              masks: { masks: masksOf(g.masks) },
              deviceMasks: Object.fromEntries(Object.entries(isDoc(g.device_masks) ? g.device_masks : {}).map(([dc, m]) => [dc, { masks: masksOf(m) }])),
            })),
          },
        ];
      }),
    ),
    clientCertificates: (Array.isArray(d.client_certificates) ? d.client_certificates.filter(isDoc) : []).map((c) => {
      const m = isDoc(c.match) ? c.match : {};
      return {
        match: { cn: str(m.cn), o: str(m.o), ou: str(m.ou), fingerprint256: str(m.fingerprint256) },
        principal: {
          subject: str(c.subject),
          tenant: str(c.tenant),
          roles: strings(c.roles),
          attributes: attributesToPb(isDoc(c.attributes) ? (c.attributes as Attributes) : {}),
        },
      };
    }),
  });
}

const nonEmpty = <T>(key: string, v: T[] | Record<string, unknown>): Doc =>
  (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0) ? { [key]: v } : {};

function masksToDoc(m: FieldMasks | undefined): Record<string, string> {
  return { ...(m?.masks ?? {}) };
}

/**
 * The API's policy as the `policies` config section (validated by the config
 * source when written). Unknown actions stay visible as text so the validator
 * names them.
 */
export function policyPbToDoc(p: PolicyPb): Doc {
  const roles: Doc = {};
  for (const [name, r] of Object.entries(p.roles)) {
    roles[name] = {
      ...(r.description ? { description: r.description } : {}),
      grants: r.grants.map((g, i) => ({
        ...(g.description ? { description: g.description } : {}),
        collections: [...g.collections],
        actions: g.actions.map((a, j) => ACTION_FROM_PB.get(a) ?? `unknown action ${a} at roles.${name}.grants[${i}].actions[${j}]`),
        ...(g.scope ? { scope: g.scope } : {}),
        ...nonEmpty("read_fields", [...g.readFields]),
        ...nonEmpty("write_fields", [...g.writeFields]),
        ...nonEmpty("masks", masksToDoc(g.masks)),
        ...nonEmpty("device_masks", Object.fromEntries(Object.entries(g.deviceMasks).map(([dc, m]) => [dc, masksToDoc(m)]))),
      })),
    };
  }
  return {
    ...nonEmpty("device_classes", [...p.deviceClasses]),
    roles,
    ...nonEmpty(
      "client_certificates",
      p.clientCertificates.map((c) => {
        const m = c.match;
        const pr = c.principal;
        return {
          match: Object.fromEntries(Object.entries({ cn: m?.cn, o: m?.o, ou: m?.ou, fingerprint256: m?.fingerprint256 }).filter(([, v]) => v)),
          subject: pr?.subject ?? "",
          ...(pr?.tenant ? { tenant: pr.tenant } : {}),
          roles: [...(pr?.roles ?? [])],
          ...nonEmpty("attributes", attributesFromPb(pr?.attributes ?? {})),
        };
      }),
    ),
  };
}

// --- explanations and audit entries ---------------------------------------

export function decisionToPb(e: Explanation): AccessDecision {
  return create(AccessDecisionSchema, { allowed: e.allowed, verdict: e.verdict, allowedBy: e.allowedBy, mask: e.mask ?? "" });
}

export function traceToPb(t: GrantTrace): GrantEvaluation {
  return create(GrantEvaluationSchema, {
    grant: t.grant,
    role: t.role,
    covers: t.covers,
    scope: SCOPE_TO_PB[t.scope],
    scopeError: t.scopeError,
    fieldListed: t.fieldListed ?? undefined,
    mask: t.mask ?? "",
  });
}

export function auditEntryToPb(e: AuditEntry): AuditEntryPb {
  return create(AuditEntrySchema, {
    seq: BigInt(e.seq),
    time: timestampFromDate(e.time),
    tenant: e.tenant,
    actor: e.actor,
    roles: e.roles,
    kind: KIND_TO_PB[e.kind],
    rpc: e.rpc,
    collection: e.collection,
    recordIds: e.recordIds,
    fields: e.fields,
    reason: e.reason,
    device: e.device,
    deviceClass: e.deviceClass,
    peer: e.peer,
    details: e.details,
    prevHash: e.prevHash,
    hash: e.hash,
  });
}
