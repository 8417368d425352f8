// Page tokens: opaque to clients, bound to the query they continue, so a
// token replayed against a different query is refused rather than misread.
import { createHash } from "node:crypto";
import { invalidArgument } from "./errors.js";

interface TokenBody {
  /** Hash of the query the token belongs to. */
  q: string;
  /** Where the next page starts (exclusive). */
  after: string;
}

export function queryFingerprint(query: unknown): string {
  return createHash("sha256").update(JSON.stringify(query)).digest("base64url").slice(0, 16);
}

export function encodePageToken(query: unknown, after: string): string {
  const body: TokenBody = { q: queryFingerprint(query), after };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

/** The position a token continues from ("" for no token). */
export function decodePageToken(token: string, query: unknown, field = "page_token"): string {
  if (!token) return "";
  let body: Partial<TokenBody> | undefined;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Partial<TokenBody>;
  } catch {
    body = undefined;
  }
  if (typeof body?.after !== "string" || typeof body.q !== "string") {
    throw invalidArgument(`${field} is malformed`, [{ field, description: "not a page token issued by this API", reason: "INVALID_PAGE_TOKEN" }]);
  }
  if (body.q !== queryFingerprint(query)) {
    throw invalidArgument(`${field} belongs to a different query`, [
      { field, description: "send the same collection and filters as the request that returned the token", reason: "PAGE_TOKEN_MISMATCH" },
    ]);
  }
  return body.after;
}

export function pageSize(requested: number, field = "page_size", defaultSize = 100, max = 1000): number {
  if (requested < 0) throw invalidArgument(`${field} must not be negative`, [{ field, description: "must be >= 0", reason: "OUT_OF_RANGE" }]);
  return requested === 0 ? defaultSize : Math.min(requested, max);
}
