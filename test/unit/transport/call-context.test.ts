// The lazily built handler context of grpc-js calls behaves like connect's:
// the signal ends at the deadline, at abort, and says why, whenever it is first read.
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { CallContext } from "../../../services/platform/transport/call-context.js";

const method = RecordService.method.getRecord;
const context = (deadlineMs?: number, header = () => new Headers({ authorization: "Bearer t" })) =>
  new CallContext(RecordService, method, "http://h/x", createContextValues(), deadlineMs, header);

describe("CallContext", () => {
  it("counts down to the deadline and aborts a signal read before it with DEADLINE_EXCEEDED", async () => {
    const ctx = context(Date.now() + 60);
    expect(ctx.timeoutMs()).toBeGreaterThan(0);
    const signal = ctx.signal;
    expect(signal.aborted).toBe(false);
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    expect((signal.reason as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect(ctx.timeoutMs()).toBeLessThanOrEqual(0);
  });

  it("gives an already aborted signal when first read after the deadline", () => {
    const ctx = context(Date.now() - 1);
    expect(ctx.signal.aborted).toBe(true);
    expect((ctx.signal.reason as ConnectError).code).toBe(Code.DeadlineExceeded);
  });

  it("has no deadline when the client set none", () => {
    const ctx = context(undefined);
    expect(ctx.timeoutMs()).toBeUndefined();
    expect(ctx.signal.aborted).toBe(false);
  });

  it("keeps the first abort reason, whether the signal was read before or after", () => {
    const early = context(Date.now() + 10_000);
    const signal = early.signal;
    early.abort(new ConnectError("cancelled", Code.Canceled));
    early.abort(new ConnectError("ended", Code.Canceled));
    expect((signal.reason as ConnectError).rawMessage).toBe("cancelled");

    const late = context(Date.now() + 10_000);
    late.abort(new ConnectError("shutdown", Code.Unavailable));
    late.abort(new ConnectError("ended", Code.Canceled));
    expect(late.signal.aborted).toBe(true);
    expect((late.signal.reason as ConnectError).code).toBe(Code.Unavailable);
  });

  it("reads request headers once, on demand, and makes response headers only when used", () => {
    let reads = 0;
    const ctx = context(undefined, () => (reads++, new Headers({ authorization: "Bearer t" })));
    expect(reads).toBe(0);
    expect(ctx.requestHeader.get("authorization")).toBe("Bearer t");
    expect(ctx.requestHeader.get("authorization")).toBe("Bearer t");
    expect(reads).toBe(1);
    expect(ctx.responseHeaderIfUsed()).toBeUndefined();
    expect(ctx.responseTrailerIfUsed()).toBeUndefined();
    ctx.responseTrailer.set("x-cursor", "c1");
    expect(ctx.responseTrailerIfUsed()?.get("x-cursor")).toBe("c1");
    expect(ctx.responseHeaderIfUsed()).toBeUndefined();
  });
});
