import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ERROR_KIND_CODES, INTERNAL_ERROR_MESSAGE, toConnectError } from "../../services/platform/error-mapping.js";
import { encodeStatusDetails } from "../../services/platform/transport/status.js";
import { DomainError, ERROR_DOMAIN, invalidArgument, notFound, type ErrorKind } from "../../services/platform/errors.js";

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
