// Authentication and masking settings of a node, from flags then DELTAMESH_*
// environment variables. Bearer tokens are verified only when issuer,
// audience and keys are all configured; a half-configured verifier is an
// error at start, never a silently open door.
import type { JSONWebKeySet } from "jose";
import { parseJwks } from "./jwt.js";

export interface JwtSettings {
  /** Accepted `iss`. */
  issuer: string;
  /** Accepted `aud` values (a token must name one of them). */
  audience: string[];
  /** A JWKS file, re-read when it changes (key rotation without restart). */
  jwksFile?: string;
  /** Keys given inline (DELTAMESH_JWT_JWKS), when there is no file. */
  jwks?: JSONWebKeySet;
  /** Allow-listed signature algorithms. `none` is never accepted. */
  algorithms: string[];
  /** Leeway for exp/nbf, seconds. */
  clockToleranceSec: number;
  /** Claim holding the tenant (absent in a token: the default tenant). */
  tenantClaim: string;
  /** Claim holding the roles: a list or a space-separated string; dotted paths reach nested claims (`realm_access.roles`). */
  rolesClaim: string;
  /** Top-level claims copied into the principal's attributes (besides the `attributes` object claim). */
  attributeClaims: string[];
}

export interface AuthSettings {
  jwt?: JwtSettings;
  /** Secret keying `hash` masks (per tenant). Absent: a random per-process key (not stable; logged loudly). */
  maskHashKey?: string;
  /** Roles of the identity a development node gives calls that carry none. */
  devRoles: string[];
  /** How long denied-attempt and unmasked-read audit entries wait to be written in one batch. */
  auditFlushMs: number;
}

export type AuthSettingsInput = Partial<Omit<AuthSettings, "jwt">> & { jwt?: Partial<JwtSettings> };

export const DEFAULT_JWT_ALGORITHMS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"];
export const DEFAULT_ATTRIBUTE_CLAIMS = ["region", "regions", "department", "device_class", "device_id"];

const env = (name: string): string | undefined => {
  const v = process.env[`DELTAMESH_${name}`];
  return v === undefined || v === "" ? undefined : v;
};
const list = (v: string | undefined): string[] | undefined =>
  v === undefined
    ? undefined
    : v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);

export function resolveAuthSettings(input: AuthSettingsInput = {}): AuthSettings {
  const j = input.jwt ?? {};
  const issuer = j.issuer ?? env("JWT_ISSUER");
  const audience = j.audience ?? list(env("JWT_AUDIENCE"));
  const jwksFile = j.jwksFile ?? env("JWT_JWKS_FILE");
  const inline = env("JWT_JWKS");
  const jwks = j.jwks ?? (inline ? parseJwks(inline, "DELTAMESH_JWT_JWKS") : undefined);
  const any = issuer !== undefined || audience !== undefined || jwksFile !== undefined || jwks !== undefined;
  let jwt: JwtSettings | undefined;
  if (any) {
    const missing = [
      ...(issuer ? [] : ["DELTAMESH_JWT_ISSUER"]),
      ...(audience?.length ? [] : ["DELTAMESH_JWT_AUDIENCE"]),
      ...(jwksFile || jwks ? [] : ["DELTAMESH_JWT_JWKS_FILE (or DELTAMESH_JWT_JWKS)"]),
    ];
    if (missing.length > 0) throw new Error(`bearer-token authentication is half configured: also set ${missing.join(", ")}`);
    const algorithms = j.algorithms ?? list(env("JWT_ALGORITHMS")) ?? DEFAULT_JWT_ALGORITHMS;
    if (algorithms.length === 0 || algorithms.some((a) => a.toLowerCase() === "none")) {
      throw new Error(`DELTAMESH_JWT_ALGORITHMS must list signature algorithms (e.g. RS256,ES256); "none" is never accepted`);
    }
    const tolerance = j.clockToleranceSec ?? Number(env("JWT_CLOCK_TOLERANCE_S") ?? 30);
    if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > 600) throw new Error("DELTAMESH_JWT_CLOCK_TOLERANCE_S must be 0-600 seconds");
    jwt = {
      issuer: issuer!,
      audience: audience!,
      jwksFile,
      jwks,
      algorithms,
      clockToleranceSec: tolerance,
      tenantClaim: j.tenantClaim ?? env("JWT_TENANT_CLAIM") ?? "tenant",
      rolesClaim: j.rolesClaim ?? env("JWT_ROLES_CLAIM") ?? "roles",
      attributeClaims: j.attributeClaims ?? list(env("JWT_ATTRIBUTE_CLAIMS")) ?? DEFAULT_ATTRIBUTE_CLAIMS,
    };
  }
  const auditFlushMs = input.auditFlushMs ?? Number(env("AUDIT_FLUSH_MS") ?? 200);
  if (!Number.isInteger(auditFlushMs) || auditFlushMs < 1) throw new Error("DELTAMESH_AUDIT_FLUSH_MS must be a positive integer");
  return {
    jwt,
    maskHashKey: input.maskHashKey ?? env("MASK_HASH_KEY"),
    devRoles: input.devRoles ?? list(env("DEV_ROLES")) ?? ["admin"],
    auditFlushMs,
  };
}
