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

export interface ScannedPage<T> {
  items: T[];
  /** Position to continue from (exclusive); null when the source is exhausted. */
  next: string | null;
}

/**
 * One page of the items `keep` admits, read from a keyset-paged source in
 * chunks. Scans at most `budget` rows (default 10 pages' worth, at least
 * 1000), so a caller who may see few rows gets short (even empty) pages with
 * a token to go on, never an unbounded scan. `next` is null only when the
 * source is exhausted.
 */
export async function scanPage<T>(
  fetch: (after: string, limit: number) => Promise<T[]>,
  keyOf: (item: T) => string,
  keep: (item: T) => boolean,
  after: string,
  limit: number,
  budget = Math.max(limit * 10, 1000),
): Promise<ScannedPage<T>> {
  const items: T[] = [];
  let cursor = after;
  let scanned = 0;
  for (;;) {
    const chunk = limit + 1;
    const rows = await fetch(cursor, chunk);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      cursor = keyOf(row);
      scanned++;
      if (keep(row)) items.push(row);
      if (items.length === limit) {
        const more = i < rows.length - 1 || rows.length === chunk;
        return { items, next: more ? cursor : null };
      }
    }
    if (rows.length < chunk) return { items, next: null };
    if (scanned >= budget) return { items, next: cursor };
  }
}
