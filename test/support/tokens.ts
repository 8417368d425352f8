// Signed test tokens: a key pair made per test run, its public half served to
// test nodes as their JWKS, and a synchronous ES256 JWT signer (node:crypto,
// so the node's jose verification is checked against an independent signer).
import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";

export const TEST_ISSUER = "https://issuer.deltamesh.test";
export const TEST_AUDIENCE = "deltamesh-test";
export const TEST_KID = "test-key-1";

export interface TestKey {
  kid: string;
  privateKey: KeyObject;
  /** The public JWK (with kid, alg, use). */
  jwk: Record<string, unknown>;
}

export function newTestKey(kid: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { kid, privateKey, jwk: { ...publicKey.export({ format: "jwk" }), kid, alg: "ES256", use: "sig" } };
}

export const testKey = newTestKey(TEST_KID);
export const testJwks = { keys: [testKey.jwk] };

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");

export interface TokenOptions {
  key?: TestKey;
  /** Header overrides (alg, kid, ...). */
  header?: Record<string, unknown>;
  /** Seconds from now; default 3600. */
  expiresIn?: number;
  /** Seconds from now. */
  notBefore?: number;
}

/** A JWT with standard claims (iss, aud, iat, exp) around `claims`, signed ES256. */
export function signTestToken(claims: Record<string, unknown>, o: TokenOptions = {}): string {
  const key = o.key ?? testKey;
  const now = Math.floor(Date.now() / 1000);
  const payload = {
    iss: TEST_ISSUER,
    aud: TEST_AUDIENCE,
    iat: now,
    exp: now + (o.expiresIn ?? 3600),
    ...(o.notBefore !== undefined ? { nbf: now + o.notBefore } : {}),
    ...claims,
  };
  const signingInput = `${b64({ alg: "ES256", typ: "JWT", kid: key.kid, ...o.header })}.${b64(payload)}`;
  const signature = sign("sha256", Buffer.from(signingInput), { key: key.privateKey, dsaEncoding: "ieee-p1363" });
  return `${signingInput}.${signature.toString("base64url")}`;
}

/** An unsigned (`alg: none`) token. */
export function unsignedToken(claims: Record<string, unknown>): string {
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: TEST_ISSUER, aud: TEST_AUDIENCE, exp: now + 3600, ...claims })}.`;
}
