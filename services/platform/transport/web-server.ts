// Connect (JSON and binary) and gRPC-Web for browsers and curl, via
// connect-node, on an HTTP/1.1-capable listener: plain `http` without TLS
// (Node's cleartext HTTP/2 server cannot also speak HTTP/1.1), and
// `http2.createSecureServer({ allowHTTP1: true })` with TLS, where ALPN also
// allows native gRPC over HTTP/2. Same services, same wrapper (hooks and error
// mapping) as the grpc-js server.
import * as http from "node:http";
import * as http2 from "node:http2";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, cors as connectCors, createContextValues, type MethodImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health } from "../../../gen/health/v1/health_pb.js";
import type { HealthState } from "../health.js";
import { DEFAULT_MAX_RECEIVE_MESSAGE_BYTES, SHUTDOWN_MESSAGE, type GrpcTls, type TransportLogger } from "./grpc-server.js";
import { answerMalformedRequests } from "./malformed-request.js";
import { lazyPeer, peerKey } from "./peer.js";
import { wrapMethods, type CallInterceptor, type RequestHook, type ServedService } from "./wrap.js";

export interface CorsOptions {
  /** "*" (default, development) or the exact origins allowed, e.g. ["https://crm.example.com"]. */
  allowedOrigins?: "*" | readonly string[];
  /** Request headers browsers may send besides Connect's own (default: authorization, x-deltamesh-*). */
  extraAllowedHeaders?: readonly string[];
  /** Response headers browsers may read besides Connect's own. */
  extraExposedHeaders?: readonly string[];
  /** Allow cookies/credentials (echoes the origin instead of "*"). */
  allowCredentials?: boolean;
  /** How long browsers may cache a preflight answer (default 7200 s). */
  maxAgeSeconds?: number;
}

export interface WebServerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  services: readonly ServedService[];
  health: HealthState;
  hooks?: readonly RequestHook[];
  /** Observe every call of `services` (not Health): telemetry. */
  interceptors?: readonly CallInterceptor[];
  /** With TLS: HTTP/2 + HTTP/1.1 via ALPN (gRPC too). Without: HTTP/1.1 only. */
  tls?: GrpcTls | undefined;
  /** Largest request message accepted (default 4 MiB); larger → RESOURCE_EXHAUSTED. */
  readMaxBytes?: number | undefined;
  /** CORS for browsers; default allows every origin. `false` sends no CORS headers. */
  cors?: CorsOptions | false | undefined;
  log?: TransportLogger | undefined;
}

export interface RunningWebServer {
  port: number;
  server: http.Server | http2.Http2SecureServer;
  /** Same contract as the grpc server's: NOT_SERVING, streams end UNAVAILABLE, unary calls get graceMs. */
  shutdown(graceMs: number): Promise<void>;
}

type NodeHandler = ReturnType<typeof connectNodeAdapter>;
type NodeServerRequest = Parameters<NodeHandler>[0];
type NodeServerResponse = Parameters<NodeHandler>[1];

const DEFAULT_EXTRA_HEADERS = ["Authorization", "X-Deltamesh-Subject", "X-Deltamesh-Tenant", "X-Request-Id"];

const consoleLogger: TransportLogger = {
  error: (obj, msg) => console.error(msg ?? "error", obj),
  warn: (obj, msg) => console.warn(msg ?? "warning", obj),
};

type CorsFn = (req: NodeServerRequest, res: NodeServerResponse) => boolean;

/** Adds CORS headers; answers a preflight itself (returns true then). */
function corsHandler(o: CorsOptions | false | undefined): CorsFn {
  if (o === false) return () => false;
  const allowAll = (o?.allowedOrigins ?? "*") === "*";
  const origins = new Set(allowAll ? [] : (o?.allowedOrigins as readonly string[]));
  const credentials = o?.allowCredentials === true;
  const allowHeaders = [...connectCors.allowedHeaders, ...DEFAULT_EXTRA_HEADERS, ...(o?.extraAllowedHeaders ?? [])].join(", ");
  const exposeHeaders = [...connectCors.exposedHeaders, ...(o?.extraExposedHeaders ?? [])].join(", ");
  const allowMethods = connectCors.allowedMethods.join(", ");
  const maxAge = String(o?.maxAgeSeconds ?? 7200);
  return (req, res) => {
    const origin = req.headers.origin;
    if (typeof origin !== "string") return false;
    if (!allowAll && !origins.has(origin)) return false;
    res.setHeader("Access-Control-Allow-Origin", allowAll && !credentials ? "*" : origin);
    if (!allowAll || credentials) res.setHeader("Vary", "Origin");
    if (credentials) res.setHeader("Access-Control-Allow-Credentials", "true");
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      res.writeHead(204, {
        "Access-Control-Allow-Methods": allowMethods,
        "Access-Control-Allow-Headers": allowHeaders,
        "Access-Control-Max-Age": maxAge,
      });
      res.end();
      return true;
    }
    res.setHeader("Access-Control-Expose-Headers", exposeHeaders);
    return false;
  };
}

