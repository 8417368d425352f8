// Test services and server startup shared by the transport tests.
import { randomBytes } from "node:crypto";
import { create, toBinary, type Message } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { GetRecordRequestSchema, RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { DomainError, invalidArgument, notFound } from "../../../services/platform/errors.js";
import { HealthState } from "../../../services/platform/health.js";
import { startGrpcServer, type GrpcServerOptions, type RunningGrpcServer } from "../../../services/platform/transport/grpc-server.js";
import { peerKey } from "../../../services/platform/transport/peer.js";
import { preEncoded } from "../../../services/platform/transport/pre-encoded.js";
import { startWebServer, type RunningWebServer, type WebServerOptions } from "../../../services/platform/transport/web-server.js";
import { served, type RequestHook, type ServedService } from "../../../services/platform/transport/wrap.js";
import { CountResponseSchema, StreamTestService, type CountRequest, type CountResponse } from "./test-protos.js";

/** What the handlers saw, for assertions. */
export class Probe {
  slowCalls = 0;
  slowAbortReasons: unknown[] = [];
  produced = 0;
  streamEnded = 0;
  streamSignalReasons: unknown[] = [];
  lastPeer: { address: string; tls: boolean; subject?: string | undefined } | undefined;
  private slowWaiters: (() => void)[] = [];

  slowStarted(): void {
    this.slowCalls++;
    for (const w of this.slowWaiters.splice(0)) w();
  }
  untilSlowStarted(): Promise<void> {
    return new Promise((r) => this.slowWaiters.push(r));
  }
}

const stringValue = (value: string) => ({ kind: { case: "stringValue" as const, value } });

/** A RecordService whose GetRecord behaviour is chosen by the requested id. */
export function createTestRecordService(probe: Probe): Partial<ServiceImpl<typeof RecordService>> {
  return {
    async getRecord(req, ctx) {
      const ref = req.ref;
      const id = ref?.target.case === "id" ? ref.target.value : "";
      switch (id) {
        case "invalid":
          throw invalidArgument("the request has 2 invalid fields", [
            { field: "ref.id", description: "must not be 'invalid'", reason: "ID_INVALID" },
            { field: "ref.collection", description: "unknown collection", reason: "COLLECTION_UNKNOWN" },
          ]);
        case "missing":
          throw notFound("record", `${ref?.collection ?? ""}/missing`);
        case "conflict":
          throw new DomainError("aborted", "version mismatch", {
            reason: "VERSION_MISMATCH",
            metadata: { current_version: "7" },
          });
        case "secret":
          throw new Error("secret driver text: password=hunter2 at 10.0.0.5");
        case "slow": {
          probe.slowStarted();
          const reason = await new Promise<unknown>((resolve) => {
            if (ctx.signal.aborted) resolve(ctx.signal.reason);
            else ctx.signal.addEventListener("abort", () => resolve(ctx.signal.reason), { once: true });
          });
          probe.slowAbortReasons.push(reason);
          throw reason;
        }
        case "peer": {
          const peer = ctx.values.get(peerKey);
          probe.lastPeer = peer && { address: peer.address, tls: peer.tls, subject: String(peer.clientCertificate?.subject?.CN ?? "") || undefined };
          break;
        }
        case "headers":
          ctx.responseHeader.set("x-echo", ctx.requestHeader.get("x-test") ?? "");
          ctx.responseTrailer.set("x-trailer", "trailer-value");
          break;
      }
      return {
        record: {
          tenant: ctx.requestHeader.get("x-deltamesh-tenant") ?? "",
          collection: ref?.collection ?? "",
          id,
          version: 1n,
          fields: {
            greeting: stringValue(`hello ${id}`),
            protocol: stringValue(ctx.protocolName),
            timeout: stringValue(String(ctx.timeoutMs() !== undefined)),
          },
        },
      };
    },
    async writeRecords(req) {
      return { results: req.mutations.map((m) => ({ collection: m.ref?.collection ?? "", version: 1n })) };
    },
    async listRecords() {
      return {};
    },
    async batchGetRecords() {
      return {};
    },
    async deleteRecord() {
      throw new DomainError("permission_denied", "no delete right", { reason: "NO_DELETE_RIGHT" });
    },
    async getRecordHistory() {
      return {};
    },
  };
}

/** StreamTestService.Count: `count` messages, optionally pre-encoded, optionally failing at `failAt`. */
export function createStreamTestService(probe: Probe): ServedService {
  async function* count(req: CountRequest, ctx: HandlerContext): AsyncGenerator<CountResponse | ReturnType<typeof preEncoded>> {
    try {
      // Random, so response compression (gzip on Connect) cannot shrink it.
      const payload = new Uint8Array(randomBytes(req.payloadBytes));
      for (let n = 0; n < req.count; n++) {
        if (ctx.signal.aborted) return;
        if (req.failAt > 0 && n === req.failAt) {
          throw new DomainError("resource_exhausted", "subscriber too slow", { reason: "SLOW_SUBSCRIBER", metadata: { n: String(n) } });
        }
        probe.produced = n + 1;
        const msg = create(CountResponseSchema, { n, payload }) as CountResponse;
        yield req.preEncoded ? preEncoded(CountResponseSchema, toBinary(CountResponseSchema, msg)) : msg;
      }
    } finally {
      probe.streamEnded++;
      if (ctx.signal.aborted) probe.streamSignalReasons.push(ctx.signal.reason);
    }
  }
  return { service: StreamTestService, impl: { count: count as (req: never, ctx: never) => AsyncIterable<Message> } };
}

/** Rejects calls carrying `x-deny` (like an auth hook would). */
export const denyHook: RequestHook = async (ctx) => {
  if (ctx.requestHeader.has("x-deny")) {
    throw new DomainError("unauthenticated", "no valid credentials", { reason: "TOKEN_MISSING" });
  }
};

export interface Servers {
  health: HealthState;
  probe: Probe;
  grpc: RunningGrpcServer;
  web: RunningWebServer;
  grpcAddress: string;
  webUrl: string;
  logged: unknown[];
  stop(): Promise<void>;
}

export async function startServers(
  extra: { grpc?: Partial<GrpcServerOptions>; web?: Partial<WebServerOptions>; serving?: boolean } = {},
): Promise<Servers> {
  const probe = new Probe();
  const health = new HealthState();
  const logged: unknown[] = [];
  const log = {
    error: (obj: object) => void logged.push(obj),
    warn: (obj: object) => void logged.push(obj),
  };
  const services: ServedService[] = [served(RecordService, createTestRecordService(probe)), createStreamTestService(probe)];
  const grpc = await startGrpcServer({ host: "127.0.0.1", port: 0, services, health, hooks: [denyHook], log, ...extra.grpc });
  const web = await startWebServer({ host: "127.0.0.1", port: 0, services, health, hooks: [denyHook], log, ...extra.web });
  if (extra.serving !== false) {
    health.setServing("", true);
    health.setServing(RecordService.typeName, true);
  }
  const scheme = extra.web?.tls ? "https" : "http";
  return {
    health,
    probe,
    grpc,
    web,
    logged,
    grpcAddress: `127.0.0.1:${grpc.port}`,
    webUrl: `${scheme}://127.0.0.1:${web.port}`,
    async stop() {
      await Promise.all([grpc.shutdown(200), web.shutdown(200)]);
    },
  };
}

export const until = async (cond: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> => {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** GetRecordRequest bytes whose ref.collection holds 0xff, which is not UTF-8: no decoder accepts them. */
export function notUtf8Request(): Buffer {
  const b = Buffer.from(toBinary(GetRecordRequestSchema, create(GetRecordRequestSchema, { ref: { collection: "~", target: { case: "id", value: "a" } } })));
  b[b.indexOf("~")] = 0xff;
  return b;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
