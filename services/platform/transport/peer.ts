// Who is on the other end of a call, in transport-neutral terms, for the auth
// layer (mTLS subject) and logs. Both servers put it in `ctx.values`:
//   const peer = ctx.values.get(peerKey);
import type { PeerCertificate } from "node:tls";
import { createContextKey } from "@connectrpc/connect";

export interface Peer {
  /** Remote address as the transport reports it (e.g. `ipv4:127.0.0.1:53422`, `127.0.0.1:53422`). */
  readonly address: string;
  /** Whether the connection is TLS. */
  readonly tls: boolean;
  /** The verified client certificate under mTLS (undefined otherwise). Computed on first read. */
  readonly clientCertificate: PeerCertificate | undefined;
}

export const peerKey = createContextKey<Peer | undefined>(undefined, { description: "deltamesh transport peer" });

/** A Peer whose certificate is read only if someone asks (it costs a TLS call). */
export function lazyPeer(address: () => string, tls: boolean, cert: () => PeerCertificate | undefined): Peer {
  let addr: string | undefined;
  let c: PeerCertificate | undefined | null = null;
  return {
    get address() {
      return (addr ??= address());
    },
    tls,
    get clientCertificate() {
      if (c === null) c = tls ? cert() : undefined;
      return c;
    },
  };
}
