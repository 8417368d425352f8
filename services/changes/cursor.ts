// Change-log cursors: opaque to clients, they name a position (the last
// change seen) in the change log of one particular database.
import { DomainError } from "../platform/errors.js";

const PREFIX = "c1_";

export interface Cursor {
  /** The `database_id` of the database whose log this position belongs to. */
  databaseId: string;
  /** The last change seen; 0 = before the first change. */
  seq: bigint;
}

export function encodeCursor(c: Cursor): string {
  const id = Buffer.from(c.databaseId.replaceAll("-", ""), "hex");
  const seq = Buffer.alloc(8);
  seq.writeBigUInt64BE(c.seq);
  return PREFIX + Buffer.concat([id, seq]).toString("base64url");
}

/**
 * `encodeCursor` for one database, for the hot paths (every event carries a
 * cursor): the first 15 of the 24 bytes are the database's, so their 20
 * base64url characters are computed once, and only the last 9 bytes (the
 * id's last byte and the seq) are encoded per call.
 */
export function cursorEncoder(databaseId: string): (seq: bigint) => string {
  const id = Buffer.from(databaseId.replaceAll("-", ""), "hex");
  const head = PREFIX + id.subarray(0, 15).toString("base64url");
  const tail = Buffer.alloc(9);
  tail[0] = id[15]!;
  return (seq) => {
    tail.writeBigUInt64BE(seq, 1);
    return head + tail.toString("base64url");
  };
}

export function decodeCursor(text: string, field = "cursor"): Cursor {
  const bad = (why: string) =>
    new DomainError("invalid_argument", `${field} is not a deltamesh cursor: ${why}`, {
      reason: "INVALID_CURSOR",
      violations: [{ field, description: why, reason: "INVALID_CURSOR" }],
    });
  if (!text.startsWith(PREFIX)) throw bad(`expected a value starting with "${PREFIX}"`);
  const raw = Buffer.from(text.slice(PREFIX.length), "base64url");
  if (raw.length !== 24) throw bad("wrong length");
  const hex = raw.subarray(0, 16).toString("hex");
  const databaseId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { databaseId, seq: raw.readBigUInt64BE(16) };
}

/**
 * Orders two cursors of the same database (negative: `a` is earlier). For
 * clients of this repository (clients/typescript) that must wait until their
 * copy reaches a position, e.g. a digest's.
 */
export function compareCursors(a: string, b: string): number {
  const x = decodeCursor(a).seq;
  const y = decodeCursor(b).seq;
  return x < y ? -1 : x > y ? 1 : 0;
}
