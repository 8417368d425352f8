// Connect + gRPC-Web transport (connect-node on HTTP/1.1) over real sockets:
// plain fetch with JSON, Connect clients (JSON and binary), gRPC-Web clients.
import net from "node:net";
import { create, type DescMessage, type DescMethodServerStreaming, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { endStreamFlag, endStreamFromJson, errorFromJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse } from "@connectrpc/connect/protocol-grpc-web";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus as S } from "../../../gen/health/v1/health_pb.js";
import { HealthState } from "../../../services/platform/health.js";
import { startWebServer } from "../../../services/platform/transport/web-server.js";
import { served } from "../../../services/platform/transport/wrap.js";
import { createTestRecordService, notUtf8Request, Probe, sleep, startServers, until, type Servers } from "./fixtures.js";
import { CountMethod, CountRequestSchema, StreamTestService, type CountResponse } from "./test-protos.js";

const ref = (id: string) => ({ collection: "customers", target: { case: "id" as const, value: id } });

async function expectConnectError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectError);
    return e as ConnectError;
  }
  throw new Error("expected the call to fail");
}

function streamCount(transport: Transport, req: MessageInitShape<DescMessage>, signal?: AbortSignal): AsyncIterable<CountResponse> {
  const method = CountMethod as DescMethodServerStreaming;
  return (async function* () {
    const res = await transport.stream(method, signal, undefined, undefined, (async function* () {
      yield create(CountRequestSchema, req);
    })(), undefined);
    for await (const m of res.message) yield m as CountResponse;
  })();
}

