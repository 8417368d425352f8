// Authentication on both transports: every bad credential is UNAUTHENTICATED
// before any handler runs, with no response message; health stays open;
// keys rotate by editing the JWKS file; mTLS certificates map to principals;
// the development mode is explicit.
import { createHmac } from "node:crypto";
import { connect as http2Connect } from "node:http2";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService, AuditEventKind } from "../../../gen/deltamesh/v1/access_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { GetRecordRequestSchema, RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { resolveNodeConfig } from "../../../services/platform/node-config.js";
import { startNode } from "../../../services/platform/server.js";
import { createLogger } from "../../../services/platform/logger.js";
import { scratchDir, testDatabaseUrl } from "../../support/env.js";
import type { Identity, TestNode } from "../../support/node.js";
import { byId, enm, rejection, str } from "../../support/rpc.js";
import { newTestKey, signTestToken, testKey, TEST_AUDIENCE, TEST_ISSUER, unsignedToken } from "../../support/tokens.js";
import { ADMIN, seed, startAccessNode } from "./helpers.js";
import {
  REFLECTION_V1_PATH,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionResponse,
} from "../transport/test-protos.js";

let node: TestNode;
beforeAll(async () => {
  node = await startAccessNode();
  await seed(node, "auth-c1", { region: enm("east_china") });
});
afterAll(async () => {
  await node?.stop();
});

const claims = { sub: "u1", roles: ["admin"] };
const otherKey = newTestKey("other");
const bearer = (t: string) => `Bearer ${t}`;
const tamper = (t: string) => {
  const [h, p, s] = t.split(".");
  const payload = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
  return [h, Buffer.from(JSON.stringify({ ...payload, roles: ["admin", "finance"] })).toString("base64url"), s].join(".");
};
/** HS256 signed with the public key's bytes as the secret: the classic algorithm-confusion forgery. */
const hsConfusion = () => {
  const h = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT", kid: testKey.kid })).toString("base64url");
  const p = Buffer.from(JSON.stringify({ iss: TEST_ISSUER, aud: TEST_AUDIENCE, exp: Math.floor(Date.now() / 1000) + 600, ...claims })).toString("base64url");
  const sig = createHmac("sha256", JSON.stringify(testKey.jwk)).update(`${h}.${p}`).digest("base64url");
  return `${h}.${p}.${sig}`;
};

const bad: [string, string | null, string][] = [
  ["missing credentials", null, "CREDENTIALS_MISSING"],
  ["not a bearer header", "Basic dXNlcjpwYXNz", "CREDENTIALS_MALFORMED"],
  ["garbage token", bearer("not.a.jwt"), "TOKEN_MALFORMED"],
  ["expired", bearer(signTestToken(claims, { expiresIn: -120 })), "TOKEN_EXPIRED"],
  ["not yet valid", bearer(signTestToken(claims, { notBefore: 600 })), "TOKEN_NOT_YET_VALID"],
  ["wrong issuer", bearer(signTestToken({ ...claims, iss: "https://evil.example" })), "TOKEN_ISSUER_REJECTED"],
  ["wrong audience", bearer(signTestToken({ ...claims, aud: "someone-else" })), "TOKEN_AUDIENCE_REJECTED"],
  ["unknown key", bearer(signTestToken(claims, { key: otherKey })), "TOKEN_KEY_UNKNOWN"],
  ["wrong key under a known kid", bearer(signTestToken(claims, { key: otherKey, header: { kid: testKey.kid } })), "TOKEN_SIGNATURE_INVALID"],
  ["alg none", bearer(unsignedToken(claims)), "TOKEN_ALGORITHM_REJECTED"],
  ["tampered payload", bearer(tamper(signTestToken({ sub: "u1", roles: ["sales"] }))), "TOKEN_SIGNATURE_INVALID"],
  ["HS256 with the public key as secret", bearer(hsConfusion()), "TOKEN_ALGORITHM_REJECTED"],
  ["no subject", bearer(signTestToken({ roles: ["admin"] })), "TOKEN_CLAIMS_INVALID"],
];

