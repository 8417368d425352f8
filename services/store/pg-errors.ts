// Translation of PostgreSQL driver errors. Raw driver text never reaches a
// client: callers see a DomainError with a stable reason, and the original
// error stays attached as `cause` for the server log.
import { DomainError } from "../platform/errors.js";

interface PgErrorLike {
  code?: string;
  constraint?: string;
}

function pgCode(e: unknown): string | undefined {
  return typeof e === "object" && e !== null ? (e as PgErrorLike).code : undefined;
}

/** Serialization failure, deadlock, unique violation: worth retrying the transaction alone. */
export function isRetryableConflict(e: unknown): boolean {
  const code = pgCode(e);
  return code === "40001" || code === "40P01" || code === "23505";
}

export function isUniqueViolation(e: unknown, constraint?: string): boolean {
  return pgCode(e) === "23505" && (constraint === undefined || (e as PgErrorLike).constraint === constraint);
}

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "57P01", "57P02", "57P03", "08000", "08003", "08006"]);

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
  return new DomainError("internal", "internal storage error", { reason: "STORAGE_ERROR", cause: e });
}
