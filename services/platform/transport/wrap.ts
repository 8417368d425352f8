// Cross-cutting concerns applied once to every method of a service,
// independent of the transport that serves it:
// - request hooks (auth, readiness gates…) run before the handler;
// - every error leaves as a ConnectError via toConnectError (domain errors get
//   their code and details, anything else becomes INTERNAL and is logged);
// - a stream whose context was aborted with a ConnectError (shutdown, deadline)
//   ends with that error even if the handler returned quietly;
// - pre-encoded stream messages are passed through or decoded, per transport;
// - call interceptors (telemetry) observe each call around all of the above.
import { fromBinary, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { DomainError } from "../errors.js";
import { toConnectError, type ErrorLogger } from "../error-mapping.js";
import { interceptStream, interceptUnary, type CallInterceptor } from "./intercept.js";
import { PreEncoded } from "./pre-encoded.js";

export type { CallInterceptor, CallScope } from "./intercept.js";

/**
 * Runs before every call of a wrapped service, with the call's context (read
 * `ctx.requestHeader`, set `ctx.values`). Throw a DomainError/ConnectError
 * (e.g. unauthenticated) to refuse the call.
 */
export type RequestHook = (ctx: HandlerContext, method: DescMethod) => Promise<void>;

/**
 * The loose shape every `ServiceImpl<T>` (or `Partial<ServiceImpl<T>>`) object
 * fits. Class instances do not (no index signature): pass them through `served()`.
 */
export type AnyServiceImpl = { readonly [method: string]: ((...args: never[]) => unknown) | undefined };

/** A service and its implementation, as the servers take them. */
export interface ServedService {
  readonly service: DescService;
  readonly impl: AnyServiceImpl;
}

/** Type-checked construction of a ServedService (implementation matched to its descriptor). */
export function served<T extends DescService>(service: T, impl: Partial<ServiceImpl<T>>): ServedService {
  return { service, impl: impl as unknown as AnyServiceImpl };
}

export interface WrapOptions {
  hooks?: readonly RequestHook[];
  /** Where unexpected (non-domain) errors are logged; console.error when absent. */
  log?: ErrorLogger;
  /**
   * What a PreEncoded yielded by a stream (or returned by a unary method)
   * becomes: "pass" leaves it to the transport (grpc-js writes the bytes),
   * "decode" parses it back into a message (connect-node). Default "decode".
   */
  preEncoded?: "pass" | "decode";
  /** Observe every call (first = outermost); they see the status the client gets. */
  interceptors?: readonly CallInterceptor[];
}

/** Internal calling shapes of wrapped methods (the transports call these). */
export type WrappedUnary = (req: Message, ctx: HandlerContext) => Promise<unknown>;
export type WrappedServerStream = (req: Message, ctx: HandlerContext) => AsyncIterable<unknown>;
export type WrappedMethods = ReadonlyMap<DescMethod, WrappedUnary | WrappedServerStream>;

/** Convert what a handler threw, given the state of its call. */
export function convertError(e: unknown, ctx: HandlerContext, log?: ErrorLogger): ConnectError {
  if (e instanceof DomainError || e instanceof ConnectError) return toConnectError(e);
  if (ctx.signal.aborted) {
    // The call was already over (deadline, client cancel, shutdown): whatever the
    // handler threw is a consequence; report why the call ended.
    const reason: unknown = ctx.signal.reason;
    return reason instanceof ConnectError ? reason : new ConnectError("operation canceled", Code.Canceled);
  }
  return toConnectError(e, log, { rpc: `/${ctx.service.typeName}/${ctx.method.name}` });
}

function unimplemented(service: DescService, method: DescMethod): () => never {
  return () => {
    throw new ConnectError(`${service.typeName}.${method.name} is not implemented`, Code.Unimplemented);
  };
}

/** Wrap every method of `service` (missing ones answer UNIMPLEMENTED), keyed by descriptor. */
export function wrapMethods(service: DescService, impl: AnyServiceImpl, opts: WrapOptions = {}): WrappedMethods {
  const hooks = opts.hooks ?? [];
  const decode = (opts.preEncoded ?? "decode") === "decode";
  const log = opts.log;
  const out = new Map<DescMethod, WrappedUnary | WrappedServerStream>();
  const runHooks = async (ctx: HandlerContext, method: DescMethod) => {
    for (const h of hooks) await h(ctx, method);
  };

  for (const method of service.methods) {
    const found = impl[method.localName];
    const fn = (typeof found === "function" ? found : unimplemented(service, method)) as (
      req: Message,
      ctx: HandlerContext,
    ) => unknown;
    const call = (req: Message, ctx: HandlerContext) => fn.call(impl, req, ctx);

    switch (method.methodKind) {
      case "unary": {
        const wrapped: WrappedUnary = async (req, ctx) => {
          try {
            if (hooks.length > 0) await runHooks(ctx, method);
            const res = await call(req, ctx);
            return decode && res instanceof PreEncoded ? fromBinary(method.output, res.bytes) : res;
          } catch (e) {
            throw convertError(e, ctx, log);
          }
        };
        out.set(method, wrapped);
        break;
      }
      case "server_streaming": {
        const wrapped: WrappedServerStream = async function* (req, ctx) {
          let it: AsyncIterator<unknown> | undefined;
          let pulling = false;
          let done = false;
          const finish = () => {
            if (done) return;
            done = true;
            it?.return?.(undefined).catch(() => undefined);
          };
          // A stream blocked on backpressure (suspended at a yield) when its call is
          // aborted (client gone, deadline, shutdown) may never be resumed by the
          // transport (connect-node waits for a 'drain' that never comes): end the
          // handler's generator here so its finally blocks (unsubscribe…) run.
          // While it is running (awaiting), it sees ctx.signal itself.
          const onAbort = () => {
            if (!pulling) finish();
          };
          ctx.signal.addEventListener("abort", onAbort, { once: true });
          try {
            if (hooks.length > 0) await runHooks(ctx, method);
            it = (call(req, ctx) as AsyncIterable<unknown>)[Symbol.asyncIterator]();
            while (!done) {
              pulling = true;
              const r = await it.next();
              pulling = false;
              if (r.done) {
                done = true;
                break;
              }
              const m = r.value;
              yield decode && m instanceof PreEncoded ? fromBinary(method.output, m.bytes) : m;
            }
          } catch (e) {
            done = true;
            throw convertError(e, ctx, log);
          } finally {
            pulling = false;
            ctx.signal.removeEventListener("abort", onAbort);
            finish(); // the consumer stopped early
          }
          // Ended because the call was aborted (shutdown, deadline): say so, so the
          // client resumes elsewhere instead of taking the end as complete.
          if (ctx.signal.aborted && ctx.signal.reason instanceof ConnectError) throw ctx.signal.reason;
        };
        out.set(method, wrapped);
        break;
      }
      case "client_streaming": {
        const wrapped = async (reqs: AsyncIterable<Message>, ctx: HandlerContext) => {
          try {
            if (hooks.length > 0) await runHooks(ctx, method);
            return await (fn as unknown as (r: AsyncIterable<Message>, c: HandlerContext) => unknown).call(impl, reqs, ctx);
          } catch (e) {
            throw convertError(e, ctx, log);
          }
        };
        out.set(method, wrapped as unknown as WrappedUnary);
        break;
      }
      case "bidi_streaming": {
        const wrapped = async function* (reqs: AsyncIterable<Message>, ctx: HandlerContext) {
          try {
            if (hooks.length > 0) await runHooks(ctx, method);
            yield* (fn as unknown as (r: AsyncIterable<Message>, c: HandlerContext) => AsyncIterable<unknown>).call(impl, reqs, ctx);
          } catch (e) {
            throw convertError(e, ctx, log);
          }
        };
        out.set(method, wrapped as unknown as WrappedServerStream);
        break;
      }
    }
  }
  const interceptors = opts.interceptors ?? [];
  if (interceptors.length > 0) {
    for (const [method, fn] of out) {
      const streaming = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
      out.set(
        method,
        streaming
          ? interceptStream(interceptors, method, fn as WrappedServerStream)
          : interceptUnary(interceptors, method, fn as WrappedUnary),
      );
    }
  }
  return out;
}

/**
 * The same wrapping as a connect ServiceImpl (e.g. for createRouterTransport in
 * unit tests, or any connect router).
 */
export function wrapService<T extends DescService>(
  service: T,
  impl: Partial<ServiceImpl<T>> | AnyServiceImpl,
  opts: WrapOptions = {},
): ServiceImpl<T> {
  const methods = wrapMethods(service, impl as AnyServiceImpl, opts);
  const out: Record<string, unknown> = {};
  for (const [m, fn] of methods) out[m.localName] = fn;
  return out as ServiceImpl<T>;
}
