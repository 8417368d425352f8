// The call-interceptor mechanism of wrap.ts: every call is observed once,
// with the status the client gets, and the call's work runs inside the scope.
import { AsyncLocalStorage } from "node:async_hooks";
import { create, type DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, createHandlerContext, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as Status,
  type HealthCheckResponse,
} from "../../../gen/health/v1/health_pb.js";
import { DomainError } from "../../../services/platform/errors.js";
import { wrapService, type CallInterceptor, type RequestHook } from "../../../services/platform/transport/wrap.js";

const quiet = { error: () => undefined };

function ctxFor(method: DescMethod, signal?: AbortSignal): HandlerContext {
  return createHandlerContext({
    service: Health,
    method,
    protocolName: "grpc",
    requestMethod: "POST",
    url: `http://x/${Health.typeName}/${method.name}`,
    requestHeader: new Headers(),
    contextValues: createContextValues(),
    ...(signal ? { shutdownSignal: signal } : {}),
  });
}

interface Seen {
  started: string[];
  ended: { method: string; code: Code | "OK" }[];
}

/** Records calls; `run` makes the method name visible to code running inside. */
function recorder(store: AsyncLocalStorage<string>): { seen: Seen; interceptor: CallInterceptor } {
  const seen: Seen = { started: [], ended: [] };
  return {
    seen,
    interceptor: (_ctx, method) => {
      seen.started.push(method.name);
      return {
        run: (fn) => store.run(method.name, fn),
        end: (error) => seen.ended.push({ method: method.name, code: error ? error.code : "OK" }),
      };
    },
  };
}

const req = create(HealthCheckRequestSchema, { service: "" });
const ok = (status: Status = Status.SERVING) => ({ status }) as HealthCheckResponse;

