// Call interceptors: code that observes every call of a wrapped service on
// both transports (telemetry: a span and a duration per RPC), applied once in
// wrapMethods rather than per transport. An interceptor opens a scope when a
// call starts; the scope runs the call's work (hooks and handler; each pull of
// a stream), so context it sets (the active span) is seen by everything the
// handler does, and it learns exactly once how the call ended.
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";

export interface CallScope {
  /** Runs one piece of the call's work inside the scope. */
  run<T>(fn: () => T): T;
  /** Called once: `error` is what the client receives, undefined when the call succeeded. */
  end(error: ConnectError | undefined): void;
}

export type CallInterceptor = (ctx: HandlerContext, method: DescMethod) => CallScope;

type Unary<I> = (input: I, ctx: HandlerContext) => Promise<unknown>;
type Stream<I> = (input: I, ctx: HandlerContext) => AsyncIterable<unknown>;

function open(interceptors: readonly CallInterceptor[], ctx: HandlerContext, method: DescMethod): CallScope {
  if (interceptors.length === 1) return interceptors[0]!(ctx, method);
  const scopes = interceptors.map((i) => i(ctx, method));
  return {
    // The first interceptor is the outermost.
    run: <T>(fn: () => T): T => scopes.reduceRight<() => T>((inner, s) => () => s.run(inner), fn)(),
    end: (error) => {
      for (let i = scopes.length - 1; i >= 0; i--) scopes[i]!.end(error);
    },
  };
}

/** Why an aborted call ended, as the client sees it. */
function abortError(ctx: HandlerContext): ConnectError {
  const reason: unknown = ctx.signal.reason;
  return reason instanceof ConnectError ? reason : new ConnectError("operation canceled", Code.Canceled);
}

export function interceptUnary<I>(interceptors: readonly CallInterceptor[], method: DescMethod, fn: Unary<I>): Unary<I> {
  return async (input, ctx) => {
    const scope = open(interceptors, ctx, method);
    let res: unknown;
    try {
      res = await scope.run(() => fn(input, ctx));
    } catch (e) {
      scope.end(ConnectError.from(e));
      throw e;
    }
    scope.end(undefined);
    return res;
  };
}

export function interceptStream<I>(interceptors: readonly CallInterceptor[], method: DescMethod, fn: Stream<I>): Stream<I> {
  return async function* (input, ctx) {
    const scope = open(interceptors, ctx, method);
    let ended = false;
    const end = (error: ConnectError | undefined) => {
      if (ended) return;
      ended = true;
      scope.end(error);
    };
    // A stream suspended at a yield when its call is aborted may never be
    // resumed by the transport (see wrapMethods): end the scope right away.
    let pulling = false;
    const onAbort = () => {
      if (!pulling) end(abortError(ctx));
    };
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    const it = scope.run(() => fn(input, ctx)[Symbol.asyncIterator]());
    let finished = false;
    try {
      for (;;) {
        pulling = true;
        const r = await scope.run(() => it.next());
        pulling = false;
        if (r.done) break;
        yield r.value;
      }
      finished = true;
      end(undefined);
    } catch (e) {
      finished = true;
      end(ConnectError.from(e));
      throw e;
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      if (!finished) {
        // The consumer stopped early (client gone): let the handler clean up.
        it.return?.(undefined).catch(() => undefined);
        end(ctx.signal.aborted ? abortError(ctx) : new ConnectError("the client canceled the call", Code.Canceled));
      }
    }
  };
}
