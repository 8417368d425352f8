// Write-batch telemetry: the batch span continues the first caller's trace and
// links the others; mutations, batch sizes and conflicts are counted from the
// outcomes the pipeline returns.
import { context, SpanStatusCode, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  METRIC_CONFLICTS,
  METRIC_WRITE_BATCH_DURATION,
  METRIC_WRITE_BATCH_SIZE,
  METRIC_WRITE_MUTATIONS,
  SPAN_WRITE_BATCH,
} from "../../../services/platform/telemetry/names.js";
import { captureCaller, observeWriteBatch, type ObservedOutcome, type ObservedRequest } from "../../../services/platform/telemetry/write-batch.js";
import { startTestTelemetry, sumOf, type TestTelemetry } from "../../support/telemetry.js";

let t: TestTelemetry;
beforeAll(async () => {
  t = await startTestTelemetry();
});
afterAll(() => t.shutdown());

const tracer = trace.getTracer("test");

/** A request queued from inside a span of its own, as an RPC handler would. */
function requestIn(name: string, mutations: number): { req: ObservedRequest; spanId: string; traceId: string } {
  const span = tracer.startSpan(name);
  const req = context.with(trace.setSpan(context.active(), span), () => ({
    req: { mutations: Array.from({ length: mutations }, () => ({})) },
    caller: captureCaller(),
  }));
  span.end();
  return { req, spanId: span.spanContext().spanId, traceId: span.spanContext().traceId };
}

const applied = (fields: { status: string; policy?: string }[] = []) => ({ replayed: false, fields });

describe("observeWriteBatch", () => {
  it("runs the transaction in a batch span under the first caller, linking the others", async () => {
    const a = requestIn("rpc-a", 2);
    const b = requestIn("rpc-b", 1);
    let activeInTx: string | undefined;
    const outcomes: ObservedOutcome[] = [
      { ok: true, results: [applied(), applied()] },
      { ok: true, results: [applied()] },
    ];
    const got = await observeWriteBatch([a.req, b.req], 1, async () => {
      activeInTx = trace.getActiveSpan()?.spanContext().spanId;
      return outcomes;
    });
    expect(got).toBe(outcomes);
    const span = (await t.spans()).find((s) => s.name === SPAN_WRITE_BATCH)!;
    expect(span.spanContext().traceId).toBe(a.traceId);
    expect(span.parentSpanContext?.spanId).toBe(a.spanId);
    expect(span.links.map((l) => l.context.spanId)).toEqual([b.spanId]);
    expect(activeInTx).toBe(span.spanContext().spanId);
    expect(span.attributes).toMatchObject({ "deltamesh.batch.requests": 2, "deltamesh.batch.mutations": 3, "deltamesh.batch.attempt": 1 });
  });

  it("counts mutations by outcome and conflicts by policy", async () => {
    const before = await t.metrics();
    const count = (m: Map<string, Parameters<typeof sumOf>[0]>, name: string, attrs: Record<string, string>) => sumOf(m.get(name), attrs);
    const outcomes: ObservedOutcome[] = [
      {
        ok: true,
        results: [
          applied([{ status: "applied", policy: "lww" }, { status: "applied" }]),
          applied([{ status: "superseded", policy: "lww" }, { status: "queued_for_review", policy: "manual_review" }]),
          { replayed: true, fields: [{ status: "kept", policy: "keep_original" }] },
        ],
      },
      { ok: false, error: { reason: "CONCURRENT_EDIT_REJECTED", metadata: { conflicting_fields: "credit_limit,tier" } } },
      { ok: false, error: { reason: "VALIDATION_FAILED", metadata: {} } },
    ];
    const batch = [requestIn("x", 3).req, requestIn("y", 1).req, requestIn("z", 2).req];
    await observeWriteBatch(batch, 1, async () => outcomes);
    const after = await t.metrics();
    const delta = (name: string, attrs: Record<string, string>) => count(after, name, attrs) - count(before, name, attrs);
    expect(delta(METRIC_WRITE_MUTATIONS, { outcome: "applied" })).toBe(2);
    expect(delta(METRIC_WRITE_MUTATIONS, { outcome: "replayed" })).toBe(1);
    expect(delta(METRIC_WRITE_MUTATIONS, { outcome: "rejected" })).toBe(3);
    expect(delta(METRIC_CONFLICTS, { policy: "lww", outcome: "applied" })).toBe(1);
    expect(delta(METRIC_CONFLICTS, { policy: "lww", outcome: "superseded" })).toBe(1);
    expect(delta(METRIC_CONFLICTS, { policy: "manual_review", outcome: "queued_for_review" })).toBe(1);
    expect(delta(METRIC_CONFLICTS, { policy: "reject", outcome: "rejected" })).toBe(2);
    expect(delta(METRIC_CONFLICTS, { policy: "keep_original" })).toBe(0); // a replay decided nothing new
    const sizes = after.get(METRIC_WRITE_BATCH_SIZE)!.dataPoints.at(-1)!.value as { sum: number; count: number };
    expect(sizes.count).toBe(2); // this batch and the previous test's
    expect(sizes.sum).toBe(3 + 6);
  });

  it("records a failed transaction on the span and as an error duration, counting no mutation", async () => {
    const before = await t.metrics();
    await expect(observeWriteBatch([requestIn("w", 4).req], 2, () => Promise.reject(new Error("serialization failure")))).rejects.toThrow(
      "serialization failure",
    );
    const span = (await t.spans()).filter((s) => s.name === SPAN_WRITE_BATCH).at(-1)!;
    expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: "serialization failure" });
    expect(span.events.map((e) => e.name)).toContain("exception");
    expect(span.attributes["deltamesh.batch.attempt"]).toBe(2);
    const after = await t.metrics();
    expect(sumOf(after.get(METRIC_WRITE_BATCH_DURATION), { outcome: "error" })).toBe(1);
    expect(sumOf(after.get(METRIC_WRITE_MUTATIONS))).toBe(sumOf(before.get(METRIC_WRITE_MUTATIONS)));
  });
});