describe("call interceptors", () => {
  it("see a successful unary call once, and the handler runs inside the scope", async () => {
    const store = new AsyncLocalStorage<string>();
    const { seen, interceptor } = recorder(store);
    let insideHandler: string | undefined;
    let insideHook: string | undefined;
    const hook: RequestHook = async () => {
      insideHook = store.getStore();
    };
    const svc = wrapService(
      Health,
      {
        check: async () => {
          await new Promise((r) => setTimeout(r, 1));
          insideHandler = store.getStore();
          return ok();
        },
      },
      { interceptors: [interceptor], hooks: [hook], log: quiet },
    );
    const res = await svc.check(req, ctxFor(Health.method.check));
    expect(res.status).toBe(Status.SERVING);
    expect(seen).toEqual({ started: ["Check"], ended: [{ method: "Check", code: "OK" }] });
    expect(insideHook).toBe("Check");
    expect(insideHandler).toBe("Check"); // after an await, still inside
  });

  it("see the converted status of a failing unary call (domain error, plain error, hook refusal)", async () => {
    const store = new AsyncLocalStorage<string>();
    const { seen, interceptor } = recorder(store);
    const failWith = (e: unknown) =>
      wrapService(Health, { check: () => Promise.reject(e) }, { interceptors: [interceptor], log: quiet });
    await expect(failWith(new DomainError("not_found", "nope", { reason: "X" })).check(req, ctxFor(Health.method.check))).rejects.toThrow();
    await expect(failWith(new Error("bug")).check(req, ctxFor(Health.method.check))).rejects.toThrow();
    const refuse: RequestHook = async () => {
      throw new ConnectError("who are you", Code.Unauthenticated);
    };
    const guarded = wrapService(Health, { check: async () => ok() }, { interceptors: [interceptor], hooks: [refuse], log: quiet });
    await expect(guarded.check(req, ctxFor(Health.method.check))).rejects.toThrow();
    expect(seen.ended.map((e) => e.code)).toEqual([Code.NotFound, Code.Internal, Code.Unauthenticated]);
  });

  it("see an unimplemented method as UNIMPLEMENTED", async () => {
    const store = new AsyncLocalStorage<string>();
    const { seen, interceptor } = recorder(store);
    const svc = wrapService(Health, {}, { interceptors: [interceptor], log: quiet });
    await expect(svc.check(req, ctxFor(Health.method.check))).rejects.toThrow();
    expect(seen.ended).toEqual([{ method: "Check", code: Code.Unimplemented }]);
  });

  it("see a completed stream once, with every pull inside the scope", async () => {
    const store = new AsyncLocalStorage<string>();
    const { seen, interceptor } = recorder(store);
    const pulls: (string | undefined)[] = [];
    const svc = wrapService(
      Health,
      {
        async *watch() {
          for (const s of [Status.NOT_SERVING, Status.SERVING]) {
            await new Promise((r) => setTimeout(r, 1));
            pulls.push(store.getStore());
            yield ok(s);
          }
        },
      },
      { interceptors: [interceptor], log: quiet },
    );
    const got: (Status | undefined)[] = [];
    for await (const m of svc.watch(req, ctxFor(Health.method.watch))) got.push(m.status);
    expect(got).toEqual([Status.NOT_SERVING, Status.SERVING]);
    expect(pulls).toEqual(["Watch", "Watch"]);
    expect(seen.ended).toEqual([{ method: "Watch", code: "OK" }]);
  });

  it("see a stream that fails midway with its error, and one the consumer abandons as CANCELED", async () => {
    const store = new AsyncLocalStorage<string>();
    const { seen, interceptor } = recorder(store);
    let cleanedUp = false;
    const svc = wrapService(
      Health,
      {
        async *watch(r: { service: string }) {
          try {
            yield ok();
            if (r.service === "fail") throw new DomainError("unavailable", "gone", { reason: "GONE" });
            yield ok();
          } finally {
            cleanedUp = true;
          }
        },
      },
      { interceptors: [interceptor], log: quiet },
    );
    const failing = svc.watch(create(HealthCheckRequestSchema, { service: "fail" }), ctxFor(Health.method.watch));
    await expect(
      (async () => {
        for await (const _ of failing) void _;
      })(),
    ).rejects.toThrow();
    for await (const _ of svc.watch(req, ctxFor(Health.method.watch))) break; // consumer stops after one
    expect(seen.ended).toEqual([
      { method: "Watch", code: Code.Unavailable },
      { method: "Watch", code: Code.Canceled },
    ]);
    expect(cleanedUp).toBe(true);
  });

  it("end a stream suspended at a yield when its call is aborted, with the abort reason", async () => {
    const store = new AsyncLocalStorage<string>();
    const { seen, interceptor } = recorder(store);
    const shutdown = new AbortController();
    const svc = wrapService(
      Health,
      {
        async *watch() {
          yield ok();
          yield ok();
        },
      },
      { interceptors: [interceptor], log: quiet },
    );
    const it = svc.watch(req, ctxFor(Health.method.watch, shutdown.signal))[Symbol.asyncIterator]();
    await it.next(); // now suspended at the first yield, never resumed
    shutdown.abort(new ConnectError("server shutting down", Code.Unavailable));
    await new Promise((r) => setTimeout(r, 10));
    expect(seen.ended).toEqual([{ method: "Watch", code: Code.Unavailable }]);
  });

  it("nest several interceptors, first outermost, each ended once", async () => {
    const order: string[] = [];
    const named =
      (name: string): CallInterceptor =>
      () => ({
        run: (fn) => {
          order.push(`${name}>`);
          try {
            return fn();
          } finally {
            order.push(`<${name}`);
          }
        },
        end: () => order.push(`end ${name}`),
      });
    const svc = wrapService(Health, { check: () => ok() }, { interceptors: [named("a"), named("b")], log: quiet });
    await svc.check(req, ctxFor(Health.method.check));
    expect(order).toEqual(["a>", "b>", "<b", "<a", "end b", "end a"]);
  });
});