describe("connect-node transport (HTTP/1.1)", () => {
  let s: Servers;
  let connectJson: Transport;
  let connectBinary: Transport;
  let grpcWeb: Transport;
  let recordsJson: Client<typeof RecordService>;
  let recordsWeb: Client<typeof RecordService>;

  beforeAll(async () => {
    s = await startServers({ web: { readMaxBytes: 1024 * 1024 } });
    connectJson = createConnectTransport({ baseUrl: s.webUrl, httpVersion: "1.1", useBinaryFormat: false });
    connectBinary = createConnectTransport({ baseUrl: s.webUrl, httpVersion: "1.1", useBinaryFormat: true });
    grpcWeb = createGrpcWebTransport({ baseUrl: s.webUrl, httpVersion: "1.1" });
    recordsJson = createClient(RecordService, connectJson);
    recordsWeb = createClient(RecordService, grpcWeb);
  });
  afterAll(async () => {
    await s?.stop();
  });

  it("answers Connect JSON over plain fetch (HTTP/1.1)", async () => {
    const res = await fetch(`${s.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-deltamesh-tenant": "acme" },
      body: JSON.stringify({ ref: { collection: "customers", id: "c9" } }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/application\/json/);
    const body = (await res.json()) as { record: { id: string; tenant: string; version: string; fields: Record<string, { stringValue: string }> } };
    expect(body.record.id).toBe("c9");
    expect(body.record.tenant).toBe("acme");
    expect(body.record.version).toBe("1");
    expect(body.record.fields.protocol?.stringValue).toBe("connect");
  });

  it("sends domain errors as Connect JSON errors with details (plain fetch)", async () => {
    const res = await fetch(`${s.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ref: { collection: "customers", id: "invalid" } }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; message: string; details: { type: string }[] };
    expect(body.code).toBe("invalid_argument");
    expect(body.message).toBe("the request has 2 invalid fields");
    expect(body.details.map((d) => d.type)).toEqual(["google.rpc.ErrorInfo", "google.rpc.BadRequest"]);
  });

  it("hides unexpected errors (plain fetch)", async () => {
    const res = await fetch(`${s.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ref: { collection: "customers", id: "secret" } }),
    });
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ code: "internal", message: "internal error" });
    expect(text).not.toMatch(/secret|hunter2/);
  });

  it("rejects malformed JSON with invalid_argument and keeps serving", async () => {
    const res = await fetch(`${s.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe("invalid_argument");
    expect((await recordsJson.getRecord({ ref: ref("still-up") })).record?.id).toBe("still-up");
  });

  it("answers a request message it cannot decode with invalid_argument and ErrorInfo MALFORMED_REQUEST, on every protocol", async () => {
    const post = (path: string, contentType: string, body: Uint8Array) => fetch(`${s.webUrl}/${path}`, { method: "POST", headers: { "content-type": contentType }, body });
    const expectMalformed = (e: ConnectError | undefined, messageType: string) => {
      expect(e?.code).toBe(Code.InvalidArgument);
      expect(e?.rawMessage).toContain(`malformed request: the body is not a valid ${messageType} (`);
      expect(e?.findDetails(ErrorInfoSchema)).toEqual([expect.objectContaining({ reason: "MALFORMED_REQUEST", domain: "deltamesh.dev", metadata: { message_type: messageType } })]);
    };
    const notAnError = new ConnectError("not an error", Code.Unknown);

    // Connect unary: a string field that is not UTF-8 (was HTTP 500 internal "parse binary: ...").
    const unary = await post("deltamesh.v1.RecordService/GetRecord", "application/proto", notUtf8Request());
    expect(unary.status).toBe(400);
    expectMalformed(errorFromJsonBytes(new Uint8Array(await unary.arrayBuffer()), undefined, notAnError), "deltamesh.v1.GetRecordRequest");

    // gRPC-Web: the status is in the trailer frame.
    const web = await post("deltamesh.v1.RecordService/GetRecord", "application/grpc-web+proto", encodeEnvelope(0, notUtf8Request()));
    expect(web.status).toBe(200);
    const frame = new Uint8Array(await web.arrayBuffer());
    expect(frame[0]).toBe(trailerFlag);
    expectMalformed(findTrailerError(trailerParse(frame.subarray(5))), "deltamesh.v1.GetRecordRequest");

    // Connect server stream: a truncated field; the error is in the end-stream message.
    const stream = await post(`${StreamTestService.typeName}/${CountMethod.name}`, "application/connect+proto", encodeEnvelope(0, new Uint8Array([0x08])));
    expect(stream.status).toBe(200);
    const end = new Uint8Array(await stream.arrayBuffer());
    expect(end[0]).toBe(endStreamFlag);
    expectMalformed(endStreamFromJson(end.subarray(5)).error, CountRequestSchema.typeName);

    expect((await recordsWeb.getRecord({ ref: ref("still-serving") })).record?.id).toBe("still-serving");
  });

  it("serves Connect clients (JSON and binary) and gRPC-Web, with error details on the client", async () => {
    for (const [transport, protocol] of [
      [connectJson, "connect"],
      [connectBinary, "connect"],
      [grpcWeb, "grpc-web"],
    ] as const) {
      const client = createClient(RecordService, transport);
      const res = await client.getRecord({ ref: ref("c1") }, { headers: { "x-deltamesh-tenant": "t1" }, timeoutMs: 5000 });
      expect(res.record?.id).toBe("c1");
      expect(res.record?.tenant).toBe("t1");
      expect(res.record?.fields.protocol?.kind.value).toBe(protocol);
      expect(res.record?.fields.timeout?.kind.value).toBe("true");

      const err = await expectConnectError(client.getRecord({ ref: ref("invalid") }));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations).toHaveLength(2);
      expect(err.findDetails(ErrorInfoSchema)[0]?.domain).toBe("deltamesh.dev");

      const internal = await expectConnectError(client.getRecord({ ref: ref("secret") }));
      expect(internal.code).toBe(Code.Internal);
      expect(internal.rawMessage).toBe("internal error");
      expect(JSON.stringify(internal)).not.toMatch(/secret|hunter2/);
    }
  });

  it("forwards response headers and trailers (gRPC-Web)", async () => {
    let header: Headers | undefined;
    let trailer: Headers | undefined;
    await recordsWeb.getRecord({ ref: ref("headers") }, { headers: { "x-test": "pong" }, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) });
    expect(header?.get("x-echo")).toBe("pong");
    expect(trailer?.get("x-trailer")).toBe("trailer-value");
  });

  it("runs request hooks (not on Health)", async () => {
    const err = await expectConnectError(recordsJson.getRecord({ ref: ref("c1") }, { headers: { "x-deny": "1" } }));
    expect(err.code).toBe(Code.Unauthenticated);
    const health = createClient(Health, connectJson);
    expect((await health.check({ service: "" }, { headers: { "x-deny": "1" } })).status).toBe(S.SERVING);
  });

  it("honours a short deadline: DEADLINE_EXCEEDED and the handler's signal aborted", async () => {
    const before = s.probe.slowAbortReasons.length;
    const err = await expectConnectError(recordsWeb.getRecord({ ref: ref("slow") }, { timeoutMs: 200 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    await until(() => s.probe.slowAbortReasons.length > before, 2000, "handler abort");
  });

  it("refuses a request over readMaxBytes with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const big = "x".repeat(2 * 1024 * 1024);
    for (const client of [recordsWeb, createClient(RecordService, connectBinary)]) {
      const err = await expectConnectError(
        client.writeRecords({ mutations: [{ ref: ref("big"), set: { blob: { kind: { case: "stringValue", value: big } } } }] }),
      );
      expect(err.code).toBe(Code.ResourceExhausted);
    }
    expect((await recordsJson.getRecord({ ref: ref("after") })).record?.id).toBe("after");
  });

  it("health Check and Watch over Connect", async () => {
    const health = createClient(Health, connectJson);
    expect((await health.check({ service: "deltamesh.v1.RecordService" })).status).toBe(S.SERVING);
    expect((await expectConnectError(health.check({ service: "nope" }))).code).toBe(Code.NotFound);
    const seen: S[] = [];
    const ac = new AbortController();
    const done = (async () => {
      try {
        for await (const r of health.watch({ service: "web.Watched" }, { signal: ac.signal })) seen.push(r.status);
      } catch (e) {
        if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
      }
    })();
    await until(() => seen.length === 1, 3000, "first");
    s.health.setServing("web.Watched", true);
    await until(() => seen.length === 2, 3000, "second");
    ac.abort();
    await done;
    expect(seen).toEqual([S.SERVICE_UNKNOWN, S.SERVING]);
  });

  it("streams pre-encoded messages too (decoded for connect-node), over Connect and gRPC-Web", async () => {
    for (const t of [connectJson, grpcWeb]) {
      for (const preEncoded of [false, true]) {
        const got: number[] = [];
        for await (const m of streamCount(t, { count: 50, payloadBytes: 3, preEncoded })) {
          expect(m.payload).toHaveLength(3);
          got.push(m.n);
        }
        expect(got).toEqual(Array.from({ length: 50 }, (_, i) => i));
      }
    }
  });

  it("ends a failing stream with the mapped error and details", async () => {
    const got: number[] = [];
    const err = await expectConnectError(
      (async () => {
        for await (const m of streamCount(grpcWeb, { count: 50, failAt: 3 })) got.push(m.n);
      })(),
    );
    expect(got).toEqual([0, 1, 2]);
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("SLOW_SUBSCRIBER");
  });

  it("applies backpressure over HTTP/1.1: a slow reader pauses the generator", async () => {
    // HTTP/1.1 has no per-stream flow control: what runs ahead of a paused reader
    // is what the kernel socket buffers hold (here tcp_rmem max is 32 MiB), after
    // which the server's writes wait for 'drain' and the generator is paused.
    const payloadBytes = 64 * 1024;
    const count = 1_000_000;
    const ac = new AbortController();
    const endedBefore = s.probe.streamEnded;
    const it = streamCount(connectBinary, { count, payloadBytes }, ac.signal)[Symbol.asyncIterator]();
    for (let i = 0; i < 3; i++) expect((await it.next()).value?.n).toBe(i);
    let last = -1;
    const deadline = Date.now() + 10_000;
    while (s.probe.produced !== last && Date.now() < deadline) {
      last = s.probe.produced;
      await sleep(300);
    }
    const p1 = s.probe.produced;
    await sleep(500);
    expect(s.probe.produced).toBe(p1); // paused
    expect(p1 * payloadBytes).toBeLessThan(128 * 1024 * 1024); // bounded by socket buffers
    expect(p1).toBeLessThan(count);
    ac.abort();
    await it.return?.();
    await until(() => s.probe.streamEnded > endedBefore, 3000, "generator end");
  }, 20_000);

  it("answers CORS preflights and tags responses for browsers", async () => {
    const pre = await fetch(`${s.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "OPTIONS",
      headers: { origin: "http://app.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe("*");
    expect(pre.headers.get("access-control-allow-methods")).toContain("POST");
    expect(pre.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("authorization");
    expect(pre.headers.get("access-control-allow-headers")?.toLowerCase()).toContain("x-grpc-web");
    const res = await fetch(`${s.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "POST",
      headers: { origin: "http://app.example", "content-type": "application/json" },
      body: JSON.stringify({ ref: { collection: "c", id: "x" } }),
    });
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-expose-headers")?.toLowerCase()).toContain("grpc-status-details-bin");
  });
});

describe("connect-node transport: CORS allow-list", () => {
  it("allows only listed origins", async () => {
    const health = new HealthState();
    const web = await startWebServer({
      host: "127.0.0.1",
      port: 0,
      services: [served(RecordService, createTestRecordService(new Probe()))],
      health,
      cors: { allowedOrigins: ["https://crm.example.com"] },
      log: { error: () => undefined, warn: () => undefined },
    });
    try {
      const url = `http://127.0.0.1:${web.port}/deltamesh.v1.RecordService/GetRecord`;
      const preflight = (origin: string) =>
        fetch(url, { method: "OPTIONS", headers: { origin, "access-control-request-method": "POST" } });
      const ok = await preflight("https://crm.example.com");
      expect(ok.status).toBe(204);
      expect(ok.headers.get("access-control-allow-origin")).toBe("https://crm.example.com");
      expect(ok.headers.get("vary")).toMatch(/origin/i);
      const bad = await preflight("https://evil.example");
      expect(bad.headers.get("access-control-allow-origin")).toBeNull();
    } finally {
      await web.shutdown(100);
    }
  });
});

describe("connect-node transport: graceful shutdown", () => {
  it("flips health, ends an open Watch with UNAVAILABLE, lets a unary call finish, closes the port", async () => {
    const s = await startServers();
    const transport = createGrpcWebTransport({ baseUrl: s.webUrl, httpVersion: "1.1" });
    const health = createClient(Health, transport);
    const records = createClient(RecordService, transport);
    try {
      const seen: S[] = [];
      let streamErr: unknown;
      const watching = (async () => {
        try {
          for await (const r of health.watch({ service: "" })) seen.push(r.status);
        } catch (e) {
          streamErr = e;
        }
      })();
      await until(() => seen.length === 1, 3000, "initial status");

      // A unary call that ends by its own deadline during the grace period.
      const slowStarted = s.probe.untilSlowStarted();
      const slow = records.getRecord({ ref: ref("slow") }, { timeoutMs: 500 }).catch((e: unknown) => e);
      await slowStarted;

      const t = Date.now();
      await s.web.shutdown(5000);
      expect(Date.now() - t).toBeLessThan(3000);
      await watching;
      expect(s.health.get("")).toBe(S.NOT_SERVING);
      expect(seen).toEqual([S.SERVING, S.NOT_SERVING]);
      expect(streamErr).toBeInstanceOf(ConnectError);
      expect((streamErr as ConnectError).code).toBe(Code.Unavailable);
      expect((streamErr as ConnectError).rawMessage).toBe("server shutting down");
      expect(((await slow) as ConnectError).code).toBe(Code.DeadlineExceeded);

      const refused = await new Promise<string>((resolve) => {
        const sock = net.connect(s.web.port, "127.0.0.1");
        sock.once("connect", () => {
          sock.destroy();
          resolve("connected");
        });
        sock.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      });
      expect(refused).toBe("ECONNREFUSED");
    } finally {
      await s.stop();
    }
  });
});
