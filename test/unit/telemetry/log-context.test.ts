// Log lines written inside a traced call carry its trace and span ids.
import { Writable } from "node:stream";
import { context, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../../services/platform/logger.js";
import { startTestTelemetry, type TestTelemetry } from "../../support/telemetry.js";

let t: TestTelemetry;
beforeAll(async () => {
  t = await startTestTelemetry();
});
afterAll(() => t.shutdown());

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, log: createLogger("info", { node: "n1" }, stream) };
}

describe("logger", () => {
  it("adds trace_id, span_id and trace_flags inside a span", async () => {
    const { lines, log } = capture();
    const span = trace.getTracer("test").startSpan("call");
    await context.with(trace.setSpan(context.active(), span), async () => {
      await new Promise((r) => setTimeout(r, 1));
      log.info({ k: 1 }, "inside");
    });
    span.end();
    log.info("outside");
    log.info({ port: 9464 }, "fields outside");
    log.info({ port: 9465 }, "fields again");
    await new Promise((r) => setImmediate(r));
    const sc = span.spanContext();
    expect(lines[0]).toMatchObject({ msg: "inside", node: "n1", k: 1, trace_id: sc.traceId, span_id: sc.spanId, trace_flags: "01" });
    expect(lines[1]).toMatchObject({ msg: "outside" });
    expect(lines[1]).not.toHaveProperty("trace_id");
    // Lines outside a span keep their own fields, and never leak them into each other.
    expect(lines[2]).toMatchObject({ msg: "fields outside", port: 9464 });
    expect(lines[3]).toMatchObject({ msg: "fields again", port: 9465 });
    expect(lines[1]).not.toHaveProperty("port");
  });
});
