// A typed @grpc/grpc-js client built generically from protobuf-es service
// descriptors (no proto-loader, no generated grpc stubs): unary methods return
// promises, server-streaming methods return async iterables (pulled with
// backpressure). Failures are thrown as ConnectError carrying the gRPC code,
// message, trailers (err.metadata) and the decoded grpc-status-details-bin
// details, so `err.findDetails(BadRequestSchema)` works as with Connect clients.
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { connectErrorFromStatus, headersToMetadata, metadataToHeaders } from "./status.js";

export interface GrpcCallOptions {
  /** Relative deadline for the call. */
  timeoutMs?: number;
  /** Absolute deadline (wins over timeoutMs). */
  deadline?: Date | number;
  /** Request metadata. `-bin` keys take base64 values (as in Connect) when given as Headers/object. */
  headers?: ConstructorParameters<typeof Headers>[0] | grpc.Metadata;
  /** Cancels the call (the call fails with CANCELED). */
  signal?: AbortSignal;
  onHeader?: (headers: Headers) => void;
  onTrailer?: (trailers: Headers) => void;
}

type MethodClient<M> =
  M extends DescMethodUnary<infer I, infer O>
    ? (request: MessageInitShape<I>, options?: GrpcCallOptions) => Promise<MessageShape<O>>
    : M extends DescMethodServerStreaming<infer I, infer O>
      ? (request: MessageInitShape<I>, options?: GrpcCallOptions) => AsyncIterable<MessageShape<O>>
      : never;

/** The methods of `T` (by local name) plus `close()` and the underlying grpc-js client. */
export type GrpcJsClient<T extends DescService> = { [K in keyof T["method"]]: MethodClient<T["method"][K]> } & {
  /** Closes the channel. */
  close(): void;
  /** The underlying grpc-js client (for raw calls, waitForReady, the channel). */
  readonly grpcClient: grpc.Client;
};

function toMetadata(h: GrpcCallOptions["headers"]): grpc.Metadata {
  if (h === undefined) return new grpc.Metadata();
  if (h instanceof grpc.Metadata) return h;
  return headersToMetadata(new Headers(h));
}

function callOptions(o: GrpcCallOptions | undefined): grpc.CallOptions {
  if (o?.deadline !== undefined) return { deadline: o.deadline };
  if (o?.timeoutMs !== undefined) return { deadline: Date.now() + o.timeoutMs };
  return {};
}

function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === "number" && "metadata" in e;
}

/** grpc-js failure → ConnectError with decoded details. */
export function fromGrpcError(e: unknown): ConnectError {
  if (e instanceof ConnectError) return e;
  if (isServiceError(e)) return connectErrorFromStatus(e.code, e.details, e.metadata, e);
  return new ConnectError(e instanceof Error ? e.message : String(e), Code.Unknown, undefined, undefined, e);
}

const toBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/**
 * A grpc-js client of `service` at `address` ("host:port"); insecure unless
 * `creds` are given (e.g. `grpc.credentials.createSsl(ca, key, cert)`).
 */
export function createGrpcJsClient<T extends DescService>(
  service: T,
  address: string,
  creds: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options: grpc.ClientOptions = {},
): GrpcJsClient<T> {
  const client = new grpc.Client(address, creds, options);
  const out: Record<string, unknown> = {
    close: () => client.close(),
    grpcClient: client,
  };

  for (const method of service.methods) {
    const path = `/${service.typeName}/${method.name}`;
    const input: DescMessage = method.input;
    const output: DescMessage = method.output;
    const serialize = (req: MessageInitShape<DescMessage>) => toBuffer(toBinary(input, create(input, req)));
    const deserialize = (b: Buffer) => fromBinary(output, b);

    if (method.methodKind === "unary") {
      out[method.localName] = (req: MessageInitShape<DescMessage>, o?: GrpcCallOptions) =>
        new Promise((resolve, reject) => {
          const call = client.makeUnaryRequest(path, serialize, deserialize, req, toMetadata(o?.headers), callOptions(o), (err, res) =>
            err ? reject(fromGrpcError(err)) : resolve(res),
          );
          if (o?.onHeader) call.on("metadata", (md: grpc.Metadata) => o.onHeader?.(metadataToHeaders(md)));
          if (o?.onTrailer) call.on("status", (s: grpc.StatusObject) => o.onTrailer?.(metadataToHeaders(s.metadata)));
          if (o?.signal) {
            if (o.signal.aborted) call.cancel();
            else o.signal.addEventListener("abort", () => call.cancel(), { once: true });
          }
        });
    } else if (method.methodKind === "server_streaming") {
      out[method.localName] = (req: MessageInitShape<DescMessage>, o?: GrpcCallOptions) => ({
        async *[Symbol.asyncIterator]() {
          const call = client.makeServerStreamRequest(path, serialize, deserialize, req, toMetadata(o?.headers), callOptions(o));
          // The iterator below reports errors; this keeps a late status (e.g. the
          // CANCELLED of our own cancel after an early break) from being unhandled.
          call.on("error", () => undefined);
          if (o?.onHeader) call.on("metadata", (md: grpc.Metadata) => o.onHeader?.(metadataToHeaders(md)));
          if (o?.onTrailer) call.on("status", (s: grpc.StatusObject) => o.onTrailer?.(metadataToHeaders(s.metadata)));
          const onAbort = () => call.cancel();
          if (o?.signal) {
            if (o.signal.aborted) call.cancel();
            else o.signal.addEventListener("abort", onAbort, { once: true });
          }
          try {
            for await (const m of call) yield m;
          } catch (e) {
            throw fromGrpcError(e);
          } finally {
            o?.signal?.removeEventListener("abort", onAbort);
            call.cancel(); // no-op when the call already ended; stops it when the consumer broke out early
          }
        },
      });
    }
  }
  return out as GrpcJsClient<T>;
}
