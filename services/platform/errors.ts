// Domain errors: the one error type every service throws. Transport adapters
// turn it into a gRPC status with structured details (see error-mapping.ts);
// anything that is not a DomainError is reported to clients as INTERNAL with
// no driver text, so raw database or etcd errors never leak.

/** The gRPC status a domain error maps to, in domain words. */
export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "aborted"
  | "failed_precondition"
  | "resource_exhausted"
  | "permission_denied"
  | "unauthenticated"
  | "unavailable"
  | "deadline_exceeded"
  | "internal";

/** One bad field of a request: where it is and why it is wrong. */
export interface FieldViolation {
  /** A path into the request, e.g. `mutations[2].set.phone`. */
  field: string;
  description: string;
  /** A stable machine-readable code such as `WRONG_TYPE` or `PHONE_INVALID`. */
  reason?: string;
}

/** The error-detail domain shared by every deltamesh error. */
export const ERROR_DOMAIN = "deltamesh.dev";

export interface DomainErrorInit {
  /** Stable UPPER_SNAKE reason, e.g. `VERSION_MISMATCH`, sent as google.rpc.ErrorInfo. */
  reason: string;
  /** Small string facts about the failure (ids, versions); never field values. */
  metadata?: Record<string, string>;
  violations?: FieldViolation[];
  /** The missing or conflicting resource, sent as google.rpc.ResourceInfo. */
  resource?: { type: string; name: string; owner?: string };
  cause?: unknown;
}

export class DomainError extends Error {
  override readonly name = "DomainError";
  readonly kind: ErrorKind;
  readonly reason: string;
  readonly metadata: Record<string, string>;
  readonly violations: FieldViolation[];
  readonly resource: DomainErrorInit["resource"];

  constructor(kind: ErrorKind, message: string, init: DomainErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.kind = kind;
    this.reason = init.reason;
    this.metadata = init.metadata ?? {};
    this.violations = init.violations ?? [];
    this.resource = init.resource;
  }

  /** A copy whose violation paths and metadata say which item of a batch failed. */
  withPrefix(prefix: string, metadata: Record<string, string> = {}): DomainError {
    return new DomainError(this.kind, this.message, {
      reason: this.reason,
      metadata: { ...this.metadata, ...metadata },
      violations: this.violations.map((v) => ({ ...v, field: `${prefix}${v.field ? "." + v.field : ""}` })),
      resource: this.resource,
      cause: this.cause,
    });
  }
}

/**
 * The error of a request that is one item of a batch under the hood (a
 * DeleteRecord is one mutation of a write): paths and facts name the
 * request's own fields, not the batch's.
 */
export function asSingleItem(e: DomainError, prefix: string, indexKey: string): DomainError {
  const strip = (field: string) => (field === prefix ? "" : field.startsWith(`${prefix}.`) ? field.slice(prefix.length + 1) : field);
  const { [indexKey]: _index, ...metadata } = e.metadata;
  return new DomainError(e.kind, e.message.replaceAll(`${prefix}.`, ""), {
    reason: e.reason,
    metadata,
    violations: e.violations.map((v) => ({ ...v, field: strip(v.field) })),
    resource: e.resource,
    cause: e.cause,
  });
}

export function invalidArgument(message: string, violations: FieldViolation[], reason = "INVALID_ARGUMENT"): DomainError {
  return new DomainError("invalid_argument", message, { reason, violations });
}

/**
 * Request bytes that do not decode as the method's request message. Both
 * transports answer them with this before any handler runs (grpc-server.ts
 * decodeInput, malformed-request.ts).
 */
export function malformedRequest(messageType: string): DomainError {
  return new DomainError(
    "invalid_argument",
    `malformed request: the body is not a valid ${messageType} (e.g. a string field that is not UTF-8, or a truncated or mistyped field); send messages encoded by code generated from deltamesh's .proto files`,
    { reason: "MALFORMED_REQUEST", metadata: { message_type: messageType } },
  );
}

export function notFound(type: string, name: string, message?: string, reason = "NOT_FOUND"): DomainError {
  return new DomainError("not_found", message ?? `${type} ${JSON.stringify(name)} not found`, {
    reason,
    resource: { type, name },
    metadata: { [type]: name },
  });
}

export function isDomainError(e: unknown): e is DomainError {
  return e instanceof DomainError;
}

/** The same error carrying `cause` (kept server-side, e.g. facts for the audit log; never sent to clients). */
export function withCause(e: DomainError, cause: unknown): DomainError {
  return new DomainError(e.kind, e.message, { reason: e.reason, metadata: e.metadata, violations: e.violations, resource: e.resource, cause });
}
