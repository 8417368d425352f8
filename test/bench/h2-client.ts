// A minimal gRPC caller over node:http2 for load generation: the same
// requests on the wire as any gRPC client (POST, application/grpc,
// length-prefixed messages, status in the trailers), without a general
// client's per-call and per-message machinery. The bench client shares the
// machine's two cores with the server and PostgreSQL: @grpc/grpc-js cost
// ~300 µs of client CPU per unary call, which the server under test then did
// not get, and in the latency bench its per-message work on 200 streams
// showed up as delivery latency that was the client's, not the server's.
import http2 from "node:http2";

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_TE } = http2.constants;

/** An open server-streaming call. */
export interface H2Stream {
  /** Resolves when the server ends the call with OK; rejects with its status otherwise (not after cancel). */
  readonly done: Promise<void>;
  cancel(): void;
}

export class H2GrpcClient {
  private readonly session: http2.ClientHttp2Session;

  /** `headers`: sent with every call (an authorization header, say). */
  constructor(
    address: string,
    private readonly headers: Readonly<Record<string, string>> = {},
  ) {
    this.session = http2.connect(`http://${address}`);
    // A failed session fails its pending calls; nothing else listens for it.
    this.session.on("error", () => undefined);
  }

  /** Calls `path` with one serialized request; resolves with the response bytes, rejects on a non-OK status. */
  call(path: string, body: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const req = this.request(path, body);
      const chunks: Buffer[] = [];
      const status = statusOf(req);
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("error", reject);
      req.on("end", () => {
        const failed = status.failure(path);
        if (failed) {
          reject(failed);
          return;
        }
        const all = Buffer.concat(chunks);
        if (all.length < 5 || all.length < 5 + all.readUInt32BE(1)) reject(new Error(`${path}: incomplete response message`));
        else resolve(all.subarray(5, 5 + all.readUInt32BE(1)));
      });
    });
  }

  /** Calls a server-streaming `path` with one serialized request; `onMessage` gets each response message's bytes as it arrives. */
  stream(path: string, body: Buffer, onMessage: (bytes: Buffer) => void): H2Stream {
    const req = this.request(path, body);
    const status = statusOf(req);
    let cancelled = false;
    let pending: Buffer = Buffer.alloc(0);
    req.on("data", (chunk: Buffer) => {
      let buf = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const end = 5 + buf.readUInt32BE(1);
        onMessage(buf.subarray(5, end));
        buf = buf.subarray(end);
      }
      pending = buf;
    });
    const done = new Promise<void>((resolve, reject) => {
      req.on("error", (e) => (cancelled ? resolve() : reject(e)));
      req.on("close", () => {
        const failed = cancelled ? null : status.failure(path);
        if (failed) reject(failed);
        else resolve();
      });
    });
    return {
      done,
      cancel: () => {
        cancelled = true;
        req.close(http2.constants.NGHTTP2_CANCEL);
      },
    };
  }

  close(): void {
    this.session.close();
  }

  private request(path: string, body: Buffer): http2.ClientHttp2Stream {
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0;
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    const req = this.session.request({
      ...this.headers,
      [HTTP2_HEADER_METHOD]: "POST",
      [HTTP2_HEADER_PATH]: path,
      [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
      [HTTP2_HEADER_TE]: "trailers",
    });
    req.end(frame);
    return req;
  }
}

/** The call's grpc-status, from the trailers (or the headers of a trailers-only response). */
function statusOf(req: http2.ClientHttp2Stream): { failure(path: string): Error | null } {
  let status: string | undefined;
  let message = "";
  const note = (h: http2.IncomingHttpHeaders) => {
    if (h["grpc-status"] === undefined) return;
    status = String(h["grpc-status"]);
    message = decodeURIComponent(String(h["grpc-message"] ?? ""));
  };
  req.on("response", note);
  req.on("trailers", note);
  return { failure: (path) => (status === "0" ? null : new Error(`${path}: grpc-status ${status ?? "missing"} ${message}`)) };
}