describe.each([
  ["grpc-js", (id: Identity) => node.grpcJs(RecordService, id)],
  ["connect gRPC", (id: Identity) => node.connect(RecordService, id)],
  ["connect JSON over HTTP/1.1", (id: Identity) => node.connectWeb(RecordService, id)],
] as const)("authentication via %s", (_name, client) => {
  it.each(bad)("%s: UNAUTHENTICATED with reason", async (_case, authorization, reason) => {
    const e = await rejection(client({ authorization }).getRecord({ ref: byId("auth-c1") }));
    expect(e.code).toBe(Code.Unauthenticated);
    const info = e.findDetails(ErrorInfoSchema)[0];
    expect(info?.reason).toBe(reason);
    expect(e.rawMessage).not.toContain("auth-c1");
  });

  it("a valid token is served", async () => {
    const got = await client(ADMIN).getRecord({ ref: byId("auth-c1") });
    expect(got.record?.id).toBe("auth-c1");
  });
});

/** A raw gRPC call over HTTP/2: the response's DATA bytes and trailers. */
async function rawGrpc(authorization: string | null): Promise<{ data: Buffer; status: string | undefined }> {
  const session = http2Connect(`http://${node.grpcAddress}`);
  try {
    const msg = toBinary(GetRecordRequestSchema, create(GetRecordRequestSchema, { ref: byId("auth-c1") }));
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    Buffer.from(msg).copy(frame, 5);
    const req = session.request({
      ":method": "POST",
      ":path": "/deltamesh.v1.RecordService/GetRecord",
      "content-type": "application/grpc",
      te: "trailers",
      ...(authorization ? { authorization } : {}),
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    req.on("response", (h) => (status ??= h["grpc-status"] as string | undefined));
    req.on("trailers", (t) => (status = t["grpc-status"] as string | undefined));
    req.on("data", (c: Buffer) => chunks.push(c));
    req.end(frame);
    await new Promise((resolve, reject) => {
      req.on("end", resolve);
      req.on("error", reject);
    });
    return { data: Buffer.concat(chunks), status };
  } finally {
    session.close();
  }
}

describe("no data bytes to an unauthenticated caller", () => {
  it.each(bad)("%s: zero response bytes, grpc-status 16", async (_case, authorization) => {
    const r = await rawGrpc(authorization);
    expect(r.status).toBe(String(Code.Unauthenticated));
    expect(r.data.length).toBe(0);
  });

  it("the same call with a valid token does return the record's bytes", async () => {
    const r = await rawGrpc(bearer(signTestToken(claims)));
    expect(r.status).toBe("0");
    expect(r.data.toString("latin1")).toContain("auth-c1");
  });

  it("the Connect JSON body of a refusal holds only the error", async () => {
    const res = await fetch(`${node.webUrl}/deltamesh.v1.RecordService/GetRecord`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ref: { collection: "customers", id: "auth-c1" } }),
    });
    expect(res.status).toBe(401);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(["code", "details", "message"]);
    expect(body.code).toBe("unauthenticated");
  });
});

describe("around authentication", () => {
  it("health needs no credentials", async () => {
    const health = node.grpcJs(Health, { authorization: null });
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("outside development mode the x-deltamesh-* identity headers count for nothing", async () => {
    const client = node.grpcJs(RecordService, { authorization: null });
    const e = await rejection(client.getRecord({ ref: byId("auth-c1") }, { headers: { "x-deltamesh-subject": "root", "x-deltamesh-roles": "admin" } }));
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CREDENTIALS_MISSING");
  });

  it("reflection needs no credentials and lists the access service", async () => {
    const raw = new grpc.Client(node.grpcAddress, grpc.credentials.createInsecure());
    try {
      const replies = await new Promise<ServerReflectionResponse[]>((resolve, reject) => {
        const call = raw.makeBidiStreamRequest(
          REFLECTION_V1_PATH,
          (m: Uint8Array) => Buffer.from(m),
          (b: Buffer) => fromBinary(ServerReflectionResponseSchema, b),
        );
        const out: ServerReflectionResponse[] = [];
        call.on("data", (r: ServerReflectionResponse) => out.push(r));
        call.on("error", reject);
        call.on("end", () => resolve(out));
        call.write(toBinary(ServerReflectionRequestSchema, create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "*" } })));
        call.end();
      });
      const r = replies[0]?.messageResponse;
      expect(r?.case).toBe("listServicesResponse");
      const names = r?.case === "listServicesResponse" ? r.value.service.map((x) => x.name) : [];
      expect(names).toEqual(expect.arrayContaining(["deltamesh.v1.AccessService", "deltamesh.v1.RecordService"]));
    } finally {
      raw.close();
    }
  });

  it("refused calls are in the audit log, with the reason and no token", async () => {
    const token = signTestToken(claims, { expiresIn: -120 });
    await rejection(node.grpcJs(RecordService, { authorization: bearer(token) }).getRecord({ ref: byId("auth-c1") }));
    const access = node.grpcJs(AccessService, ADMIN);
    await expect
      .poll(async () => (await access.queryAuditLog({ kind: AuditEventKind.UNAUTHENTICATED })).entries.map((e) => e.reason), { timeout: 5000 })
      .toContain("TOKEN_EXPIRED");
    const entries = (await access.queryAuditLog({ kind: AuditEventKind.UNAUTHENTICATED, pageSize: 1000 })).entries;
    expect(entries.every((e) => e.rpc.startsWith("/deltamesh.v1."))).toBe(true);
    expect(JSON.stringify(entries.map((e) => ({ ...e, seq: String(e.seq), time: null })))).not.toContain(token.split(".")[1]!);
  });

  it("token claims become the principal: subject, tenant, roles, attributes", async () => {
    const me = await node
      .grpcJs(AccessService, { subject: "li", tenant: "acme", roles: ["sales", "ghost"], attributes: { regions: ["east_china"], device_class: "mobile" } })
      .getCaller({});
    expect(me.principal).toMatchObject({ subject: "li", tenant: "acme", roles: ["sales", "ghost"] });
    expect(me.principal!.attributes.regions?.kind).toEqual({ case: "values", value: expect.objectContaining({ values: ["east_china"] }) });
    expect(me.unknownRoles).toEqual(["ghost"]);
  });
});