/**
 * HTTP/1.1: when the response starts before the request body was fully read
 * (an oversize body refused by readMaxBytes, a bad envelope), close the
 * connection after the response. Kept alive, the unread rest of the body
 * poisons the connection and the client's next request on it hangs (seen
 * with connect-node clients).
 */
function closeIfAnsweredEarly(req: http.IncomingMessage, res: http.ServerResponse): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: http.ServerResponse, ...args: unknown[]) {
    if (!req.complete) this.shouldKeepAlive = false;
    return (writeHead as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof res.writeHead;
}

export async function startWebServer(opts: WebServerOptions): Promise<RunningWebServer> {
  const log = opts.log ?? consoleLogger;
  const health = opts.health;
  const streamShutdown = new AbortController();
  const isTls = opts.tls !== undefined;

  type Entry = { s: ServedService; hooks: readonly RequestHook[] | undefined; interceptors?: readonly CallInterceptor[] | undefined };
  const all: Entry[] = opts.services.map((s) => ({ s, hooks: opts.hooks, interceptors: opts.interceptors }));
  for (const s of opts.services) health.register(s.service.typeName);
  if (!opts.services.some((s) => s.service.typeName === Health.typeName)) {
    all.push({ s: { service: Health, impl: health.impl() }, hooks: undefined });
  }

  const adapter = connectNodeAdapter({
    readMaxBytes: opts.readMaxBytes ?? DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    routes(router) {
      for (const { s, hooks, interceptors } of all) {
        for (const [method, fn] of wrapMethods(s.service, s.impl, { hooks, interceptors, log, preEncoded: "decode" })) {
          const streaming = method.methodKind !== "unary" && method.methodKind !== "client_streaming";
          // Only streams see the shutdown signal: unary calls in flight are let finish.
          router.rpc(method, fn as unknown as MethodImpl<DescMethod>, streaming ? { shutdownSignal: streamShutdown.signal } : {});
        }
      }
      // Request bytes connect-node cannot decode get the grpc port's answer
      // (malformed-request.ts). The adapter serves router.handlers as they are after routes().
      router.handlers.splice(0, router.handlers.length, ...router.handlers.map(answerMalformedRequests));
    },
    contextValues(req) {
      const values = createContextValues();
      const socket = req.socket as Socket | TLSSocket;
      values.set(
        peerKey,
        lazyPeer(
          () => `${socket.remoteAddress ?? "unknown"}:${socket.remotePort ?? 0}`,
          isTls,
          () => {
            const cert = (socket as TLSSocket).getPeerCertificate?.();
            return cert && (socket as TLSSocket).authorized && Object.keys(cert).length > 0 ? cert : undefined;
          },
        ),
      );
      return values;
    },
  });

  const cors = corsHandler(opts.cors);
  let inflight = 0;
  let closing = false;
  let onIdle: (() => void) | undefined;
  const listener = (req: NodeServerRequest, res: NodeServerResponse) => {
    if (cors(req, res)) return;
    if (req.httpVersionMajor === 1) closeIfAnsweredEarly(req as http.IncomingMessage, res as http.ServerResponse);
    inflight++;
    res.once("close", () => {
      inflight--;
      if (closing && inflight === 0) onIdle?.();
    });
    adapter(req, res);
  };

  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  let server: http.Server | http2.Http2SecureServer;
  if (opts.tls) {
    const t = opts.tls;
    const s = http2.createSecureServer(
      {
        allowHTTP1: true,
        cert: t.certChain,
        key: t.privateKey,
        ca: t.rootCerts,
        requestCert: t.rootCerts !== undefined,
        rejectUnauthorized: t.requireClientCert ?? false,
      },
      listener as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    s.on("secureConnection", (sock: TLSSocket) => {
      sockets.add(sock);
      sock.once("close", () => sockets.delete(sock));
    });
    s.on("session", (sess) => {
      sessions.add(sess);
      sess.once("close", () => sessions.delete(sess));
    });
    server = s;
  } else {
    const s = http.createServer(listener as http.RequestListener);
    s.on("connection", (sock) => {
      sockets.add(sock);
      sock.once("close", () => sockets.delete(sock));
    });
    server = s;
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;

  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs: number): Promise<void> =>
    (stopping ??= (async () => {
      closing = true;
      health.enterTerminalState();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      streamShutdown.abort(new ConnectError(SHUTDOWN_MESSAGE, Code.Unavailable));
      if (server instanceof http.Server) server.closeIdleConnections();
      for (const sess of sessions) sess.close(); // GOAWAY: no new streams, open ones finish
      const idle = inflight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (onIdle = resolve));
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        idle.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), Math.max(0, graceMs)))),
      ]);
      clearTimeout(timer);
      if (timedOut && inflight > 0) log.warn({ calls: inflight, graceMs }, "web shutdown: grace period over, cutting remaining calls");
      // Nothing in flight (or out of time): drop keep-alive connections so close() completes.
      if (server instanceof http.Server) server.closeAllConnections();
      for (const sess of sessions) sess.destroy();
      for (const sock of sockets) sock.destroy();
      await closed;
    })());

  return { port, server, shutdown };
}
