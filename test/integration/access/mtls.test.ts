// mTLS: a verified client certificate maps to a principal through the
// policy's client_certificates (the example maps CN=erp-gateway to svc-erp);
// an unmapped one is UNAUTHENTICATED; one from another CA never connects.
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AccessService } from "../../../gen/deltamesh/v1/access_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { createGrpcJsClient } from "../../../services/platform/transport/grpc-client.js";
import { scratchDir } from "../../support/env.js";
import type { TestNode } from "../../support/node.js";
import { byId, enm, rejection, str } from "../../support/rpc.js";
import { signTestToken } from "../../support/tokens.js";
import { startAccessNode } from "./helpers.js";

let dir: string;
let node: TestNode;
const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });

function makeCa(name: string): void {
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "2", "-subj", `/CN=${name}`);
}

function makeCert(name: string, ca: string, subject: string, ext: string): void {
  openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", subject);
  execFileSync("sh", ["-c", `printf '%s\\n' '${ext}' > ${name}.ext`], { cwd: dir });
  openssl("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-extfile", `${name}.ext`);
}

const file = (name: string) => readFile(path.join(dir, name));

async function clientWith(cert: string | null, ca = "ca") {
  const creds = grpc.credentials.createSsl(await file(`${ca}.crt`), cert ? await file(`${cert}.key`) : null, cert ? await file(`${cert}.crt`) : null);
  return <S extends DescService>(service: S, headers: Record<string, string> = {}) => {
    const client = createGrpcJsClient(service, `127.0.0.1:${node.node.grpcPort}`, creds, {
      "grpc.ssl_target_name_override": "localhost",
      interceptors: [
        (options, next) =>
          new grpc.InterceptingCall(next(options), {
            start(md, listener, go) {
              for (const [k, v] of Object.entries(headers)) md.set(k, v);
              go(md, listener);
            },
          }),
      ],
    });
    return client;
  };
}

beforeAll(async () => {
  dir = await scratchDir("mtls");
  makeCa("ca");
  makeCa("evil-ca");
  makeCert("server", "ca", "/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1");
  makeCert("erp", "ca", "/CN=erp-gateway/O=Example", "extendedKeyUsage=clientAuth");
  makeCert("stranger", "ca", "/CN=stranger", "extendedKeyUsage=clientAuth");
  makeCert("forged", "evil-ca", "/CN=erp-gateway", "extendedKeyUsage=clientAuth");
  node = await startAccessNode({
    webPort: -1,
    tls: { certFile: path.join(dir, "server.crt"), keyFile: path.join(dir, "server.key"), caFile: path.join(dir, "ca.crt"), requireClientCert: true },
  });
});
afterAll(async () => {
  await node?.stop();
});

describe("client certificates", () => {
  it("a mapped certificate acts as its principal, with that principal's rights", async () => {
    const as = await clientWith("erp");
    const me = await as(AccessService).getCaller({});
    expect(me.principal).toMatchObject({ subject: "svc-erp", tenant: "default", roles: ["erp_integration"] });
    const rs = as(RecordService);
    const w = await rs.writeRecords({ mutations: [{ ref: byId("mtls-1"), set: { name: str("ERP customer"), region: enm("north_china") }, source: "erp" }] });
    expect(w.results[0]!.created).toBe(true);
    // erp_integration may not delete.
    expect((await rejection(rs.deleteRecord({ ref: byId("mtls-1") }))).code).toBe(Code.PermissionDenied);
  });

  it("a valid certificate that maps to no principal is UNAUTHENTICATED", async () => {
    const e = await rejection((await clientWith("stranger"))(AccessService).getCaller({}));
    expect(e.code).toBe(Code.Unauthenticated);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CERTIFICATE_NOT_MAPPED");
  });

  it("a bearer token wins over the certificate", async () => {
    const as = await clientWith("stranger");
    const me = await as(AccessService, { authorization: `Bearer ${signTestToken({ sub: "person", roles: ["finance"] })}` }).getCaller({});
    expect(me.principal?.subject).toBe("person");
  });

  it("a certificate from another CA (even naming CN=erp-gateway) never gets a call through", async () => {
    const e = await rejection((await clientWith("forged"))(AccessService).getCaller({}, { timeoutMs: 5000 }));
    expect([Code.Unavailable, Code.DeadlineExceeded]).toContain(e.code);
  });
});