describe("key rotation through the JWKS file, without restart", () => {
  it("a new key is accepted once the file lists it; a removed key is refused", async () => {
    const dir = await scratchDir("jwks");
    const file = path.join(dir, "jwks.json");
    const key1 = newTestKey("k1");
    const key2 = newTestKey("k2");
    await writeFile(file, JSON.stringify({ keys: [key1.jwk] }));
    const rotating = await startAccessNode({ auth: { jwt: { issuer: TEST_ISSUER, audience: [TEST_AUDIENCE], jwksFile: file }, auditFlushMs: 20 } });
    try {
      const call = (key: typeof key1) =>
        rotating.grpcJs(AccessService, { authorization: bearer(signTestToken(claims, { key })) }).getCaller({});
      expect((await call(key1)).principal?.subject).toBe("u1");
      expect((await rejection(call(key2))).code).toBe(Code.Unauthenticated);
      await writeFile(file, JSON.stringify({ keys: [key1.jwk, key2.jwk] }));
      await expect.poll(async () => (await call(key2).then(() => "ok", () => "refused")), { timeout: 10_000 }).toBe("ok");
      await writeFile(file, JSON.stringify({ keys: [key2.jwk] }));
      await expect.poll(async () => (await call(key1).then(() => "ok", () => "refused")), { timeout: 10_000 }).toBe("refused");
      expect((await call(key2)).principal?.subject).toBe("u1");
      // A broken file keeps the last good keys.
      await writeFile(file, "{ not json");
      await new Promise((r) => setTimeout(r, 300));
      expect((await call(key2)).principal?.subject).toBe("u1");
    } finally {
      await rotating.stop();
    }
  });
});

describe("development mode is explicit", () => {
  it("a serving node without any authentication configured refuses to start", async () => {
    const cfg = resolveNodeConfig({ grpcPort: 0, webPort: -1, databaseUrl: await testDatabaseUrl(), insecureDevAuth: false, auth: {} });
    await expect(startNode(cfg, createLogger("silent"))).rejects.toThrow(/no authentication configured/);
  });

  it("in development mode, calls without credentials act as the dev admin; unsigned tokens are read", async () => {
    const dev = await startAccessNode({ insecureDevAuth: true, auth: { auditFlushMs: 20 } });
    try {
      const anon = await dev.grpcJs(AccessService, { authorization: null }).getCaller({});
      expect(anon.principal).toMatchObject({ subject: "dev", roles: ["admin"] });
      const unsigned = await dev.grpcJs(AccessService, { authorization: bearer(unsignedToken({ sub: "tok", roles: ["sales"] })) }).getCaller({});
      expect(unsigned.principal).toMatchObject({ subject: "tok", roles: ["sales"] });
      await dev.grpcJs(RecordService, { authorization: null }).writeRecords({ mutations: [{ ref: byId("dev-1"), set: { name: str("x"), region: enm("east_china") } }] });
    } finally {
      await dev.stop();
    }
  });
});
