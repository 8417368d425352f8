// connect-node decodes a request message before any interceptor or handler
// runs, and answers bytes it cannot decode (a string field that is not UTF-8,
// a truncated field) with INTERNAL "parse binary: <parser text>" and no
// ErrorInfo; connect-es offers no hook for it. The web server wraps each
// route's handler with `answerMalformedRequests`, which turns that answer into
// the one the grpc-js server gives (grpc-server.ts decodeInput): INVALID_ARGUMENT,
// ErrorInfo MALFORMED_REQUEST. Each protocol carries the error its own way:
// Connect unary in the HTTP status and a JSON body, Connect streams in the
// end-stream message, gRPC in the trailers, gRPC-Web in the trailer frame.
// Only error answers are rewritten; all others pass through unchanged.
import { Code, ConnectError } from "@connectrpc/connect";
import { createAsyncIterable, encodeEnvelope, type UniversalHandler, type UniversalServerRequest, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeStreamRegExp,
  endStreamFlag,
  endStreamFromJson,
  endStreamToJson,
  errorFromJsonBytes,
  errorToJsonBytes,
} from "@connectrpc/connect/protocol-connect";
import { contentTypeRegExp as grpcContentType, findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { contentTypeRegExp as grpcWebContentType, trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { domainErrorToConnectError } from "../error-mapping.js";
import { malformedRequest } from "../errors.js";

/** How connect-node words a request message it could not decode (protocol/serialization.js). */
function isParseFailure(e: ConnectError | undefined): boolean {
  return e !== undefined && e.code === Code.Internal && e.rawMessage.startsWith("parse binary: ");
}

/** `h`, answering a request message connect-node cannot decode with MALFORMED_REQUEST. */
export function answerMalformedRequests(h: UniversalHandler): UniversalHandler {
  const malformed = () => domainErrorToConnectError(malformedRequest(h.method.input.typeName));
  const handler = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const res = await h(req);
    const type = req.header.get("content-type") ?? "";
    if (grpcWebContentType.test(type)) return grpcWeb(res, malformed);
    if (grpcContentType.test(type)) return grpc(res, malformed);
    if (contentTypeStreamRegExp.test(type)) return connectStream(res, malformed);
    return connectUnary(res, malformed);
  };
  return Object.assign(handler, h);
}

/** Connect unary: an error is a non-200 status with the error as JSON. */
async function connectUnary(res: UniversalServerResponse, malformed: () => ConnectError): Promise<UniversalServerResponse> {
  if (res.status === 200 || !res.body || res.header?.has("content-encoding")) return res;
  const chunks: Uint8Array[] = [];
  for await (const c of res.body) chunks.push(c);
  const bytes = Buffer.concat(chunks);
  let error: ConnectError | undefined;
  try {
    error = errorFromJsonBytes(bytes, undefined, new ConnectError("not an error body", Code.Unknown));
  } catch {
    error = undefined;
  }
  if (!isParseFailure(error)) return { ...res, body: createAsyncIterable([bytes]) };
  const e = malformed();
  const body = errorToJsonBytes(e, undefined);
  const header = new Headers(res.header);
  header.set("content-length", String(body.byteLength));
  return { ...res, status: codeToHttpStatus(e.code), header, body: createAsyncIterable([body]) };
}

/** gRPC: the status is in the trailers, already set when decoding failed (before any message). */
function grpc(res: UniversalServerResponse, malformed: () => ConnectError): UniversalServerResponse {
  if (res.trailer && isParseFailure(findTrailerError(res.trailer))) setTrailerStatus(res.trailer, malformed());
  return res;
}

/** Connect streams: the error is in the end-stream message, the only one when decoding failed. */
async function connectStream(res: UniversalServerResponse, malformed: () => ConnectError): Promise<UniversalServerResponse> {
  return rewriteFirstEnvelope(res, endStreamFlag, (data) => {
    const end = endStreamFromJson(data);
    if (!isParseFailure(end.error)) return null;
    return new TextEncoder().encode(JSON.stringify(endStreamToJson(end.metadata, malformed(), undefined)));
  });
}

/** gRPC-Web: the status is in the trailer frame, the only one when decoding failed. */
async function grpcWeb(res: UniversalServerResponse, malformed: () => ConnectError): Promise<UniversalServerResponse> {
  return rewriteFirstEnvelope(res, trailerFlag, (data) => {
    if (!isParseFailure(findTrailerError(trailerParse(data)))) return null;
    const trailer = new Headers();
    setTrailerStatus(trailer, malformed());
    return trailerSerialize(trailer);
  });
}

/**
 * When the body's first chunk is a whole envelope with exactly `flags`
 * (uncompressed), and `rewrite` gives new data for it (null: keep), the body
 * is that envelope alone. The first chunk is already at hand: connect-node's
 * stream handlers wait for it before answering.
 */
async function rewriteFirstEnvelope(res: UniversalServerResponse, flags: number, rewrite: (data: Uint8Array) => Uint8Array | null): Promise<UniversalServerResponse> {
  if (!res.body) return res;
  const it = res.body[Symbol.asyncIterator]();
  let first: IteratorResult<Uint8Array> | null = await it.next();
  const chunk = first.done ? undefined : first.value;
  if (chunk && chunk.byteLength >= 5 && chunk[0] === flags && new DataView(chunk.buffer, chunk.byteOffset + 1, 4).getUint32(0) === chunk.byteLength - 5) {
    let data: Uint8Array | null = null;
    try {
      data = rewrite(chunk.subarray(5));
    } catch {
      data = null; // not what connect-node sends for an error: leave it
    }
    if (data) {
      await it.return?.();
      return { ...res, body: createAsyncIterable([encodeEnvelope(flags, data)]) };
    }
  }
  const replay: AsyncIterator<Uint8Array> = {
    next: () => {
      if (first === null) return it.next();
      const r = first;
      first = null;
      return Promise.resolve(r);
    },
    return: (value?: unknown) => it.return?.(value) ?? Promise.resolve({ done: true, value: undefined }),
    throw: (e?: unknown) => it.throw?.(e) ?? Promise.reject(e),
  };
  return { ...res, body: { [Symbol.asyncIterator]: () => replay } };
}
