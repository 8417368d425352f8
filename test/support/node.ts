// A real deltamesh node for integration tests: in-process, on free loopback
// ports, on its own database, with clients over real HTTP/2 (Connect's gRPC
// transport and a @grpc/grpc-js client) and over HTTP/1.1 (Connect protocol).
// The node verifies bearer tokens like a production node (test issuer and
// keys from ./tokens.ts); clients carry a signed token for their Identity,
// an administrator unless told otherwise.
import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { startNode, type RunningNode } from "../../services/platform/server.js";
import { resolveNodeConfig, type NodeConfigInput } from "../../services/platform/node-config.js";
import { createLogger, type Logger } from "../../services/platform/logger.js";
import { createGrpcJsClient, type GrpcJsClient } from "../../services/platform/transport/grpc-client.js";
import { testDatabaseUrl } from "./env.js";
import { signTestToken, testJwks, TEST_AUDIENCE, TEST_ISSUER } from "./tokens.js";

export interface TestNode {
  node: RunningNode;
  grpcAddress: string;
  webUrl: string;
  /** Connect client speaking gRPC over HTTP/2. */
  connect<S extends DescService>(service: S, identity?: Identity): Client<S>;
  /** Connect client speaking the Connect protocol (JSON) over HTTP/1.1. */
  connectWeb<S extends DescService>(service: S, identity?: Identity): Client<S>;
  /** @grpc/grpc-js client. */
  grpcJs<S extends DescService>(service: S, identity?: Identity): GrpcJsClient<S>;
  stop(): Promise<void>;
}

/** Who a test client is: a signed token with these claims (default: subject "tester", role admin). */
export interface Identity {
  tenant?: string;
  subject?: string;
  roles?: string[];
  /** Token attributes: regions, department, device_class, ... */
  attributes?: Record<string, string | string[]>;
  /** The raw authorization header instead (null: send none). */
  authorization?: string | null;
}

export const ADMIN_ROLES = ["admin"];

/** The hash-mask secret test nodes share (page tokens are sealed under a key derived from it). */
export const TEST_MASK_HASH_KEY = "test-mask-key";

/** The request headers an identity sends. */
export function identityHeaders(id: Identity): Record<string, string> {
  if (id.authorization === null) return {};
  if (id.authorization !== undefined) return { authorization: id.authorization };
  const token = signTestToken({
    sub: id.subject ?? "tester",
    ...(id.tenant ? { tenant: id.tenant } : {}),
    roles: id.roles ?? ADMIN_ROLES,
    ...(id.attributes ? { attributes: id.attributes } : {}),
  });
  return { authorization: `Bearer ${token}` };
}

/** The bearer token (without "Bearer ") an identity sends, for CLIs and other-language clients. */
export function bearerToken(id: Identity): string {
  return identityHeaders(id).authorization!.replace(/^Bearer /, "");
}

export interface TestNodeOptions {
  /** Where the node logs (default: silent, or DELTAMESH_TEST_LOG's level on stderr). */
  log?: Logger;
}

export async function startTestNode(overrides: NodeConfigInput = {}, opts: TestNodeOptions = {}): Promise<TestNode> {
  const cfg = resolveNodeConfig({
    grpcPort: 0,
    webPort: 0,
    insecureDevAuth: false,
    auth: { jwt: { issuer: TEST_ISSUER, audience: [TEST_AUDIENCE], jwks: testJwks }, maskHashKey: TEST_MASK_HASH_KEY, auditFlushMs: 20 },
    shutdownGraceMs: 2000,
    databaseUrl: overrides.databaseUrl ?? (await testDatabaseUrl()),
    ...overrides,
  });
  const node = await startNode(cfg, opts.log ?? createLogger(process.env.DELTAMESH_TEST_LOG ?? "silent"));
  const grpcAddress = `127.0.0.1:${node.grpcPort}`;
  const webUrl = `http://127.0.0.1:${node.webPort}`;
  const closers: (() => void)[] = [];
  const interceptor = (id: Identity): Interceptor => {
    const headers = identityHeaders(id);
    return (next) => (req) => {
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    };
  };
  return {
    node,
    grpcAddress,
    webUrl,
    connect: (service, id = {}) => createClient(service, createGrpcTransport({ baseUrl: `http://${grpcAddress}`, interceptors: [interceptor(id)] })),
    connectWeb: (service, id = {}) =>
      createClient(service, createConnectTransport({ baseUrl: webUrl, httpVersion: "1.1", interceptors: [interceptor(id)] })),
    grpcJs(service, id = {}) {
      const client = grpcJsClientAs(service, grpcAddress, id);
      closers.push(() => client.close());
      return client;
    },
    async stop() {
      for (const close of closers) close();
      await node.stop();
    },
  };
}

/** A @grpc/grpc-js client at `address` that calls as `id`. */
export function grpcJsClientAs<S extends DescService>(service: S, address: string, id: Identity = {}): GrpcJsClient<S> {
  const headers = identityHeaders(id);
  const addIdentity: grpc.Interceptor = (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
        next(metadata, listener);
      },
    });
  return createGrpcJsClient(service, address, undefined, { interceptors: [addIdentity] });
}
