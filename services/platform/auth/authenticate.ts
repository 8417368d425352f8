// The authentication request hook: runs before every call of every served
// service on both transports (health and reflection stay open), turns the
// call's credentials into the Principal handlers read with `principalOf`, or
// refuses the call with UNAUTHENTICATED before any handler runs.
//
// Credentials, first found wins: `authorization: Bearer <JWT>` (verified, see
// jwt.ts), then a verified mTLS client certificate mapped by the policy's
// client_certificates. In the insecure development mode only, unsigned tokens
// are read without verification and a call with no credentials gets the
// development identity (x-deltamesh-subject/-tenant/-roles/-attributes
// headers override its parts).
import { decodeJwt, decodeProtectedHeader, type JWTPayload } from "jose";
import type { Policy } from "../../access/policy.js";
import { DEFAULT_TENANT } from "../../records/model.js";
import type { DomainError } from "../errors.js";
import { principalKey, type Principal } from "../principal.js";
import { peerKey } from "../transport/peer.js";
import type { RequestHook } from "../transport/wrap.js";
import { principalFromCertificate, principalFromClaims, DEFAULT_CLAIM_MAPPING } from "./identity.js";
import { createJwtVerifier, unauthenticated, type AuthLogger, type JwtVerifier } from "./jwt.js";
import type { AuthSettings } from "./settings.js";

export interface AuthFailure {
  reason: string;
  rpc: string;
  peer: string;
}

export interface AuthenticatorOptions {
  settings: AuthSettings;
  /** Development mode: unsigned tokens and the default development identity are accepted. */
  insecureDev: boolean;
  /** The current policy (client certificate mappings live there). */
  policy: () => Policy;
  log: AuthLogger;
  /** Told of every refused call (for the audit log). */
  onFailure?: (f: AuthFailure) => void;
}

export interface Authenticator {
  readonly hook: RequestHook;
  /** Whether bearer tokens are verified (issuer, audience and keys configured). */
  readonly verifiesTokens: boolean;
  close(): void;
}

export const DEV_SUBJECT = "dev";

export async function createAuthenticator(o: AuthenticatorOptions): Promise<Authenticator> {
  const verifier: JwtVerifier | null = o.settings.jwt ? await createJwtVerifier(o.settings.jwt, o.log) : null;
  const mapping = o.settings.jwt ?? DEFAULT_CLAIM_MAPPING;

  const fromToken = async (token: string): Promise<Principal> => {
    if (o.insecureDev && (isUnsigned(token) || !verifier)) return principalFromClaims(decodeUnverified(token), mapping);
    if (!verifier) {
      throw unauthenticated("BEARER_NOT_ACCEPTED", "this node verifies no bearer tokens (no issuer configured): authenticate with a client certificate");
    }
    return principalFromClaims(await verifier.verify(token), mapping);
  };

  const devIdentity = (h: Headers): Principal => ({
    subject: h.get("x-deltamesh-subject") || DEV_SUBJECT,
    tenant: h.get("x-deltamesh-tenant") || DEFAULT_TENANT,
    roles: splitList(h.get("x-deltamesh-roles")) ?? [...o.settings.devRoles],
    attributes: parseDevAttributes(h.get("x-deltamesh-attributes")),
  });

  const hook: RequestHook = async (ctx) => {
    const peer = ctx.values.get(peerKey);
    try {
      const authorization = ctx.requestHeader.get("authorization");
      let principal: Principal;
      if (authorization !== null) {
        const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(authorization);
        if (!m) throw unauthenticated("CREDENTIALS_MALFORMED", 'the authorization header must read "Bearer <token>"');
        principal = await fromToken(m[1]!);
      } else if (peer?.clientCertificate) {
        const p = principalFromCertificate(peer.clientCertificate, o.policy().certificates);
        if (!p) throw unauthenticated("CERTIFICATE_NOT_MAPPED", "the client certificate is valid but maps to no principal (policies.client_certificates)");
        principal = p;
      } else if (o.insecureDev) {
        principal = devIdentity(ctx.requestHeader);
      } else {
        throw unauthenticated("CREDENTIALS_MISSING", "this call needs credentials: send the header authorization: Bearer <token>, or a client certificate");
      }
      ctx.values.set(principalKey, principal);
    } catch (e) {
      const reason = (e as DomainError).reason ?? "UNAUTHENTICATED";
      o.onFailure?.({ reason, rpc: `/${ctx.service.typeName}/${ctx.method.name}`, peer: peer?.address ?? "" });
      throw e;
    }
  };

  return {
    hook,
    verifiesTokens: verifier !== null,
    close: () => verifier?.close(),
  };
}

function isUnsigned(token: string): boolean {
  try {
    return decodeProtectedHeader(token).alg === "none";
  } catch {
    return false;
  }
}

function decodeUnverified(token: string): JWTPayload {
  try {
    return decodeJwt(token);
  } catch {
    throw unauthenticated("TOKEN_MALFORMED", "the bearer token is not a JWT");
  }
}

function splitList(v: string | null): string[] | undefined {
  if (v === null) return undefined;
  return v
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * `regions=[east_china]; device_class=mobile` (development headers only): a
 * value in brackets or with commas is a list, any other a string.
 */
export function parseDevAttributes(v: string | null): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const part of (v ?? "").split(";")) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    if (eq <= 0 || !name) continue;
    const raw = part.slice(eq + 1).trim();
    const bracketed = raw.startsWith("[") && raw.endsWith("]");
    out[name] = bracketed || raw.includes(",") ? (splitList(bracketed ? raw.slice(1, -1) : raw) ?? []) : raw;
  }
  return out;
}
