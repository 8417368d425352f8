// A stream message that is already serialized. A fan-out hub encodes one event
// once and yields the same bytes to many subscribers; the grpc-js transport
// writes them as they are, the connect-node transport decodes them back (it
// has no way to take raw bytes), so handlers can yield them on either.
import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";

export class PreEncoded {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * Typed sugar for yielding pre-encoded bytes from a `ServerStreamingImpl<I, O>`
 * generator: `yield preEncoded(ChangeEventSchema, bytes)`. The bytes must be a
 * binary encoding of `schema`. The returned value is a PreEncoded at runtime;
 * only the two transports here (through wrapService/startGrpcServer) understand it.
 */
export function preEncoded<O extends DescMessage>(_schema: O, bytes: Uint8Array): MessageInitShape<O> {
  return new PreEncoded(bytes) as unknown as MessageInitShape<O>;
}

export function isPreEncoded(v: unknown): v is PreEncoded {
  return v instanceof PreEncoded;
}
