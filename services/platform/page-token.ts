// Page tokens: opaque to clients, bound to the query they continue, so a
// token replayed against a different query is refused rather than misread.
// Sealed (AES-256-GCM under a key every node of a cluster shares): a client
// can neither read where a page ends (which may be a row it may not see,
// when the scan budget ran out on one) nor forge a position. Each RPC still
// checks the position it decodes, so a bad token is INVALID_ARGUMENT, never
// a database error.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
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

/** HKDF label of the page-token key: a key of its own, even when derived from a secret used elsewhere (hash masks). */
export const PAGE_TOKEN_KEY_LABEL = "deltamesh page tokens v1";
/** First byte of a sealed token: its format. */
const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** Reads a token's position into what its RPC pages by; undefined when the text is not a position it could have issued. */
export type PositionParser<T> = (after: string) => T | undefined;

/** Seals and opens page tokens under one key (derived from `secret` with {@link PAGE_TOKEN_KEY_LABEL}). */
export class PageTokens {
  private readonly key: Buffer;

  constructor(secret: Uint8Array) {
    if (secret.length === 0) throw new Error("the page-token secret is empty");
    this.key = Buffer.from(hkdfSync("sha256", secret, new Uint8Array(0), PAGE_TOKEN_KEY_LABEL, 32));
  }

  /** A token continuing `query` after `after`. */
  encode(query: unknown, after: string): string {
    const body: TokenBody = { q: queryFingerprint(query), after };
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, nonce);
    cipher.setAAD(Uint8Array.of(VERSION));
    const sealed = Buffer.concat([cipher.update(JSON.stringify(body), "utf8"), cipher.final()]);
    return Buffer.concat([Uint8Array.of(VERSION), nonce, sealed, cipher.getAuthTag()]).toString("base64url");
  }

  /**
   * The position a token continues `query` from, read by `parse`; undefined
   * for no token. A token this cluster did not issue (tampered, made up, from
   * another deployment) or holding a position `parse` refuses is
   * INVALID_ARGUMENT (INVALID_PAGE_TOKEN); one issued for another query is
   * INVALID_ARGUMENT (PAGE_TOKEN_MISMATCH).
   */
  decode<T>(token: string, query: unknown, parse: PositionParser<T>, field = "page_token"): T | undefined {
    if (!token) return undefined;
    const body = this.open(token);
    if (typeof body?.after !== "string" || typeof body.q !== "string") throw malformed(field);
    if (body.q !== queryFingerprint(query)) {
      throw invalidArgument(`${field} belongs to a different query`, [
        { field, description: "send the same collection and filters as the request that returned the token", reason: "PAGE_TOKEN_MISMATCH" },
      ]);
    }
    const position = parse(body.after);
    if (position === undefined) throw malformed(field);
    return position;
  }

  private open(token: string): Partial<TokenBody> | undefined {
    const raw = /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, "base64url") : Buffer.alloc(0);
    if (raw.length < 1 + NONCE_BYTES + TAG_BYTES || raw[0] !== VERSION) return undefined;
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(1, 1 + NONCE_BYTES));
      decipher.setAAD(raw.subarray(0, 1));
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      const text = Buffer.concat([decipher.update(raw.subarray(1 + NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString("utf8");
      const body: unknown = JSON.parse(text);
      return typeof body === "object" && body !== null ? (body as Partial<TokenBody>) : undefined;
    } catch {
      return undefined;
    }
  }
}

function malformed(field: string) {
  return invalidArgument(`${field} is malformed`, [{ field, description: "not a page token issued by this API", reason: "INVALID_PAGE_TOKEN" }]);
}

const INT64_MAX = (1n << 63n) - 1n;

/** Positions of a token's `after`, by what an RPC pages by. */
export const positions = {
  /** A log sequence number: a positive decimal int64 (at most `max`). */
  seq(max: bigint = INT64_MAX): PositionParser<bigint> {
    return (after) => {
      if (!/^[1-9][0-9]{0,18}$/.test(after)) return undefined;
      const n = BigInt(after);
      return n <= max ? n : undefined;
    };
  },
  /** A key the database stores as text (a record id): no NUL, which PostgreSQL text cannot hold. */
  text: ((after) => (after.length > 0 && !after.includes("\u0000") ? after : undefined)) as PositionParser<string>,
  /** A `[time, id]` keyset position (JSON): an ISO 8601 UTC time from year 1 to 9999 (as toISOString writes it) and a text id. */
  timeAndId: ((after) => {
    let pair: unknown;
    try {
      pair = JSON.parse(after);
    } catch {
      return undefined;
    }
    if (!Array.isArray(pair) || pair.length !== 2) return undefined;
    const [time, id] = pair as unknown[];
    if (typeof time !== "string" || typeof id !== "string" || positions.text(id) === undefined) return undefined;
    const date = /^(?!0000)\d{4}-/.test(time) ? new Date(time) : new Date(NaN);
    if (Number.isNaN(date.getTime()) || date.toISOString() !== time) return undefined;
    return { time: date, id };
  }) as PositionParser<{ time: Date; id: string }>,
};

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
