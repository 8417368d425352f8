// gRPC status plumbing shared by the grpc-js server and client: the
// `grpc-status-details-bin` trailer (a binary google.rpc.Status whose details
// are google.protobuf.Any), and conversion between grpc-js Metadata and the
// fetch-API Headers a connect HandlerContext uses.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, decodeBinaryHeader } from "@connectrpc/connect";
import { Metadata } from "@grpc/grpc-js";
import { StatusSchema, type Status } from "../../../gen/google/rpc/status_pb.js";

export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
const TYPE_URL_PREFIX = "type.googleapis.com/";

/** The google.rpc.Status for a ConnectError: code, message and every detail as an Any. */
export function statusFromConnectError(e: ConnectError): Status {
  const details: Any[] = e.details.map((d) =>
    "desc" in d
      ? create(AnySchema, { typeUrl: TYPE_URL_PREFIX + d.desc.typeName, value: toBinary(d.desc, create(d.desc, d.value)) })
      : create(AnySchema, { typeUrl: TYPE_URL_PREFIX + d.type, value: d.value }),
  );
  return create(StatusSchema, { code: e.code, message: e.rawMessage, details });
}

export function encodeStatusDetails(e: ConnectError): Uint8Array {
  return toBinary(StatusSchema, statusFromConnectError(e));
}

/**
 * A ConnectError from a gRPC status as a client received it. Details come from
 * the `grpc-status-details-bin` trailer when present, so
 * `err.findDetails(BadRequestSchema)` works as with a Connect client.
 */
export function connectErrorFromStatus(code: number, message: string, trailers: Metadata | undefined, cause?: unknown): ConnectError {
  const headers = trailers ? metadataToHeaders(trailers) : new Headers();
  const validCode = Number.isInteger(code) && code >= 1 && code <= 16 ? (code as Code) : Code.Unknown;
  const err = new ConnectError(message, validCode, headers, undefined, cause);
  const bin = trailers?.get(STATUS_DETAILS_KEY)[0];
  if (bin !== undefined && typeof bin !== "string") {
    try {
      const status = fromBinary(StatusSchema, bin);
      err.details = status.details.map((a) => ({
        type: a.typeUrl.slice(a.typeUrl.lastIndexOf("/") + 1),
        value: a.value,
      }));
    } catch {
      // A malformed details trailer leaves the code and message usable.
    }
  }
  return err;
}

/** Headers the transport owns; never copied from a handler's headers/trailers into grpc-js metadata. */
const RESERVED = new Set([
  "content-type",
  "content-length",
  "te",
  "connection",
  "keep-alive",
  "transfer-encoding",
  "upgrade",
  "proxy-connection",
  "host",
  "grpc-status",
  "grpc-message",
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  STATUS_DETAILS_KEY,
]);

/** grpc-js request metadata → Headers (binary `-bin` values base64, as Connect keeps them). */
export function metadataToHeaders(md: Metadata): Headers {
  const h = new Headers();
  for (const key of Object.keys(md.getMap())) {
    const bin = key.endsWith("-bin");
    for (const v of md.get(key)) {
      if (bin) h.append(key, typeof v === "string" ? v : Buffer.from(v).toString("base64"));
      else if (typeof v === "string") h.append(key, v);
    }
  }
  return h;
}

/** Headers set by a handler → grpc-js Metadata (transport-owned keys skipped). */
export function headersToMetadata(h: Headers, into: Metadata = new Metadata()): Metadata {
  h.forEach((value, key) => {
    if (RESERVED.has(key) || key.startsWith(":")) return;
    if (key.endsWith("-bin")) {
      for (const part of value.split(",")) {
        const trimmed = part.trim();
        if (trimmed) into.add(key, Buffer.from(decodeBinaryHeader(trimmed)));
      }
    } else {
      into.add(key, value);
    }
  });
  return into;
}

export function hasEntries(h: Headers): boolean {
  for (const _ of h.keys()) return true;
  return false;
}

/** The grpc-js status object (for `callback(err)` / `call.emit("error", …)`) carrying a ConnectError. */
export interface GrpcStatusObject {
  code: number;
  details: string;
  metadata: Metadata;
}

export function grpcStatusFromConnectError(e: ConnectError, trailer?: Headers): GrpcStatusObject {
  const md = new Metadata();
  if (trailer) headersToMetadata(trailer, md);
  headersToMetadata(e.metadata, md);
  md.set(STATUS_DETAILS_KEY, Buffer.from(encodeStatusDetails(e)));
  return { code: e.code, details: e.rawMessage, metadata: md };
}

