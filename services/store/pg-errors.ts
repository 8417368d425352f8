// Translation of PostgreSQL driver errors. Raw driver text never reaches a
// client: callers see a DomainError with a stable reason, and the original
// error stays attached as `cause` for the server log.
import pg from "pg";
import { DomainError } from "../platform/errors.js";

interface PgErrorLike {
  code?: string;
  constraint?: string;
  hint?: string;
}

function pgCode(e: unknown): string | undefined {
  return typeof e === "object" && e !== null ? (e as PgErrorLike).code : undefined;
}

/** Serialization failure, deadlock, unique violation: worth retrying the transaction alone. */
export function isRetryableConflict(e: unknown): boolean {
  const code = pgCode(e);
  return code === "40001" || code === "40P01" || code === "23505";
}

/** The hint migration 0012's write raises its serialization failure with. */
const STALE_READ_HINT = "deltamesh: stale read";

/**
 * A batch merged from a record this node kept (./record-cache.ts) that
 * another writer had changed since: retry the batch as it is, which then
 * reads its records under lock.
 */
export function isStaleRead(e: unknown): boolean {
  return pgCode(e) === "40001" && (e as PgErrorLike).hint === STALE_READ_HINT;
}

export function isUniqueViolation(e: unknown, constraint?: string): boolean {
  return pgCode(e) === "23505" && (constraint === undefined || (e as PgErrorLike).constraint === constraint);
}

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "57P01", "57P02", "57P03", "08000", "08003", "08006"]);

const UNSTORABLE_TEXT = {
  reason: "UNSTORABLE_TEXT",
  message: "the request contains text the database cannot store (a NUL character, or a character outside Unicode); remove it",
};
const VALUE_OUT_OF_RANGE = {
  reason: "VALUE_OUT_OF_RANGE",
  message: "a value in the request is out of the range or form the database can store",
};

/**
 * Data exceptions (SQLSTATE class 22) that only a request's own values cause,
 * when a handler's checks missed one: INVALID_ARGUMENT naming no field (the
 * database does not say which), never the database's text. The rest of
 * class 22 (division by zero, bad regular expressions, ...) stays INTERNAL:
 * those are the server's own queries going wrong.
 */
const REFUSED_INPUT: ReadonlyMap<string, { reason: string; message: string }> = new Map([
  ["22021", UNSTORABLE_TEXT], // character_not_in_repertoire: NUL in text
  ["22P05", UNSTORABLE_TEXT], // untranslatable_character: \u0000 in jsonb ("unsupported Unicode escape sequence")
  ["22001", VALUE_OUT_OF_RANGE], // string_data_right_truncation
  ["22003", VALUE_OUT_OF_RANGE], // numeric_value_out_of_range (e.g. beyond bigint)
  ["22008", VALUE_OUT_OF_RANGE], // datetime_field_overflow
  ["22007", VALUE_OUT_OF_RANGE], // invalid_datetime_format
]);

/** Any error from the store, as a DomainError safe to send to a client. */
export function toStoreError(e: unknown): DomainError {
  if (e instanceof DomainError) return e;
  const code = pgCode(e);
  const message = e instanceof Error ? e.message : "";
  if ((code !== undefined && CONNECTION_CODES.has(code)) || /Connection terminated|timeout exceeded when trying to connect/i.test(message)) {
    return new DomainError("unavailable", "the database is unavailable; retry later", { reason: "DATABASE_UNAVAILABLE", cause: e });
  }
  if (code === "40001" || code === "40P01") {
    return new DomainError("aborted", "the write collided with a concurrent one; retry it", { reason: "TRANSACTION_CONFLICT", cause: e });
  }
  const refused = code === undefined ? undefined : REFUSED_INPUT.get(code);
  if (refused) return new DomainError("invalid_argument", refused.message, { reason: refused.reason, cause: e });
  return new DomainError("internal", "internal storage error", { reason: "STORAGE_ERROR", cause: e });
}

/**
 * Whether PostgreSQL answered a statement of the transaction with an error:
 * the transaction then rolled back, even if its COMMIT was already on the
 * wire, so its work may be retried. A lost connection is not such an answer
 * (a COMMIT in flight may have landed).
 */
export function isStatementRefusal(e: unknown): boolean {
  const code = pgCode(e);
  return e instanceof pg.DatabaseError && code !== undefined && !CONNECTION_CODES.has(code);
}
