// How CLI commands reach a node: a Connect client over gRPC (HTTP/2) that
// carries the caller's identity, and the schemas (from --config or the
// shipped example) to type values and print records.
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { DEFAULT_CONFIG_PATH, loadFileConfigSource } from "../config/file-source.js";
import type { SchemaSet } from "../schema/types.js";
import { identityHeaders, type IdentityFlags } from "./identity.js";

export interface ServerFlags extends IdentityFlags {
  server: string;
  config?: string;
}

export function connectService<S extends DescService>(service: S, flags: ServerFlags): Client<S> {
  const headers = identityHeaders(flags);
  const identity: Interceptor = (next) => (req) => {
    for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
    return next(req);
  };
  const baseUrl = flags.server.includes("://") ? flags.server : `http://${flags.server}`;
  return createClient(service, createGrpcTransport({ baseUrl, interceptors: [identity] }));
}

export async function loadSchemas(flags: { config?: string }): Promise<SchemaSet> {
  const source = await loadFileConfigSource(flags.config ?? DEFAULT_CONFIG_PATH);
  const schemas = source.current().schemas;
  await source.close();
  return schemas;
}
