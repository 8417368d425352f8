// Native gRPC transport (grpc-js server) over real sockets, exercised with
// grpc-js clients: the typed helper and raw calls that parse the wire status.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { create, createFileRegistry, equals, fromBinary, toBinary, type DescFile } from "@bufbuild/protobuf";
import { anyUnpack, FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetRecordRequestSchema, GetRecordResponseSchema, RecordService, file_deltamesh_v1_records } from "../../../gen/deltamesh/v1/records_pb.js";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../../gen/google/rpc/status_pb.js";
import { Health, HealthCheckResponse_ServingStatus as S, file_health_v1_health } from "../../../gen/health/v1/health_pb.js";
import { ERROR_DOMAIN } from "../../../services/platform/errors.js";
import { createGrpcJsClient, fromGrpcError, type GrpcJsClient } from "../../../services/platform/transport/grpc-client.js";
import { transitiveFiles } from "../../../services/platform/transport/reflection.js";
import { notUtf8Request, sleep, startServers, until, type Servers } from "./fixtures.js";
import {
  CountMethod,
  CountRequestSchema,
  REFLECTION_V1_PATH,
  REFLECTION_V1ALPHA_PATH,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  StreamTestService,
  type CountResponse,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "./test-protos.js";

const ref = (id: string) => ({ collection: "customers", target: { case: "id" as const, value: id } });
const identity = (b: Buffer) => b;
const toBuf = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

async function expectConnectError(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectError);
    return e as ConnectError;
  }
  throw new Error("expected the call to fail");
}

/** A raw grpc-js unary call with bytes in and bytes out; resolves to the ServiceError or response bytes. */
function rawUnary(client: grpc.Client, path: string, body: Buffer, md = new grpc.Metadata()): Promise<{ err: grpc.ServiceError | null; res?: Buffer }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, body, md, {}, (err, res) => resolve({ err, res: res ?? undefined }));
  });
}

/** Typed view of the stream-test client (its descriptor is built at runtime). */
function countClient(address: string) {
  const c = createGrpcJsClient(StreamTestService, address);
  return {
    count: (req: { count: number; payloadBytes?: number; preEncoded?: boolean; failAt?: number }, o?: { signal?: AbortSignal }) =>
      (c as unknown as Record<string, (r: unknown, o?: unknown) => AsyncIterable<CountResponse>>)[CountMethod.localName]!(create(CountRequestSchema, req), o),
    close: () => c.close(),
  };
}

