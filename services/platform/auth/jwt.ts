// Bearer-token verification with jose: signature by a key of the configured
// JWK set (inline or a file re-read on change, so keys rotate without a
// restart), allow-listed algorithms only (never `none`), issuer, audience,
// expiry and not-before. Every refusal is UNAUTHENTICATED with a stable
// reason; the token itself is never echoed or logged.
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload } from "jose";
import { DomainError } from "../errors.js";
import type { JwtSettings } from "./settings.js";

export interface AuthLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface JwtVerifier {
  /** The verified claims. @throws DomainError unauthenticated */
  verify(token: string): Promise<JWTPayload>;
  /** Re-reads the JWKS file now (what a change of the file triggers). */
  reload(): Promise<boolean>;
  close(): void;
}

/** Parses a JWK set document; `origin` names it in errors. */
export function parseJwks(text: string, origin: string): JSONWebKeySet {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${origin} is not JSON: expected a JWK set {"keys": [...]}`);
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== "object" || k === null)) {
    throw new Error(`${origin} must be a JWK set {"keys": [...]}`);
  }
  return parsed as JSONWebKeySet;
}

export function unauthenticated(reason: string, message: string): DomainError {
  return new DomainError("unauthenticated", message, { reason });
}

/** A jose verification failure as the client hears it. */
export function tokenRefusal(e: unknown): DomainError {
  if (e instanceof errors.JWTExpired) return unauthenticated("TOKEN_EXPIRED", "the bearer token has expired: get a new one");
  if (e instanceof errors.JWTClaimValidationFailed) {
    switch (e.claim) {
      case "nbf":
        return unauthenticated("TOKEN_NOT_YET_VALID", "the bearer token is not valid yet (nbf is in the future)");
      case "iss":
        return unauthenticated("TOKEN_ISSUER_REJECTED", "the bearer token was issued by an issuer this service does not accept");
      case "aud":
        return unauthenticated("TOKEN_AUDIENCE_REJECTED", "the bearer token is not meant for this service (aud)");
      default:
        return unauthenticated("TOKEN_CLAIMS_INVALID", `the bearer token's ${e.claim} claim is missing or invalid`);
    }
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return unauthenticated("TOKEN_ALGORITHM_REJECTED", "the bearer token is signed with an algorithm this service does not accept");
  if (e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKSMultipleMatchingKeys) {
    return unauthenticated("TOKEN_KEY_UNKNOWN", "the bearer token is signed with a key this service does not know");
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) return unauthenticated("TOKEN_SIGNATURE_INVALID", "the bearer token's signature does not verify");
  return unauthenticated("TOKEN_MALFORMED", "the bearer token is not a valid signed JWT");
}

export async function createJwtVerifier(s: JwtSettings, log: AuthLogger): Promise<JwtVerifier> {
  const file = s.jwksFile ? resolve(s.jwksFile) : undefined;
  const readKeys = async (): Promise<JSONWebKeySet> => (file ? parseJwks(await readFile(file, "utf8"), file) : s.jwks!);
  let keys = createLocalJWKSet(await readKeys());
  let lastText = "";

  const reload = async (): Promise<boolean> => {
    if (!file) return false;
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      log.warn({ path: file, code: (e as NodeJS.ErrnoException).code }, "JWKS file unreadable; keeping the current keys");
      return false;
    }
    if (text === lastText) return false;
    try {
      keys = createLocalJWKSet(parseJwks(text, file));
      lastText = text;
      log.info({ path: file }, "JWKS reloaded");
      return true;
    } catch (e) {
      log.warn({ path: file, error: e instanceof Error ? e.message : String(e) }, "JWKS file changed but is invalid; keeping the current keys");
      return false;
    }
  };
  if (file) lastText = await readFile(file, "utf8");

  // The directory is watched (not the file) so rename-over saves and
  // Kubernetes secret volume swaps are seen; a token naming an unknown key
  // also triggers a re-read (at most every few seconds), for file systems
  // whose events never arrive.
  let watcher: FSWatcher | null = null;
  let timer: NodeJS.Timeout | null = null;
  if (file) {
    watcher = watch(dirname(file), { persistent: false }, (_event, name) => {
      if (name !== null && name !== basename(file) && !name.startsWith("..")) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void reload(), 50);
      timer.unref();
    });
    watcher.on("error", (err) => log.warn({ err, path: file }, "JWKS watch failed; keys re-read on unknown key ids only"));
  }
  let lastMissReload = 0;

  const options = {
    issuer: s.issuer,
    audience: s.audience,
    algorithms: s.algorithms,
    clockTolerance: s.clockToleranceSec,
    requiredClaims: ["exp", "sub"],
  };
  return {
    async verify(token) {
      try {
        return (await jwtVerify(token, keys, options)).payload;
      } catch (e) {
        if (file && e instanceof errors.JWKSNoMatchingKey && Date.now() - lastMissReload > 5000) {
          lastMissReload = Date.now();
          if (await reload()) {
            try {
              return (await jwtVerify(token, keys, options)).payload;
            } catch (again) {
              throw tokenRefusal(again);
            }
          }
        }
        throw tokenRefusal(e);
      }
    },
    reload,
    close() {
      watcher?.close();
      if (timer) clearTimeout(timer);
    },
  };
}
