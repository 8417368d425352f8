// A deltamesh client as a Node integrator builds it without our generated
// code: @grpc/grpc-js with services loaded from the .proto files by
// @grpc/proto-loader, and google.rpc error details decoded with protobufjs
// from the `grpc-status-details-bin` trailer.
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";
import type { DecodedError } from "../records-observed.js";

const require = createRequire(import.meta.url);
const packageDir = (name: string): string => path.dirname(require.resolve(`${name}/package.json`));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));

export const PROTO_INCLUDES = [
  path.join(REPO, "proto"),
  packageDir("google-proto-files"),
  path.join(packageDir("grpc-health-check"), "proto"),
  path.join(packageDir("@grpc/reflection"), "build/proto"),
];

/** Field names as in the .proto (snake_case), 64-bit integers as strings, oneof case names. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
  includeDirs: PROTO_INCLUDES,
};

/** A message as proto-loader hands it over: plain objects keyed by proto field names. */
export type Plain = { [field: string]: unknown };

export type UnaryCall = (request: Plain) => Promise<Plain>;

export interface ProtoLoaderClient {
  /** A unary method of a service, e.g. unary("deltamesh.v1.RecordService", "WriteRecords"). */
  unary(service: string, method: string): UnaryCall;
  /** A bidi-streaming call: sends `requests`, half-closes, collects every response. */
  bidi(service: string, method: string, requests: Plain[]): Promise<Plain[]>;
  /** A server-streaming call, read one message at a time until it is cancelled. */
  serverStream(service: string, method: string, request: Plain, timeoutMs?: number): ServerStream;
  close(): void;
}

/** An open server-streaming call. */
export interface ServerStream {
  /** The next message; fails with the call's status (DEADLINE_EXCEEDED once its deadline passed) or when the stream ends. */
  next(): Promise<Plain>;
  /** Cancels the call: the client disconnects. */
  cancel(): void;
}

function lookupService(root: grpc.GrpcObject, name: string): grpc.ServiceClientConstructor {
  let node: unknown = root;
  for (const part of name.split(".")) node = (node as Record<string, unknown> | undefined)?.[part];
  if (typeof node !== "function") throw new Error(`service ${name} is not in the loaded protos`);
  return node as grpc.ServiceClientConstructor;
}

/** Methods of a loaded service client are added at run time, by name. */
type LoadedMethod = (this: grpc.Client, ...args: unknown[]) => unknown;

function methodOf(client: grpc.Client, service: string, method: string): LoadedMethod {
  const fn = (client as unknown as Record<string, unknown>)[method];
  if (typeof fn !== "function") throw new Error(`${service} has no method ${method}`);
  return fn as LoadedMethod;
}

export function createProtoLoaderClient(address: string, files: string[], headers: Record<string, string> = {}): ProtoLoaderClient {
  const root = grpc.loadPackageDefinition(protoLoader.loadSync(files, LOADER_OPTIONS));
  const clients = new Map<string, grpc.Client>();
  const clientOf = (service: string): grpc.Client => {
    let c = clients.get(service);
    if (!c) {
      const Ctor = lookupService(root, service);
      c = new Ctor(address, grpc.credentials.createInsecure());
      clients.set(service, c);
    }
    return c;
  };
  const metadata = (): grpc.Metadata => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k, v);
    return md;
  };
  return {
    unary(service, method) {
      const client = clientOf(service);
      const fn = methodOf(client, service, method);
      return (request) =>
        new Promise((resolve, reject) => {
          fn.call(client, request, metadata(), { deadline: Date.now() + 15_000 }, (err: grpc.ServiceError | null, res: Plain) =>
            err ? reject(err) : resolve(res),
          );
        });
    },
    bidi(service, method, requests) {
      const client = clientOf(service);
      const call = methodOf(client, service, method).call(client, metadata(), { deadline: Date.now() + 15_000 }) as grpc.ClientDuplexStream<Plain, Plain>;
      const out: Plain[] = [];
      return new Promise((resolve, reject) => {
        call.on("data", (m: Plain) => out.push(m));
        call.on("error", reject);
        call.on("end", () => resolve(out));
        for (const r of requests) call.write(r);
        call.end();
      });
    },
    serverStream(service, method, request, timeoutMs = 30_000) {
      const client = clientOf(service);
      const call = methodOf(client, service, method).call(client, request, metadata(), { deadline: Date.now() + timeoutMs }) as grpc.ClientReadableStream<Plain>;
      // The CANCELLED status a cancel() brings is expected, not a failure.
      call.on("error", () => {});
      const messages = call[Symbol.asyncIterator]() as AsyncIterator<Plain>;
      return {
        async next() {
          const m = await messages.next();
          if (m.done === true) throw new Error(`${service}/${method} ended`);
          return m.value;
        },
        cancel: () => call.cancel(),
      };
    },
    close() {
      for (const c of clients.values()) c.close();
    },
  };
}

let detailTypes: protobuf.Root | undefined;

function errorDetailTypes(): protobuf.Root {
  if (!detailTypes) {
    const googleDir = packageDir("google-proto-files");
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => path.join(googleDir, target);
    detailTypes = root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"]);
  }
  return detailTypes;
}

export function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === "number" && "metadata" in e;
}

/** A failed call's status and its google.rpc details, decoded from the trailer. */
export function decodeError(e: unknown): DecodedError {
  if (!isServiceError(e)) throw e;
  const out: DecodedError = { code: grpc.status[e.code], message: e.details };
  const raw = e.metadata.get("grpc-status-details-bin")[0];
  if (!(raw instanceof Buffer)) return out;
  const root = errorDetailTypes();
  const status = root.lookupType("google.rpc.Status").decode(raw) as unknown as { details: { type_url: string; value: Uint8Array }[] };
  for (const any of status.details) {
    const typeName = any.type_url.slice(any.type_url.lastIndexOf("/") + 1);
    const type = root.lookupType(typeName);
    const d = type.toObject(type.decode(any.value), { defaults: true }) as Plain;
    if (typeName === "google.rpc.ErrorInfo") {
      out.error_info = { reason: String(d.reason), domain: String(d.domain), metadata: d.metadata as Record<string, string> };
    } else if (typeName === "google.rpc.BadRequest") {
      out.bad_request = (d.fieldViolations as Plain[]).map((v) => ({
        field: String(v.field),
        reason: String(v.reason),
        description: String(v.description),
      }));
    } else if (typeName === "google.rpc.ResourceInfo") {
      out.resource_info = { type: String(d.resourceType), name: String(d.resourceName) };
    }
  }
  return out;
}

/** The error of a call that must fail. */
export async function expectFailure(p: Promise<unknown>): Promise<DecodedError> {
  try {
    await p;
  } catch (e) {
    return decodeError(e);
  }
  throw new Error("expected the call to fail");
}
