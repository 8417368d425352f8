// The one place where errors become wire statuses. Every transport (grpc-js,
// connect-node) sends what `toConnectError` returns, so a DomainError reads the
// same to every client: a gRPC code, its message, and structured details
// (google.rpc.ErrorInfo always; BadRequest and ResourceInfo when they apply).
// Anything that is not a DomainError or ConnectError is a bug or an
// infrastructure failure: it is logged here and the client sees only
// INTERNAL "internal error" — driver or etcd text never leaves the process.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { DomainError, ERROR_DOMAIN, type ErrorKind } from "./errors.js";

/** ErrorKind → gRPC/Connect code. Exhaustive by type: a new kind fails to compile until mapped. */
export const ERROR_KIND_CODES: Readonly<Record<ErrorKind, Code>> = Object.freeze({
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  aborted: Code.Aborted,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  permission_denied: Code.PermissionDenied,
  unauthenticated: Code.Unauthenticated,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
});

/** The message clients see for any error that is not a DomainError/ConnectError. */
export const INTERNAL_ERROR_MESSAGE = "internal error";

/** Anything with a pino-style `error(obj, msg)` (a pino Logger fits). */
export interface ErrorLogger {
  error(obj: object, msg?: string): void;
}

const consoleLogger: ErrorLogger = {
  error(obj, msg) {
    console.error(msg ?? "error", obj);
  },
};

export function codeForKind(kind: ErrorKind): Code {
  return ERROR_KIND_CODES[kind];
}

/** A DomainError as a ConnectError with google.rpc details (no logging: domain errors are expected). */
export function domainErrorToConnectError(e: DomainError): ConnectError {
  const details: ConnectError["details"] = [
    {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, { reason: e.reason, domain: ERROR_DOMAIN, metadata: { ...e.metadata } }),
    },
  ];
  if (e.violations.length > 0) {
    details.push({
      desc: BadRequestSchema,
      value: create(BadRequestSchema, {
        fieldViolations: e.violations.map((v) => ({ field: v.field, description: v.description, reason: v.reason ?? "" })),
      }),
    });
  }
  if (e.resource) {
    details.push({
      desc: ResourceInfoSchema,
      value: create(ResourceInfoSchema, {
        resourceType: e.resource.type,
        resourceName: e.resource.name,
        owner: e.resource.owner ?? "",
        description: e.message,
      }),
    });
  }
  const ce = new ConnectError(e.message, codeForKind(e.kind), undefined, undefined, e);
  ce.details = details;
  return ce;
}

/**
 * Any thrown value → the ConnectError to send.
 * - DomainError: mapped code, its message, ErrorInfo (+ BadRequest, ResourceInfo).
 * - ConnectError: unchanged (already meant for the client).
 * - anything else: logged with `log` (console.error when absent); the client gets
 *   INTERNAL "internal error" and nothing of the original text.
 */
export function toConnectError(e: unknown, log: ErrorLogger = consoleLogger, context: object = {}): ConnectError {
  if (e instanceof DomainError) return domainErrorToConnectError(e);
  if (e instanceof ConnectError) return e;
  log.error({ ...context, err: e }, "unexpected error in handler; sent to client as INTERNAL");
  return new ConnectError(INTERNAL_ERROR_MESSAGE, Code.Internal);
}
