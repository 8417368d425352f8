// Native gRPC over @grpc/grpc-js, serving connect ServiceImpls written against
// protobuf-es types. Handlers are built generically from the descriptors:
// request bytes are decoded with fromBinary here, or a hand decoder given for
// a hot message type (so a malformed message is INVALID_ARGUMENT, not
// grpc-js's INTERNAL), responses are encoded with
// toBinary here (so a stream can yield PreEncoded bytes that go out as-is),
// and grpc-js only frames bytes. Each call gets a connect HandlerContext:
//   ctx.requestHeader  ← grpc metadata (binary `-bin` values base64)
//   ctx.timeoutMs()    ← the grpc deadline; ctx.signal aborts at the deadline,
//                        on client cancel, and (streams) on server shutdown
//   ctx.responseHeader / ctx.responseTrailer → sent as grpc metadata
//   ctx.values.get(peerKey) → remote address and mTLS client certificate
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import type { ErrorLogger } from "../error-mapping.js";
import { domainErrorToConnectError, toConnectError } from "../error-mapping.js";
import { malformedRequest } from "../errors.js";
import { HealthState } from "../health.js";
import { Health } from "../../../gen/health/v1/health_pb.js";
import { PreEncoded } from "./pre-encoded.js";
import { CallContext } from "./call-context.js";
import { lazyPeer, peerKey } from "./peer.js";
import { addReflection } from "./reflection.js";
import { grpcStatusFromConnectError, hasEntries, headersToMetadata, metadataToHeaders } from "./status.js";
import {
  wrapMethods,
  type CallInterceptor,
  type RequestHook,
  type ServedService,
  type WrappedServerStream,
  type WrappedUnary,
} from "./wrap.js";

export { PreEncoded, preEncoded } from "./pre-encoded.js";

export const DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024;
export const SHUTDOWN_MESSAGE = "server shutting down";

export interface GrpcTls {
  /** PEM certificate chain of the server. */
  certChain: Buffer;
  /** PEM private key of the server. */
  privateKey: Buffer;
  /** PEM CA bundle used to verify client certificates (mTLS). */
  rootCerts?: Buffer | undefined;
  /** Refuse clients without a certificate signed by rootCerts. */
  requireClientCert?: boolean | undefined;
}

export interface GrpcKeepalive {
  /** Ping an idle connection after this long (grpc.keepalive_time_ms). */
  timeMs?: number;
  /** Close it if the ping is not answered within this (grpc.keepalive_timeout_ms). */
  timeoutMs?: number;
  /** Close connections idle this long (grpc.max_connection_idle_ms). */
  maxConnectionIdleMs?: number;
  /** Recycle connections after this long, so clients rebalance (grpc.max_connection_age_ms). */
  maxConnectionAgeMs?: number;
  /** Grace for calls on a recycled connection (grpc.max_connection_age_grace_ms). */
  maxConnectionAgeGraceMs?: number;
}

export interface TransportLogger extends ErrorLogger {
  warn(obj: object, msg?: string): void;
}

export interface GrpcServerOptions {
  host: string;
  /** 0 picks a free port (read it from the result). */
  port: number;
  services: readonly ServedService[];
  /** Served as grpc.health.v1.Health; each served service is registered in it (NOT_SERVING until set). */
  health: HealthState;
  /** Run before every call of `services` (not Health/reflection). */
  hooks?: readonly RequestHook[];
  /** Observe every call of `services` (not Health/reflection): telemetry. */
  interceptors?: readonly CallInterceptor[];
  tls?: GrpcTls | undefined;
  /** Default 4 MiB; larger requests fail with RESOURCE_EXHAUSTED. */
  maxReceiveMessageBytes?: number | undefined;
  /** Default unlimited. */
  maxSendMessageBytes?: number | undefined;
  keepalive?: GrpcKeepalive | undefined;
  log?: TransportLogger | undefined;
  /**
   * Hand decoders of hot request messages, by message type name. Each returns
   * what fromBinary would, or null for bytes it leaves to fromBinary.
   */
  fastDecoders?: ReadonlyMap<string, FastDecoder> | undefined;
}

