// The access policy model: roles grant actions on collections, limited to the
// rows a scope expression admits and to listed fields, with masks by device
// class. Built (validated and compiled) from the `policies` config section by
// ./policy-load.ts; evaluated by ./engine.ts. Deny by default: a principal
// may do only what some grant of one of its roles allows.
import type { MaskName, SchemaSet } from "../schema/types.js";
import type { Scope } from "./scope.js";

export const ACTIONS = ["read", "write", "delete", "export", "resolve_conflicts", "admin"] as const;
export type Action = (typeof ACTIONS)[number];

/** Field lists and collection lists may say "every one" with this. */
export const ALL = "*";

export interface Grant {
  /** Where it is in the policy, for explanations and errors: `roles.sales.grants[0]`. */
  readonly id: string;
  readonly role: string;
  readonly index: number;
  readonly description: string;
  readonly collections: ReadonlySet<string> | typeof ALL;
  readonly actions: ReadonlySet<Action>;
  /** Null: every row of the tenant. */
  readonly scope: Scope | null;
  readonly readFields: ReadonlySet<string> | typeof ALL;
  readonly writeFields: ReadonlySet<string> | typeof ALL;
  /** Field (or "*") -> mask, for every device class. */
  readonly masks: ReadonlyMap<string, MaskName>;
  /** Device class -> field (or "*") -> mask, overriding `masks`. */
  readonly deviceMasks: ReadonlyMap<string, ReadonlyMap<string, MaskName>>;
}

export interface Role {
  readonly name: string;
  readonly description: string;
  readonly grants: readonly Grant[];
}

/** How the subject of a client certificate maps to a principal (mTLS). */
export interface CertificatePrincipal {
  /** Every given part must equal the certificate's. */
  readonly match: { readonly cn?: string; readonly o?: string; readonly ou?: string; readonly fingerprint256?: string };
  readonly subject: string;
  readonly tenant: string;
  readonly roles: readonly string[];
  readonly attributes: Readonly<Record<string, string | string[]>>;
}

export interface Policy {
  /** The config revision it was loaded from: views of different revisions never share a key. */
  readonly revision: string;
  readonly schemas: SchemaSet;
  readonly roles: ReadonlyMap<string, Role>;
  /** Device classes the policy knows (`device_masks` keys must be among them). */
  readonly deviceClasses: readonly string[];
  readonly certificates: readonly CertificatePrincipal[];
}

export function grantCovers(g: Grant, collection: string, action: Action): boolean {
  return g.actions.has(action) && (g.collections === ALL || g.collections.has(collection));
}

export function fieldListed(list: ReadonlySet<string> | typeof ALL, field: string): boolean {
  return list === ALL || list.has(field);
}

/** The mask a grant shows a field with on a device class; `defaultMask` is the schema's. */
export function grantMask(g: Grant, field: string, deviceClass: string, defaultMask: MaskName): MaskName {
  const device = g.deviceMasks.get(deviceClass);
  return device?.get(field) ?? device?.get(ALL) ?? g.masks.get(field) ?? g.masks.get(ALL) ?? defaultMask;
}

/** How much a mask hides: when several grants show a field, the one hiding least wins. */
export const MASK_RANK: Readonly<Record<MaskName, number>> = { none: 0, phone: 1, email: 1, id_number: 1, hash: 2, redact: 3 };
