// Who a verified credential names: token claims or a client certificate's
// subject, mapped to a Principal. Pure.
import type { PeerCertificate } from "node:tls";
import type { CertificatePrincipal } from "../../access/policy.js";
import { DEFAULT_TENANT } from "../../records/model.js";
import type { Principal } from "../principal.js";
import { unauthenticated } from "./jwt.js";
import { DEFAULT_ATTRIBUTE_CLAIMS } from "./settings.js";

export interface ClaimMapping {
  tenantClaim: string;
  rolesClaim: string;
  attributeClaims: readonly string[];
}

export const DEFAULT_CLAIM_MAPPING: ClaimMapping = { tenantClaim: "tenant", rolesClaim: "roles", attributeClaims: DEFAULT_ATTRIBUTE_CLAIMS };

/** Principal keys an attribute may not shadow. */
const RESERVED = new Set(["sub", "tenant", "roles"]);

/** `a.b.c` in nested claims. */
function claimAt(claims: Record<string, unknown>, path: string): unknown {
  let v: unknown = claims;
  for (const part of path.split(".")) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

function attributeValue(v: unknown): string | string[] | undefined {
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return [...(v as string[])];
  return undefined;
}

/**
 * The principal a token's (verified) claims name: `sub`, the tenant claim
 * (absent: the default tenant), the roles claim (a list, or a space-separated
 * string), and attributes from the `attributes` object claim and the listed
 * top-level claims; values other than strings and string lists are ignored.
 * @throws DomainError unauthenticated when `sub` or the tenant is not a non-empty string.
 */
export function principalFromClaims(claims: Record<string, unknown>, m: ClaimMapping = DEFAULT_CLAIM_MAPPING): Principal {
  const sub = claims["sub"];
  if (typeof sub !== "string" || sub === "") throw unauthenticated("TOKEN_CLAIMS_INVALID", "the bearer token has no subject (sub)");
  const tenant = claimAt(claims, m.tenantClaim) ?? DEFAULT_TENANT;
  if (typeof tenant !== "string" || tenant === "") throw unauthenticated("TOKEN_CLAIMS_INVALID", `the bearer token's ${m.tenantClaim} claim must be a tenant name`);
  const rawRoles = claimAt(claims, m.rolesClaim);
  const roles =
    typeof rawRoles === "string"
      ? rawRoles.split(/\s+/).filter(Boolean)
      : Array.isArray(rawRoles)
        ? rawRoles.filter((r): r is string => typeof r === "string" && r !== "")
        : [];
  const attributes: Record<string, string | string[]> = {};
  const nested = claims["attributes"];
  if (typeof nested === "object" && nested !== null && !Array.isArray(nested)) {
    for (const [k, v] of Object.entries(nested)) {
      const a = attributeValue(v);
      if (a !== undefined && !RESERVED.has(k)) attributes[k] = a;
    }
  }
  for (const name of m.attributeClaims) {
    const a = attributeValue(claims[name]);
    if (a !== undefined && !RESERVED.has(name)) attributes[name] = a;
  }
  const exp = claims["exp"];
  return { subject: sub, tenant, roles: [...new Set(roles)], attributes, ...(typeof exp === "number" ? { expiresAtMs: exp * 1000 } : {}) };
}

function subjectPart(cert: PeerCertificate, key: "CN" | "O" | "OU"): string | undefined {
  const v = (cert.subject as unknown as Record<string, string | string[] | undefined> | undefined)?.[key];
  return Array.isArray(v) ? v[0] : v;
}

/** The first mapping whose every given part equals the certificate's, or null. */
export function principalFromCertificate(cert: PeerCertificate, mappings: readonly CertificatePrincipal[]): Principal | null {
  const cn = subjectPart(cert, "CN");
  const o = subjectPart(cert, "O");
  const ou = subjectPart(cert, "OU");
  const fp = cert.fingerprint256?.toUpperCase();
  for (const m of mappings) {
    const x = m.match;
    if (x.cn !== undefined && x.cn !== cn) continue;
    if (x.o !== undefined && x.o !== o) continue;
    if (x.ou !== undefined && x.ou !== ou) continue;
    if (x.fingerprint256 !== undefined && x.fingerprint256 !== fp) continue;
    return { subject: m.subject, tenant: m.tenant, roles: [...m.roles], attributes: structuredClone(m.attributes) };
  }
  return null;
}
