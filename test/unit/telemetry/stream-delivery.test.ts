// The stream-delivery hook the change-stream service will call around each message.
import { SpanStatusCode, context, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { METRIC_STREAM_EVENTS, SPAN_STREAM_DELIVERY } from "../../../services/platform/telemetry/names.js";
import { startStreamDelivery } from "../../../services/platform/telemetry/stream-delivery.js";
import { startTestTelemetry, sumOf, type TestTelemetry } from "../../support/telemetry.js";

let t: TestTelemetry;
beforeAll(async () => {
  t = await startTestTelemetry();
});
afterAll(() => t.shutdown());

describe("startStreamDelivery", () => {
  it("makes a span under the Subscribe call with the events, cursor and lag, and counts the events once", async () => {
    const subscribe = trace.getTracer("test").startSpan("deltamesh.v1.ChangeService/Subscribe");
    const now = Date.parse("2026-01-01T00:00:10Z");
    const d = context.with(trace.setSpan(context.active(), subscribe), () =>
      startStreamDelivery({ events: 5, lastCommitTime: new Date(now - 1500), cursor: "c42" }, now),
    );
    d.end();
    d.end(); // idempotent
    subscribe.end();
    const span = (await t.spans()).find((s) => s.name === SPAN_STREAM_DELIVERY)!;
    expect(span.parentSpanContext?.spanId).toBe(subscribe.spanContext().spanId);
    expect(span.attributes).toEqual({ "deltamesh.stream.events": 5, "deltamesh.stream.cursor": "c42", "deltamesh.stream.lag_ms": 1500 });
    expect(sumOf((await t.metrics()).get(METRIC_STREAM_EVENTS))).toBe(5);
  });

  it("marks a failed send and does not count its events", async () => {
    startStreamDelivery({ events: 3 }).end(new Error("client gone"));
    const span = (await t.spans()).filter((s) => s.name === SPAN_STREAM_DELIVERY).at(-1)!;
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: "client gone" });
    expect(sumOf((await t.metrics()).get(METRIC_STREAM_EVENTS))).toBe(5);
  });
});
