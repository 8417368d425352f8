// One SERVER span and one duration point per RPC, with the stable RPC
// semantic conventions, for whatever way the call ends.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, createHandlerContext } from "@connectrpc/connect";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Health, HealthCheckRequestSchema, type HealthCheckResponse } from "../../../gen/health/v1/health_pb.js";
import { DomainError } from "../../../services/platform/errors.js";
import { METRIC_RPC_SERVER_DURATION } from "../../../services/platform/telemetry/names.js";
import { isServerFault, rpcTelemetry, statusName } from "../../../services/platform/telemetry/rpc.js";
import { wrapService } from "../../../services/platform/transport/wrap.js";
import { startTestTelemetry, sumOf, type TestTelemetry } from "../../support/telemetry.js";

let t: TestTelemetry;
beforeAll(async () => {
  t = await startTestTelemetry();
});
afterAll(() => t.shutdown());

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN = "00f067aa0ba902b7";

function ctx(protocolName: string, headers: Record<string, string> = {}) {
  return createHandlerContext({
    service: Health,
    method: Health.method.check,
    protocolName,
    requestMethod: "POST",
    url: `http://x/${Health.typeName}/Check`,
    requestHeader: new Headers(headers),
    contextValues: createContextValues(),
  });
}

const req = create(HealthCheckRequestSchema, {});
const quiet = { error: () => undefined };

function service(check: () => Promise<HealthCheckResponse>) {
  return wrapService(Health, { check }, { interceptors: [rpcTelemetry], log: quiet });
}

let before = 0;
beforeEach(async () => {
  before = (await t.spans()).length;
});
const newSpans = async () => (await t.spans()).slice(before);

describe("status names", () => {
  it("are the gRPC names", () => {
    expect(statusName(undefined)).toBe("OK");
    expect(statusName(Code.DeadlineExceeded)).toBe("DEADLINE_EXCEEDED");
    expect(statusName(Code.NotFound)).toBe("NOT_FOUND");
    expect(statusName(Code.ResourceExhausted)).toBe("RESOURCE_EXHAUSTED");
    expect(statusName(Code.Unauthenticated)).toBe("UNAUTHENTICATED");
  });
  it("mark only server faults as errors", () => {
    const faults = [Code.Unknown, Code.DeadlineExceeded, Code.Unimplemented, Code.Internal, Code.Unavailable, Code.DataLoss];
    for (let c = Code.Canceled; c <= Code.Unauthenticated; c++) expect(isServerFault(c), statusName(c)).toBe(faults.includes(c));
  });
});

describe("rpc telemetry", () => {
  it("makes a SERVER span named after the method, continuing the caller's trace", async () => {
    let activeInHandler: string | undefined;
    const svc = service(async () => {
      activeInHandler = trace.getActiveSpan()?.spanContext().spanId;
      return { status: 1 } as HealthCheckResponse;
    });
    await svc.check(req, ctx("grpc", { traceparent: `00-${TRACE_ID}-${PARENT_SPAN}-01` }));
    const [span] = await newSpans();
    expect(span).toBeDefined();
    expect(span!.name).toBe("grpc.health.v1.Health/Check");
    expect(span!.kind).toBe(SpanKind.SERVER);
    expect(span!.spanContext().traceId).toBe(TRACE_ID);
    expect(span!.parentSpanContext?.spanId).toBe(PARENT_SPAN);
    expect(activeInHandler).toBe(span!.spanContext().spanId);
    expect(span!.attributes).toMatchObject({
      "rpc.system.name": "grpc",
      "rpc.method": "grpc.health.v1.Health/Check",
      "rpc.status_code": "OK",
    });
    expect(span!.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("names the Connect protocol connectrpc", async () => {
    await service(async () => ({ status: 1 }) as HealthCheckResponse).check(req, ctx("connect"));
    expect((await newSpans())[0]!.attributes["rpc.system.name"]).toBe("connectrpc");
  });

  it("records a client error's status without marking the span failed", async () => {
    const svc = service(() => Promise.reject(new DomainError("not_found", "no such record", { reason: "RECORD_NOT_FOUND" })));
    await expect(svc.check(req, ctx("grpc"))).rejects.toThrow();
    const span = (await newSpans())[0]!;
    expect(span.attributes["rpc.status_code"]).toBe("NOT_FOUND");
    expect(span.attributes["error.type"]).toBeUndefined();
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("marks server faults as errors with error.type", async () => {
    const svc = service(() => Promise.reject(new ConnectError("database gone", Code.Unavailable)));
    await expect(svc.check(req, ctx("grpc"))).rejects.toThrow();
    const span = (await newSpans())[0]!;
    expect(span.attributes["rpc.status_code"]).toBe("UNAVAILABLE");
    expect(span.attributes["error.type"]).toBe("UNAVAILABLE");
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: "database gone" });
  });

  it("records rpc.server.call.duration per method and status", async () => {
    const m = await t.metrics();
    const duration = m.get(METRIC_RPC_SERVER_DURATION);
    expect(duration?.descriptor.unit).toBe("s");
    const base = { "rpc.system.name": "grpc", "rpc.method": "grpc.health.v1.Health/Check" };
    expect(sumOf(duration, { ...base, "rpc.status_code": "OK" })).toBeGreaterThanOrEqual(1);
    expect(sumOf(duration, { ...base, "rpc.status_code": "NOT_FOUND" })).toBe(1);
    expect(sumOf(duration, { ...base, "rpc.status_code": "UNAVAILABLE", "error.type": "UNAVAILABLE" })).toBe(1);
  });
});