describe("grpc-js transport", () => {
  let s: Servers;
  let records: GrpcJsClient<typeof RecordService>;
  let health: GrpcJsClient<typeof Health>;
  let raw: grpc.Client;

  beforeAll(async () => {
    s = await startServers();
    records = createGrpcJsClient(RecordService, s.grpcAddress);
    health = createGrpcJsClient(Health, s.grpcAddress);
    raw = new grpc.Client(s.grpcAddress, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    records?.close();
    health?.close();
    raw?.close();
    await s?.stop();
  });

  it("serves a unary call: request decoded, headers and deadline visible to the handler", async () => {
    const res = await records.getRecord({ ref: ref("c1") }, { headers: { "x-deltamesh-tenant": "acme" }, timeoutMs: 5000 });
    expect(res.record?.id).toBe("c1");
    expect(res.record?.collection).toBe("customers");
    expect(res.record?.tenant).toBe("acme");
    expect(res.record?.fields.protocol?.kind.value).toBe("grpc");
    expect(res.record?.fields.timeout?.kind.value).toBe("true");
    const noDeadline = await records.getRecord({ ref: ref("c2") });
    expect(noDeadline.record?.fields.timeout?.kind.value).toBe("false");
  });

  it("forwards response headers and trailers", async () => {
    let header: Headers | undefined;
    let trailer: Headers | undefined;
    await records.getRecord(
      { ref: ref("headers") },
      { headers: { "x-test": "ping" }, onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) },
    );
    expect(header?.get("x-echo")).toBe("ping");
    expect(trailer?.get("x-trailer")).toBe("trailer-value");
  });

  it("turns a DomainError into INVALID_ARGUMENT with ErrorInfo and BadRequest details (typed client)", async () => {
    const err = await expectConnectError(records.getRecord({ ref: ref("invalid") }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("the request has 2 invalid fields");
    const [info] = err.findDetails(ErrorInfoSchema);
    expect(info?.reason).toBe("INVALID_ARGUMENT");
    expect(info?.domain).toBe(ERROR_DOMAIN);
    const [bad] = err.findDetails(BadRequestSchema);
    expect(bad?.fieldViolations.map((v) => [v.field, v.reason])).toEqual([
      ["ref.id", "ID_INVALID"],
      ["ref.collection", "COLLECTION_UNKNOWN"],
    ]);
  });

  it("puts a binary google.rpc.Status in grpc-status-details-bin (raw grpc-js client, Any unpacked)", async () => {
    const body = toBuf(toBinary(GetRecordRequestSchema, create(GetRecordRequestSchema, { ref: ref("invalid") })));
    const { err } = await rawUnary(raw, "/deltamesh.v1.RecordService/GetRecord", body);
    expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err?.details).toBe("the request has 2 invalid fields");
    const bin = err?.metadata.get("grpc-status-details-bin")[0];
    expect(Buffer.isBuffer(bin)).toBe(true);
    const status = fromBinary(StatusSchema, bin as Buffer);
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status.message).toBe("the request has 2 invalid fields");
    expect(status.details.map((a) => a.typeUrl)).toEqual([
      "type.googleapis.com/google.rpc.ErrorInfo",
      "type.googleapis.com/google.rpc.BadRequest",
    ]);
    const bad = anyUnpack(status.details[1]!, BadRequestSchema);
    expect(bad?.fieldViolations[0]?.description).toBe("must not be 'invalid'");
  });

  it("maps other kinds: NOT_FOUND with ResourceInfo, ABORTED with metadata", async () => {
    const nf = await expectConnectError(records.getRecord({ ref: ref("missing") }));
    expect(nf.code).toBe(Code.NotFound);
    expect(nf.findDetails(ResourceInfoSchema)[0]).toMatchObject({ resourceType: "record", resourceName: "customers/missing" });
    const ab = await expectConnectError(records.getRecord({ ref: ref("conflict") }));
    expect(ab.code).toBe(Code.Aborted);
    expect(ab.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({ current_version: "7" });
  });

  it("hides unexpected errors: INTERNAL 'internal error', the text only in the server log", async () => {
    const body = toBuf(toBinary(GetRecordRequestSchema, create(GetRecordRequestSchema, { ref: ref("secret") })));
    const { err } = await rawUnary(raw, "/deltamesh.v1.RecordService/GetRecord", body);
    expect(err?.code).toBe(grpc.status.INTERNAL);
    expect(err?.details).toBe("internal error");
    const everything = JSON.stringify(err?.metadata.toJSON()) + String(err?.message) + String(err?.details);
    expect(everything).not.toMatch(/secret|hunter2/);
    const bin = err?.metadata.get("grpc-status-details-bin")[0];
    if (bin) expect(Buffer.from(bin as Buffer).toString("latin1")).not.toMatch(/secret|hunter2/);
    expect(JSON.stringify(s.logged.map((l) => String((l as { err?: unknown }).err)))).toMatch(/secret driver text/);
  });

  it("honours a short client deadline: DEADLINE_EXCEEDED and the handler's signal aborted", async () => {
    const before = s.probe.slowAbortReasons.length;
    const started = Date.now();
    const err = await expectConnectError(records.getRecord({ ref: ref("slow") }, { timeoutMs: 200 }));
    expect(err.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(2000);
    await until(() => s.probe.slowAbortReasons.length > before, 2000, "handler abort");
    const reason = s.probe.slowAbortReasons.at(-1);
    expect(reason).toBeInstanceOf(ConnectError);
    expect([Code.DeadlineExceeded, Code.Canceled]).toContain((reason as ConnectError).code);
  });

  it("aborts the handler's signal when the client cancels", async () => {
    const before = s.probe.slowAbortReasons.length;
    const ac = new AbortController();
    const started = s.probe.untilSlowStarted();
    const p = records.getRecord({ ref: ref("slow") }, { signal: ac.signal });
    await started;
    ac.abort();
    const err = await expectConnectError(p);
    expect(err.code).toBe(Code.Canceled);
    await until(() => s.probe.slowAbortReasons.length > before, 2000, "handler abort");
    expect((s.probe.slowAbortReasons.at(-1) as ConnectError).code).toBe(Code.Canceled);
  });

  it("refuses an oversize request with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const big = "x".repeat(5 * 1024 * 1024);
    const err = await expectConnectError(
      records.writeRecords({ mutations: [{ ref: ref("big"), set: { blob: { kind: { case: "stringValue", value: big } } } }] }),
    );
    expect(err.code).toBe(Code.ResourceExhausted);
    const ok = await records.writeRecords({ mutations: [{ ref: ref("small") }] });
    expect(ok.results).toHaveLength(1);
    expect((await records.getRecord({ ref: ref("after-big") })).record?.id).toBe("after-big");
  });

  it("answers malformed request bytes with INVALID_ARGUMENT and keeps serving", async () => {
    for (const garbage of [Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.from([0x0a, 0x50, 0x01]), Buffer.from([0x08])]) {
      const { err } = await rawUnary(raw, "/deltamesh.v1.RecordService/GetRecord", garbage);
      expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
    }
    const { err, res } = await rawUnary(
      raw,
      "/deltamesh.v1.RecordService/GetRecord",
      toBuf(toBinary(GetRecordRequestSchema, create(GetRecordRequestSchema, { ref: ref("ok") }))),
    );
    expect(err).toBeNull();
    expect(fromBinary(GetRecordResponseSchema, res!).record?.id).toBe("ok");
  });

  it("answers a request that does not decode (a string that is not UTF-8) with INVALID_ARGUMENT and ErrorInfo MALFORMED_REQUEST", async () => {
    const { err } = await rawUnary(raw, "/deltamesh.v1.RecordService/GetRecord", notUtf8Request());
    const e = fromGrpcError(err);
    expect(e.code).toBe(Code.InvalidArgument);
    expect(e.rawMessage).toMatch(/^malformed request: the body is not a valid deltamesh\.v1\.GetRecordRequest \(/);
    expect(e.findDetails(ErrorInfoSchema)).toEqual([
      expect.objectContaining({ reason: "MALFORMED_REQUEST", domain: ERROR_DOMAIN, metadata: { message_type: "deltamesh.v1.GetRecordRequest" } }),
    ]);
  });

  it("runs request hooks before handlers (not on Health)", async () => {
    const err = await expectConnectError(records.getRecord({ ref: ref("c1") }, { headers: { "x-deny": "1" } }));
    expect(err.code).toBe(Code.Unauthenticated);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("TOKEN_MISSING");
    expect((await health.check({ service: "" }, { headers: { "x-deny": "1" } })).status).toBe(S.SERVING);
  });

  it("answers UNIMPLEMENTED for an unknown method", async () => {
    const { err } = await rawUnary(raw, "/deltamesh.v1.RecordService/NoSuchMethod", Buffer.alloc(0));
    expect(err?.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("health Check: overall, per service, NOT_FOUND for an unknown service", async () => {
    expect((await health.check({ service: "" })).status).toBe(S.SERVING);
    expect((await health.check({ service: "deltamesh.v1.RecordService" })).status).toBe(S.SERVING);
    expect((await health.check({ service: StreamTestService.typeName })).status).toBe(S.NOT_SERVING);
    const err = await expectConnectError(health.check({ service: "no.such.Service" }));
    expect(err.code).toBe(Code.NotFound);
  });

  it("health Watch streams the current status, then each change", async () => {
    const seen: S[] = [];
    const ac = new AbortController();
    const done = (async () => {
      try {
        for await (const r of health.watch({ service: StreamTestService.typeName }, { signal: ac.signal })) seen.push(r.status);
      } catch (e) {
        if (!(e instanceof ConnectError && e.code === Code.Canceled)) throw e;
      }
    })();
    await until(() => seen.length === 1, 3000, "first status");
    s.health.setServing(StreamTestService.typeName, true);
    await until(() => seen.length === 2, 3000, "second status");
    s.health.setServing(StreamTestService.typeName, false);
    await until(() => seen.length === 3, 3000, "third status");
    ac.abort();
    await done;
    expect(seen).toEqual([S.NOT_SERVING, S.SERVING, S.NOT_SERVING]);
    // Unknown service: SERVICE_UNKNOWN, call stays open.
    const it2 = health.watch({ service: "later.Service" })[Symbol.asyncIterator]();
    expect((await it2.next()).value?.status).toBe(S.SERVICE_UNKNOWN);
    s.health.setServing("later.Service", true);
    expect((await it2.next()).value?.status).toBe(S.SERVING);
    await it2.return?.();
  });

  it("streams messages, plain and pre-encoded, in order", async () => {
    const c = countClient(s.grpcAddress);
    try {
      for (const preEncoded of [false, true]) {
        const got: number[] = [];
        for await (const m of c.count({ count: 200, payloadBytes: 10, preEncoded })) {
          expect(m.payload).toHaveLength(10);
          got.push(m.n);
        }
        expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i));
      }
    } finally {
      c.close();
    }
  });

  it("ends a stream that fails midway with the mapped status and details", async () => {
    const c = countClient(s.grpcAddress);
    const got: number[] = [];
    try {
      const err = await expectConnectError(
        (async () => {
          for await (const m of c.count({ count: 100, failAt: 5 })) got.push(m.n);
        })(),
      );
      expect(got).toEqual([0, 1, 2, 3, 4]);
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("SLOW_SUBSCRIBER");
    } finally {
      c.close();
    }
  });

  it("applies backpressure: a slow reader pauses the generator", async () => {
    const c = countClient(s.grpcAddress);
    const endedBefore = s.probe.streamEnded;
    try {
      const it = c.count({ count: 100_000, payloadBytes: 1024 })[Symbol.asyncIterator]();
      for (let i = 0; i < 5; i++) expect((await it.next()).value?.n).toBe(i);
      await sleep(500);
      const p1 = s.probe.produced;
      await sleep(300);
      const p2 = s.probe.produced;
      // Paused, and only what fits in HTTP/2 flow-control windows and stream buffers is ahead.
      expect(p2).toBe(p1);
      expect(p1).toBeLessThan(500);
      await it.return?.();
      // The client went away: the server stops iterating and the handler's finally runs.
      await until(() => s.probe.streamEnded > endedBefore, 3000, "generator end");
      const reason = s.probe.streamSignalReasons.at(-1);
      expect(reason instanceof ConnectError && reason.code).toBe(Code.Canceled);
    } finally {
      c.close();
    }
  });

  it("serves reflection with the exact generated descriptors (strict registry, v1 and v1alpha)", async () => {
    const ask = (pathName: string, requests: ServerReflectionRequest["messageRequest"][]) =>
      new Promise<ServerReflectionResponse[]>((resolve, reject) => {
        const call = raw.makeBidiStreamRequest(
          pathName,
          (m: ServerReflectionRequest) => toBuf(toBinary(ServerReflectionRequestSchema, m)),
          (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b) as ServerReflectionResponse,
        );
        const out: ServerReflectionResponse[] = [];
        call.on("data", (r: ServerReflectionResponse) => out.push(r));
        call.on("error", reject);
        call.on("end", () => resolve(out));
        for (const messageRequest of requests) {
          call.write(create(ServerReflectionRequestSchema, { host: "", messageRequest }) as ServerReflectionRequest);
        }
        call.end();
      });

    for (const p of [REFLECTION_V1_PATH, REFLECTION_V1ALPHA_PATH]) {
      const [list, byService, byHealth, byFile] = await ask(p, [
        { case: "listServices", value: "*" },
        { case: "fileContainingSymbol", value: "deltamesh.v1.RecordService" },
        { case: "fileContainingSymbol", value: "grpc.health.v1.Health" },
        { case: "fileByFilename", value: "deltamesh/v1/types.proto" },
      ]);
      expect(list?.messageResponse.case).toBe("listServicesResponse");
      const names = list?.messageResponse.case === "listServicesResponse" ? list.messageResponse.value.service.map((x) => x.name) : [];
      expect(names).toEqual(expect.arrayContaining(["deltamesh.v1.RecordService", "grpc.health.v1.Health"]));

      for (const r of [byService, byHealth, byFile]) {
        expect(r?.messageResponse.case).toBe("fileDescriptorResponse");
        if (r?.messageResponse.case !== "fileDescriptorResponse") continue;
        const protos = r.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
        // A strict registry: throws on any unresolved or inconsistent reference.
        const registry = strictRegistry(protos);
        for (const proto of protos) expect(registry.getFile(proto.name)).toBeDefined();
        // Byte-for-byte what protobuf-es generated.
        const generated = new Map(transitiveFiles([file_deltamesh_v1_records, file_health_v1_health]).map((f: DescFile) => [f.proto.name, f.proto]));
        for (const proto of protos) {
          const g = generated.get(proto.name);
          if (g) expect(equals(FileDescriptorProtoSchema, proto, g)).toBe(true);
        }
        checkMapEntries(protos);
      }
      const svcProtos =
        byService?.messageResponse.case === "fileDescriptorResponse"
          ? byService.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b))
          : [];
      expect(svcProtos.map((f) => f.name)).toEqual(
        expect.arrayContaining(["deltamesh/v1/records.proto", "deltamesh/v1/types.proto", "google/protobuf/timestamp.proto"]),
      );
      const registry = strictRegistry(svcProtos);
      const record = registry.getMessage("deltamesh.v1.Record");
      expect(record?.field.fields?.fieldKind).toBe("map");
      expect(registry.getService("deltamesh.v1.RecordService")?.methods.map((m) => m.name)).toContain("GetRecord");
    }
  });

  it("works with buf curl, a strict Go reflection client", async () => {
    const buf = path.resolve("node_modules/.bin/buf");
    if (!existsSync(buf)) return;
    const run = promisify(execFile);
    const url = `http://${s.grpcAddress}`;
    const list = await run(buf, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", url], { timeout: 30_000 });
    expect(list.stdout).toContain("deltamesh.v1.RecordService/GetRecord");
    expect(list.stdout).toContain("grpc.health.v1.Health/Check");
    const call = await run(
      buf,
      [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "-d",
        JSON.stringify({ ref: { collection: "customers", id: "from-buf" } }),
        `${url}/deltamesh.v1.RecordService/GetRecord`,
      ],
      { timeout: 30_000 },
    );
    const body = JSON.parse(call.stdout) as { record: { id: string; fields: Record<string, { stringValue?: string }> } };
    expect(body.record.id).toBe("from-buf");
    expect(body.record.fields.greeting?.stringValue).toBe("hello from-buf");
  }, 60_000);
});

/** Every file hydrated by protobuf-es, imports resolved only from the files the server returned. */
function strictRegistry(protos: FileDescriptorProto[]) {
  const byName = new Map(protos.map((p) => [p.name, p]));
  return createFileRegistry(...protos.map((p) => createFileRegistry(p, (name) => byName.get(name))));
}

function checkMapEntries(protos: FileDescriptorProto[]): void {
  const walk = (msgs: FileDescriptorProto["messageType"]) => {
    for (const m of msgs) {
      for (const n of m.nestedType) {
        if (n.options?.mapEntry) expect(n.name).toMatch(/Entry$/);
      }
      walk(m.nestedType);
    }
  };
  for (const p of protos) walk(p.messageType);
}

describe("grpc-js transport: graceful shutdown", () => {
  it("flips health, ends an open Watch with UNAVAILABLE, cuts a call still running after the grace period, closes the port", async () => {
    const s = await startServers();
    const health = createGrpcJsClient(Health, s.grpcAddress);
    const records = createGrpcJsClient(RecordService, s.grpcAddress);
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
      expect(seen[0]).toBe(S.SERVING);

      const slowStarted = s.probe.untilSlowStarted();
      const slow = records.getRecord({ ref: ref("slow") }).catch((e: unknown) => e);
      await slowStarted;

      const started = Date.now();
      await s.grpc.shutdown(300);
      expect(Date.now() - started).toBeLessThan(3000);
      await watching;

      expect(s.health.get("")).toBe(S.NOT_SERVING);
      expect(seen).toEqual([S.SERVING, S.NOT_SERVING]);
      expect(streamErr).toBeInstanceOf(ConnectError);
      expect((streamErr as ConnectError).code).toBe(Code.Unavailable);
      expect((streamErr as ConnectError).rawMessage).toBe("server shutting down");

      // The slow unary outlived the grace period: the forced stage aborted its signal.
      const slowResult = await slow;
      expect(slowResult).toBeInstanceOf(ConnectError);
      expect((s.probe.slowAbortReasons.at(-1) as ConnectError).code).toBe(Code.Unavailable);

      const refused = await new Promise<string>((resolve) => {
        const sock = net.connect(s.grpc.port, "127.0.0.1");
        sock.once("connect", () => {
          sock.destroy();
          resolve("connected");
        });
        sock.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error"));
      });
      expect(refused).toBe("ECONNREFUSED");
    } finally {
      health.close();
      records.close();
      await s.stop();
    }
  });

  it("lets an in-flight unary call complete within the grace period", async () => {
    const s = await startServers();
    const records = createGrpcJsClient(RecordService, s.grpcAddress);
    try {
      // Hold the call in a hook-free way: the handler waits for the client's deadline.
      const started = s.probe.untilSlowStarted();
      const slow = records.getRecord({ ref: ref("slow") }, { timeoutMs: 400 }).catch((e: unknown) => e);
      await started;
      const t = Date.now();
      await s.grpc.shutdown(5000);
      // Shutdown waited for the call (ended by its own deadline), not the full grace.
      expect(Date.now() - t).toBeLessThan(3000);
      expect(((await slow) as ConnectError).code).toBe(Code.DeadlineExceeded);
    } finally {
      records.close();
      await s.stop();
    }
  });
});
