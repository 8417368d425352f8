import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ERROR_KIND_CODES, INTERNAL_ERROR_MESSAGE, toConnectError } from "../../services/platform/error-mapping.js";
import { encodeStatusDetails } from "../../services/platform/transport/status.js";
import { DomainError, ERROR_DOMAIN, invalidArgument, notFound, type ErrorKind } from "../../services/platform/errors.js";
import { toStoreError } from "../../services/store/pg-errors.js";

const silent = { error: () => undefined };

describe("ERROR_KIND_CODES", () => {
  const expected: [ErrorKind, Code][] = [
    ["invalid_argument", Code.InvalidArgument],
    ["not_found", Code.NotFound],
    ["already_exists", Code.AlreadyExists],
    ["aborted", Code.Aborted],
    ["failed_precondition", Code.FailedPrecondition],
    ["resource_exhausted", Code.ResourceExhausted],
    ["permission_denied", Code.PermissionDenied],
    ["unauthenticated", Code.Unauthenticated],
    ["unavailable", Code.Unavailable],
    ["deadline_exceeded", Code.DeadlineExceeded],
    ["internal", Code.Internal],
  ];

  it.each(expected)("%s → %s", (kind, code) => {
    expect(ERROR_KIND_CODES[kind]).toBe(code);
    const e = toConnectError(new DomainError(kind, `a ${kind} error`, { reason: "SOME_REASON" }), silent);
    expect(e.code).toBe(code);
    expect(e.rawMessage).toBe(`a ${kind} error`);
  });

  it("covers every kind exactly once", () => {
    expect(Object.keys(ERROR_KIND_CODES).sort()).toEqual(expected.map(([k]) => k).sort());
    expect(new Set(Object.values(ERROR_KIND_CODES)).size).toBe(expected.length);
  });
});