export type FastDecoder = (bytes: Buffer) => Message | null;

export interface RunningGrpcServer {
  port: number;
  server: grpc.Server;
  /**
   * Graceful stop: health NOT_SERVING, stop accepting (GOAWAY), open server
   * streams aborted (they end with UNAVAILABLE "server shutting down"),
   * in-flight unary calls get up to graceMs, then everything is cut.
   * Idempotent.
   */
  shutdown(graceMs: number): Promise<void>;
}

type Ctx = CallContext;
interface ActiveCall {
  readonly stream: boolean;
  readonly ctx: Ctx;
}

const consoleLogger: TransportLogger = {
  error: (obj, msg) => console.error(msg ?? "error", obj),
  warn: (obj, msg) => console.warn(msg ?? "warning", obj),
};

/**
 * The reason a finished call's context is aborted with (releasing its deadline
 * timer and listeners). A shared instance: aborting without a reason makes
 * Node build a DOMException with a stack trace on every call.
 */
const CALL_ENDED = new ConnectError("the call ended", Code.Canceled);

const identity = (b: Buffer): Buffer => b;
const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function encodeOutput(schema: DescMessage, value: unknown): Uint8Array {
  if (value instanceof PreEncoded) return value.bytes;
  return toBinary(schema, create(schema, value as Message));
}

function decodeInput(schema: DescMessage, bytes: Buffer, fast: FastDecoder | undefined): Message | ConnectError {
  try {
    return fast?.(bytes) ?? fromBinary(schema, bytes);
  } catch {
    return domainErrorToConnectError(malformedRequest(schema.typeName));
  }
}

function statusOf(e: unknown, ctx: Ctx | undefined, log: ErrorLogger) {
  const ce = e instanceof ConnectError ? e : toConnectError(e, log);
  return grpcStatusFromConnectError(ce, ctx?.responseTrailerIfUsed());
}

/** Headers a handler set, as grpc metadata (undefined: none). */
function metadataOf(headers: Headers | undefined): grpc.Metadata | undefined {
  return headers && hasEntries(headers) ? headersToMetadata(headers) : undefined;
}

/** Resolves when the stream can take more (or will never: closed/cancelled). */
function writable(call: grpc.ServerWritableStream<Buffer, Uint8Array>): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      call.off("close", done);
      call.off("finish", done);
      call.off("cancelled", done);
      resolve();
    };
    call.on("drain", done);
    call.on("close", done);
    call.on("finish", done);
    call.on("cancelled", done);
  });
}

function bindAddress(host: string, port: number): string {
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `${h}:${port}`;
}

function serverOptions(o: GrpcServerOptions): grpc.ServerOptions {
  const opts: grpc.ServerOptions = {
    "grpc.max_receive_message_length": o.maxReceiveMessageBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    // channelz keeps per-call counters and traces nobody reads here (no
    // channelz service is served); ~3% of a unary call's CPU.
    "grpc.enable_channelz": 0,
  };
  if (o.maxSendMessageBytes !== undefined) opts["grpc.max_send_message_length"] = o.maxSendMessageBytes;
  const k = o.keepalive;
  if (k?.timeMs !== undefined) opts["grpc.keepalive_time_ms"] = k.timeMs;
  if (k?.timeoutMs !== undefined) opts["grpc.keepalive_timeout_ms"] = k.timeoutMs;
  if (k?.maxConnectionIdleMs !== undefined) opts["grpc.max_connection_idle_ms"] = k.maxConnectionIdleMs;
  if (k?.maxConnectionAgeMs !== undefined) opts["grpc.max_connection_age_ms"] = k.maxConnectionAgeMs;
  if (k?.maxConnectionAgeGraceMs !== undefined) opts["grpc.max_connection_age_grace_ms"] = k.maxConnectionAgeGraceMs;
  return opts;
}

