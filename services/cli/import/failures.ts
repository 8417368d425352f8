// What a refused WriteRecords call means for an import: which rows of the
// request are bad (and why), whether to retry it unchanged, or whether the
// whole import must stop. Pure, apart from reading a ConnectError's details.
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";

export interface Violation {
  /** The row's field (e.g. `phone`), or a path inside the mutation. */
  field: string;
  reason: string;
  description: string;
}

/** A refused write, as the import sees it. */
export interface WriteFailure {
  code: Code;
  message: string;
  /** google.rpc.ErrorInfo reason ("" when absent). */
  reason: string;
  metadata: Record<string, string>;
  /** google.rpc.BadRequest field violations, with their request paths. */
  violations: Violation[];
}

/** Why one row was not written: what the report says about it. */
export interface RowRejection {
  /** gRPC status name, e.g. INVALID_ARGUMENT; IMPORT for problems found before sending. */
  code: string;
  reason: string;
  message: string;
  violations: Violation[];
}

export type Verdict =
  /**
   * These request positions are bad; the others may be sent again. With
   * `firstFailure` the server stopped at the named row: the rows before it
   * are good, the rows after it were not checked.
   */
  | { kind: "rows"; rejected: Map<number, RowRejection>; firstFailure: boolean }
  /** Some row of the request is bad but the error does not say which: split the request. */
  | { kind: "unattributed"; rejection: RowRejection }
  /** The server or network failed; the same request can be retried (idempotent by mutation ids). */
  | { kind: "transient" }
  /** Nothing in the file can fix this (no such collection, not authenticated): stop. */
  | { kind: "fatal"; message: string };

/** Codes that refuse a mutation for what it says, not for where or who. */
const ROW_CODES = new Set([Code.InvalidArgument, Code.AlreadyExists, Code.Aborted, Code.FailedPrecondition, Code.OutOfRange, Code.NotFound, Code.PermissionDenied]);
const TRANSIENT_CODES = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Internal, Code.Unknown]);
/** Reasons that name the request as a whole even when they carry a mutation index. */
const REQUEST_REASONS = new Set(["COLLECTION_NOT_FOUND", "BATCH_TOO_LARGE"]);

const MUTATION_PATH = /^mutations\[(\d+)\]\.?(.*)$/;

export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

export function failureOf(e: unknown): WriteFailure {
  const err = ConnectError.from(e);
  const info = err.findDetails(ErrorInfoSchema)[0];
  const bad = err.findDetails(BadRequestSchema)[0];
  return {
    code: err.code,
    message: err.rawMessage,
    reason: info?.reason ?? "",
    metadata: { ...(info?.metadata ?? {}) },
    violations: (bad?.fieldViolations ?? []).map((v) => ({ field: v.field, reason: v.reason, description: v.description })),
  };
}

/** A path inside a mutation as the row's field name where there is one. */
function rowField(path: string, keyField: string): string {
  if (path.startsWith("set.")) return path.slice(4);
  if (path.startsWith("ref.identity")) return keyField;
  return path;
}

export function classify(f: WriteFailure, keyField: string): Verdict {
  if (TRANSIENT_CODES.has(f.code)) return { kind: "transient" };
  if (!ROW_CODES.has(f.code) || REQUEST_REASONS.has(f.reason)) {
    return { kind: "fatal", message: `${codeName(f.code)}${f.reason ? ` (${f.reason})` : ""}: ${f.message}` };
  }
  const byRow = new Map<number, Violation[]>();
  const unattributed: Violation[] = [];
  for (const v of f.violations) {
    const m = MUTATION_PATH.exec(v.field);
    if (!m) {
      unattributed.push(v);
      continue;
    }
    const i = Number(m[1]);
    if (!byRow.has(i)) byRow.set(i, []);
    byRow.get(i)!.push({ ...v, field: rowField(m[2] ?? "", keyField) });
  }
  // mutation_index marks a failure while applying, which stops at the first failing mutation.
  const index = f.metadata.mutation_index;
  const firstFailure = index !== undefined && /^\d+$/.test(index);
  if (firstFailure && !byRow.has(Number(index))) byRow.set(Number(index), []);
  const code = codeName(f.code);
  // The generic reason of a request with bad fields says less than the row's first violation.
  const reasonFor = (violations: Violation[]) => (f.reason && f.reason !== code ? f.reason : violations[0]?.reason || code);
  if (byRow.size === 0) {
    return { kind: "unattributed", rejection: { code, reason: reasonFor(unattributed), message: f.message, violations: unattributed } };
  }
  const rejected = new Map<number, RowRejection>();
  for (const [i, violations] of byRow) {
    // A row's own violations say more than the request's message, which also lists its neighbours'.
    const message = violations.length > 0 ? violations.map((v) => `${v.field}: ${v.description}`).join("; ") : f.message;
    rejected.set(i, { code, reason: reasonFor(violations), message, violations });
  }
  return { kind: "rows", rejected, firstFailure };
}