describe("toConnectError", () => {
  it("always sends ErrorInfo with reason, domain and metadata", () => {
    const e = toConnectError(new DomainError("aborted", "version mismatch", { reason: "VERSION_MISMATCH", metadata: { current_version: "7" } }));
    const [info, ...more] = e.findDetails(ErrorInfoSchema);
    expect(more).toHaveLength(0);
    expect(info).toMatchObject({ reason: "VERSION_MISMATCH", domain: ERROR_DOMAIN, metadata: { current_version: "7" } });
    expect(e.findDetails(BadRequestSchema)).toHaveLength(0);
    expect(e.findDetails(ResourceInfoSchema)).toHaveLength(0);
  });

  it("adds BadRequest with the field violations when there are any", () => {
    const e = toConnectError(
      invalidArgument("2 bad fields", [
        { field: "mutations[0].set.phone", description: "not a phone number", reason: "PHONE_INVALID" },
        { field: "mutations[1].ref", description: "required" },
      ]),
    );
    expect(e.code).toBe(Code.InvalidArgument);
    const [bad] = e.findDetails(BadRequestSchema);
    expect(bad?.fieldViolations.map((v) => ({ field: v.field, description: v.description, reason: v.reason }))).toEqual([
      { field: "mutations[0].set.phone", description: "not a phone number", reason: "PHONE_INVALID" },
      { field: "mutations[1].ref", description: "required", reason: "" },
    ]);
  });

  it("adds ResourceInfo when a resource is set", () => {
    const e = toConnectError(notFound("record", "customers/c1"));
    expect(e.code).toBe(Code.NotFound);
    expect(e.findDetails(ResourceInfoSchema)[0]).toMatchObject({ resourceType: "record", resourceName: "customers/c1" });
    expect(e.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({ record: "customers/c1" });
  });

  it("keeps the cause out of what is sent", () => {
    const e = toConnectError(new DomainError("unavailable", "database unavailable", { reason: "DB_DOWN", cause: new Error("ECONNREFUSED 10.0.0.5:5432") }));
    expect(e.code).toBe(Code.Unavailable);
    expect(e.rawMessage).toBe("database unavailable");
    // Nothing of the cause in the wire status (google.rpc.Status with its details).
    expect(Buffer.from(encodeStatusDetails(e)).toString("latin1")).not.toContain("10.0.0.5");
  });

  it("passes a ConnectError through unchanged", () => {
    const original = new ConnectError("slow down", Code.ResourceExhausted);
    expect(toConnectError(original, silent)).toBe(original);
  });

  it("hides anything else as INTERNAL and logs the real error", () => {
    const logged: object[] = [];
    const secret = new Error('duplicate key value violates unique constraint "records_pkey" (password=hunter2)');
    for (const thrown of [secret, "a string", { weird: true }, undefined]) {
      const e = toConnectError(thrown, { error: (obj) => void logged.push(obj) });
      expect(e.code).toBe(Code.Internal);
      expect(e.rawMessage).toBe(INTERNAL_ERROR_MESSAGE);
      expect(e.details).toHaveLength(0);
      expect(e.cause).toBeUndefined();
    }
    expect(logged).toHaveLength(4);
    expect((logged[0] as { err: unknown }).err).toBe(secret);
  });
});

describe("toStoreError", () => {
  /** A driver error as node-postgres raises it. */
  const pgError = (code: string, message: string) => Object.assign(new Error(message), { code, severity: "ERROR" });
  const sent = (e: unknown) => toConnectError(toStoreError(e), silent);

  // Input the database refuses: the request's fault, so INVALID_ARGUMENT, and none of the driver's words (nor the SQLSTATE) are sent.
  it.each([
    ["22021", 'invalid byte sequence for encoding "UTF8": 0x00', "UNSTORABLE_TEXT"],
    ["22P05", "unsupported Unicode escape sequence", "UNSTORABLE_TEXT"],
    ["22003", 'value "1000000000000000000000000000000" is out of range for type bigint', "VALUE_OUT_OF_RANGE"],
    ["22008", 'date/time field value out of range: "0NaN-NaN-NaN"', "VALUE_OUT_OF_RANGE"],
    ["22007", 'invalid input syntax for type timestamp with time zone: "0NaN-NaN-NaNTNaN:NaN:NaN.NaN+NaN:NaN"', "VALUE_OUT_OF_RANGE"],
    ["22001", "value too long for type character varying(64)", "VALUE_OUT_OF_RANGE"],
  ] as const)("maps SQLSTATE %s to INVALID_ARGUMENT (%s) without the database's text", (code, message, reason) => {
    const e = sent(pgError(code, message));
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe(reason);
    if (reason === "UNSTORABLE_TEXT") expect(e.rawMessage).toMatch(/NUL/);
    expect(Buffer.from(encodeStatusDetails(e)).toString("latin1")).not.toMatch(/UTF8|0x00|escape sequence|bigint|NaN|varying|out of range for|22[0-9A-Z]{3}/);
  });

  it("keeps the other meanings: connection loss, conflicts, the server's own query errors", () => {
    expect(toStoreError(pgError("57P01", "terminating connection due to administrator command")).kind).toBe("unavailable");
    expect(toStoreError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" })).kind).toBe("unavailable");
    expect(toStoreError(new Error("Connection terminated unexpectedly")).kind).toBe("unavailable");
    expect(toStoreError(pgError("40001", "could not serialize access")).reason).toBe("TRANSACTION_CONFLICT");
    expect(toStoreError(pgError("40P01", "deadlock detected")).kind).toBe("aborted");
    for (const [code, message] of [
      ["42703", 'column "fields_gone" does not exist'],
      ["23505", 'duplicate key value violates unique constraint "records_pkey"'],
      ["22012", "division by zero"],
      ["22P02", 'invalid input syntax for type bigint: "x"'],
      ["2201B", "invalid regular expression"],
    ] as const) {
      const e = toStoreError(pgError(code, message));
      expect(e.kind, code).toBe("internal");
      expect(e.reason).toBe("STORAGE_ERROR");
    }
    const domain = invalidArgument("bad", []);
    expect(toStoreError(domain)).toBe(domain);
  });
});
