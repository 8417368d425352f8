// What the chart's kubelet probes talk to: grpc.health.v1 on the node's gRPC
// port, or (with TLS, which kubelet probes cannot speak) on the plaintext
// health-only port. Readiness asks for "", liveness and startup for "liveness".
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../../gen/health/v1/health_pb.js";
import { LIVENESS } from "../../../services/platform/server.js";
import { createGrpcJsClient } from "../../../services/platform/transport/grpc-client.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { byId } from "../../support/rpc.js";

let node: TestNode;
const closers: (() => void)[] = [];
beforeAll(async () => {
  node = await startTestNode({ healthPort: 0 });
});
afterAll(async () => {
  for (const c of closers) c();
  await node?.stop();
});

function client<S extends Parameters<typeof createGrpcJsClient>[0]>(service: S, port: number) {
  const c = createGrpcJsClient(service, `127.0.0.1:${port}`);
  closers.push(() => c.close());
  return c;
}

describe("probe endpoints", () => {
  it("the health-only port answers readiness and liveness like the API port", async () => {
    expect(LIVENESS).toBe("liveness"); // the name the chart's probes use
    const port = node.node.healthPort;
    expect(port).toBeGreaterThan(0);
    for (const p of [port!, node.node.grpcPort]) {
      const health = client(Health, p);
      expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
      expect((await health.check({ service: LIVENESS })).status).toBe(Status.SERVING);
    }
  });

  it("the health-only port serves nothing else", async () => {
    const records = client(RecordService, node.node.healthPort!);
    const err = await records.getRecord({ ref: byId("x") }).then(
      () => null,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unimplemented);
  });
});
