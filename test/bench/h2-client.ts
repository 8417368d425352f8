// A minimal gRPC unary caller over node:http2 for load generation: the same
// requests on the wire as any gRPC client (POST, application/grpc, one
// length-prefixed message, status in the trailers), without a general
// client's per-call machinery. The bench client shares the machine's two
// cores with the server and PostgreSQL: @grpc/grpc-js cost ~300 µs of client
// CPU per call, which the server under test then did not get.
import http2 from "node:http2";

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_CONTENT_TYPE, HTTP2_HEADER_TE } = http2.constants;

export class H2UnaryClient {
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
      const chunks: Buffer[] = [];
      let status: string | undefined;
      let message = "";
      const noteStatus = (h: http2.IncomingHttpHeaders) => {
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          message = decodeURIComponent(String(h["grpc-message"] ?? ""));
        }
      };
      req.on("response", noteStatus); // trailers-only responses carry the status here
      req.on("trailers", noteStatus);
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("error", reject);
      req.on("end", () => {
        if (status !== "0") {
          reject(new Error(`${path}: grpc-status ${status ?? "missing"} ${message}`));
          return;
        }
        const all = Buffer.concat(chunks);
        if (all.length < 5 || all.length < 5 + all.readUInt32BE(1)) reject(new Error(`${path}: incomplete response message`));
        else resolve(all.subarray(5, 5 + all.readUInt32BE(1)));
      });
      req.end(frame);
    });
  }

  close(): void {
    this.session.close();
  }
}
