// One SERVER span and one duration measurement per RPC, on both transports
// (installed as a call interceptor in transport/wrap.ts), following the stable
// RPC semantic conventions: span name and `rpc.method` are
// "package.Service/Method", `rpc.system.name` is grpc (grpc-js, or gRPC and
// gRPC-Web through connect-node) or connectrpc (the Connect protocol),
// `rpc.status_code` is the gRPC status name. Only codes that mean the server
// failed mark the span as an error (gRPC's server-side rule): a NOT_FOUND or
// an ABORTED write is the service working as designed.
import { Code } from "@connectrpc/connect";
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
} from "@opentelemetry/api";
import { ATTR_ERROR_TYPE, ATTR_RPC_METHOD, ATTR_RPC_STATUS_CODE, ATTR_RPC_SYSTEM_NAME } from "@opentelemetry/semantic-conventions";
import type { CallInterceptor } from "../transport/wrap.js";
import { instruments } from "./instruments.js";

/** "DeadlineExceeded" -> "DEADLINE_EXCEEDED", for every code. */
const CODE_NAMES = new Map<Code, string>(
  Object.values(Code)
    .filter((v): v is Code => typeof v === "number")
    .map((c) => [c, Code[c].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase()]),
);

const SERVER_FAULTS: ReadonlySet<Code> = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

export function statusName(code: Code | undefined): string {
  return code === undefined ? "OK" : (CODE_NAMES.get(code) ?? String(code));
}

export function isServerFault(code: Code): boolean {
  return SERVER_FAULTS.has(code);
}

const headerGetter: TextMapGetter<Headers> = {
  get: (h, key) => h.get(key) ?? undefined,
  keys: (h) => [...h.keys()],
};

export const rpcTelemetry: CallInterceptor = (ctx, method) => {
  const m = instruments();
  const rpcMethod = `${method.parent.typeName}/${method.name}`;
  const system = ctx.protocolName === "connect" ? "connectrpc" : "grpc";
  const started = performance.now();
  let span: Span | undefined;
  let active: Context | undefined;
  if (m.tracing) {
    // A caller's W3C traceparent makes this span part of its trace.
    const parent = propagation.extract(ROOT_CONTEXT, ctx.requestHeader, headerGetter);
    span = m.tracer.startSpan(rpcMethod, { kind: SpanKind.SERVER, attributes: { [ATTR_RPC_SYSTEM_NAME]: system, [ATTR_RPC_METHOD]: rpcMethod } }, parent);
    active = trace.setSpan(parent, span);
  }
  return {
    run: (fn) => (active ? context.with(active, fn) : fn()),
    end(error) {
      const status = statusName(error?.code);
      const fault = error !== undefined && isServerFault(error.code);
      if (span) {
        span.setAttribute(ATTR_RPC_STATUS_CODE, status);
        if (fault) {
          span.setAttribute(ATTR_ERROR_TYPE, status);
          span.setStatus({ code: SpanStatusCode.ERROR, message: error.rawMessage });
        }
        span.end();
      }
      m.rpcDuration.record((performance.now() - started) / 1000, {
        [ATTR_RPC_SYSTEM_NAME]: system,
        [ATTR_RPC_METHOD]: rpcMethod,
        [ATTR_RPC_STATUS_CODE]: status,
        ...(fault ? { [ATTR_ERROR_TYPE]: status } : {}),
      });
    },
  };
};