function credentials(tls: GrpcTls | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  if (tls.requireClientCert && !tls.rootCerts) throw new Error("requireClientCert needs rootCerts to verify client certificates");
  return grpc.ServerCredentials.createSsl(
    tls.rootCerts ?? null,
    [{ cert_chain: tls.certChain, private_key: tls.privateKey }],
    tls.requireClientCert ?? false,
  );
}

export async function startGrpcServer(opts: GrpcServerOptions): Promise<RunningGrpcServer> {
  const log = opts.log ?? consoleLogger;
  const health = opts.health;
  const server = new grpc.Server(serverOptions(opts));
  const active = new Set<ActiveCall>();
  const scheme = opts.tls ? "https" : "http";
  const isTls = opts.tls !== undefined;

  const newContext = (call: grpc.ServerUnaryCall<Buffer, Uint8Array> | grpc.ServerWritableStream<Buffer, Uint8Array>, service: ServedService["service"], method: DescMethod): Ctx => {
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    const contextValues = createContextValues();
    contextValues.set(
      peerKey,
      lazyPeer(() => call.getPeer(), isTls, () => call.getAuthContext().sslPeerCertificate),
    );
    return new CallContext(
      service,
      method,
      `${scheme}://${call.getHost()}/${service.typeName}/${method.name}`,
      contextValues,
      Number.isFinite(deadlineMs) ? deadlineMs : undefined,
      () => metadataToHeaders(call.metadata),
    );
  };

  const unaryHandler =
    (
      service: ServedService["service"],
      method: DescMethod,
      fn: WrappedUnary,
      fast = opts.fastDecoders?.get(method.input.typeName),
    ): grpc.handleUnaryCall<Buffer, Uint8Array> =>
    (call, callback) => {
      const req = decodeInput(method.input, call.request, fast);
      if (req instanceof ConnectError) {
        callback(statusOf(req, undefined, log));
        return;
      }
      const ctx = newContext(call, service, method);
      const entry: ActiveCall = { stream: false, ctx };
      active.add(entry);
      const onCancel = () => ctx.abort(new ConnectError("the client canceled the call", Code.Canceled));
      call.once("cancelled", onCancel);
      const sendHeader = () => {
        const header = metadataOf(ctx.responseHeaderIfUsed());
        if (header) call.sendMetadata(header);
      };
      fn(req, ctx)
        .then(
          (res) => {
            let bytes: Uint8Array;
            try {
              bytes = encodeOutput(method.output, res);
            } catch (e) {
              sendHeader();
              callback(statusOf(e, ctx, log));
              return;
            }
            sendHeader();
            callback(null, bytes, metadataOf(ctx.responseTrailerIfUsed()));
          },
          (e: unknown) => {
            sendHeader();
            callback(statusOf(e, ctx, log));
          },
        )
        .finally(() => {
          call.off("cancelled", onCancel);
          active.delete(entry);
          ctx.abort(CALL_ENDED);
        });
    };

  const pump = async (call: grpc.ServerWritableStream<Buffer, Uint8Array>, ctx: Ctx, method: DescMethod, source: AsyncIterable<unknown>) => {
    const it = source[Symbol.asyncIterator]();
    let finished = false;
    let headerSent = false;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          finished = true;
          break;
        }
        if (call.cancelled) return;
        const bytes = encodeOutput(method.output, r.value);
        if (!headerSent) {
          headerSent = true;
          const header = metadataOf(ctx.responseHeaderIfUsed());
          if (header) call.sendMetadata(header);
        }
        if (!call.write(bytes)) {
          // Backpressure: the client (or the network) is slower than the handler.
          // Stop pulling from the generator until grpc-js has room again.
          await writable(call);
          if (call.cancelled || call.destroyed) return;
        }
      }
      if (!call.cancelled) call.end(metadataOf(ctx.responseTrailerIfUsed()));
    } catch (e) {
      finished = true; // a generator that threw is done
      if (!call.cancelled && !call.destroyed) call.emit("error", statusOf(e, ctx, log));
    } finally {
      // Client gone (or encoding failed): stop the handler. Not awaited: a
      // generator suspended in an await only returns once that settles, and
      // it sees ctx.signal aborted.
      if (!finished) it.return?.(undefined).catch(() => undefined);
    }
  };

  const streamHandler =
    (
      service: ServedService["service"],
      method: DescMethod,
      fn: WrappedServerStream,
      fast = opts.fastDecoders?.get(method.input.typeName),
    ): grpc.handleServerStreamingCall<Buffer, Uint8Array> =>
    (call) => {
      const req = decodeInput(method.input, call.request, fast);
      if (req instanceof ConnectError) {
        call.emit("error", statusOf(req, undefined, log));
        return;
      }
      const ctx = newContext(call, service, method);
      const entry: ActiveCall = { stream: true, ctx };
      active.add(entry);
      const onCancel = () => ctx.abort(new ConnectError("the client canceled the call", Code.Canceled));
      call.once("cancelled", onCancel);
      void pump(call, ctx, method, fn(req, ctx)).finally(() => {
        call.off("cancelled", onCancel);
        active.delete(entry);
        ctx.abort(CALL_ENDED);
      });
    };

  const addService = (s: ServedService, hooks: readonly RequestHook[] | undefined, interceptors?: readonly CallInterceptor[]) => {
    const wrapped = wrapMethods(s.service, s.impl, { hooks, interceptors, log, preEncoded: "pass" });
    const definition: Record<string, grpc.MethodDefinition<Buffer, Uint8Array>> = {};
    const impl: grpc.UntypedServiceImplementation = {};
    for (const method of s.service.methods) {
      const fn = wrapped.get(method);
      if (!fn) continue;
      const path = `/${s.service.typeName}/${method.name}`;
      const common = {
        path,
        originalName: method.localName,
        requestSerialize: asBuffer,
        requestDeserialize: identity,
        responseSerialize: asBuffer,
        responseDeserialize: identity,
      };
      if (method.methodKind === "unary") {
        definition[method.name] = { ...common, requestStream: false, responseStream: false };
        impl[method.name] = unaryHandler(s.service, method, fn as WrappedUnary);
      } else if (method.methodKind === "server_streaming") {
        definition[method.name] = { ...common, requestStream: false, responseStream: true };
        impl[method.name] = streamHandler(s.service, method, fn as WrappedServerStream);
      } else {
        log.warn({ rpc: path, kind: method.methodKind }, "grpc transport: method kind not supported; calls get UNIMPLEMENTED");
      }
    }
    server.addService(definition as grpc.ServiceDefinition, impl);
  };

  const all = [...opts.services];
  for (const s of opts.services) health.register(s.service.typeName);
  if (!opts.services.some((s) => s.service.typeName === Health.typeName)) {
    const h: ServedService = { service: Health, impl: health.impl() };
    all.push(h);
    addService(h, undefined); // probes carry no credentials: no hooks on Health
  }
  for (const s of opts.services) addService(s, opts.hooks, opts.interceptors);
  addReflection(
    server,
    all.map((s) => s.service),
  );

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(bindAddress(opts.host, opts.port), credentials(opts.tls), (err, p) => (err ? reject(err) : resolve(p)));
  });

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs: number): Promise<void> =>
    (stopping ??= (async () => {
      health.enterTerminalState();
      const closed = new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      const reason = new ConnectError(SHUTDOWN_MESSAGE, Code.Unavailable);
      for (const c of active) if (c.stream) c.ctx.abort(reason);
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        closed.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), Math.max(0, graceMs)))),
      ]);
      clearTimeout(timer);
      if (timedOut) {
        if (active.size > 0) log.warn({ calls: active.size, graceMs }, "grpc shutdown: grace period over, cutting remaining calls");
        for (const c of active) c.ctx.abort(reason);
        server.forceShutdown();
      }
    })());

  return { port, server, shutdown };
}
