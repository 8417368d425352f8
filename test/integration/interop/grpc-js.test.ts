// A @grpc/grpc-js client built from the .proto files by @grpc/proto-loader
// (none of our generated code) against a real node: the records scenario,
// the changes scenario (stream, disconnect, resume; masked reads), the
// standard health service, and a reflection listing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SERVED } from "../../../services/platform/server.js";
import { runChangesScenario } from "../../interop/grpc-js/scenario-changes.js";
import { runRecordsScenario } from "../../interop/grpc-js/scenario-records.js";
import { createProtoLoaderClient, expectFailure, type Plain, type ProtoLoaderClient } from "../../interop/grpc-js/client.js";
import type { ChangesObserved } from "../../interop/changes-observed.js";
import type { RecordsObserved } from "../../interop/records-observed.js";
import { identityHeaders, startTestNode, type TestNode } from "../../support/node.js";
import { changesScenarioTests, maskedPrincipal } from "./changes-expectations.js";
import { recordsScenarioTests } from "./records-expectations.js";

const FILES = [
  "deltamesh/v1/records.proto",
  "deltamesh/v1/conflicts.proto",
  "deltamesh/v1/changes.proto",
  "health/v1/health.proto",
  "grpc/reflection/v1/reflection.proto",
];
const TENANT = "grpc-js-interop";

describe("grpc-js client from proto-loader", () => {
  let node: TestNode;
  let client: ProtoLoaderClient;
  let masked: ProtoLoaderClient;
  let observed: { records: RecordsObserved; changes: ChangesObserved };

  beforeAll(async () => {
    node = await startTestNode();
    client = createProtoLoaderClient(node.grpcAddress, FILES, identityHeaders({ tenant: TENANT, subject: "grpc-js-interop" }));
    masked = createProtoLoaderClient(node.grpcAddress, FILES, identityHeaders(maskedPrincipal(TENANT, "grpc-js-interop-sales")));
    observed = { records: await runRecordsScenario(client, "js"), changes: await runChangesScenario(client, masked, "js") };
  });

  afterAll(async () => {
    client?.close();
    masked?.close();
    await node?.stop();
  });

  recordsScenarioTests(() => observed.records, { prefix: "js", device: "grpc-js-interop" });
  changesScenarioTests(() => observed.changes, { prefix: "js", device: "grpc-js-interop", node: () => node, tenant: TENANT });

  it("checks health: the node and each service SERVING, an unknown service NOT_FOUND", async () => {
    const check = client.unary("grpc.health.v1.Health", "Check");
    expect(await check({ service: "" })).toEqual({ status: "SERVING" });
    expect(await check({ service: "deltamesh.v1.RecordService" })).toEqual({ status: "SERVING" });
    expect(await check({ service: "deltamesh.v1.ConflictService" })).toEqual({ status: "SERVING" });
    expect((await expectFailure(check({ service: "no.such.Service" }))).code).toBe("NOT_FOUND");
  });

  it("lists services and fetches their file descriptors through grpc.reflection.v1", async () => {
    const [listing, files] = await client.bidi("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", [
      { list_services: "" },
      { file_containing_symbol: "deltamesh.v1.RecordService" },
    ]);
    const services = ((listing!.list_services_response as Plain).service as Plain[]).map((s) => s.name).sort();
    expect(services).toEqual([...SERVED.map((svc) => svc.typeName), "grpc.health.v1.Health"].sort());
    const protos = (files!.file_descriptor_response as Plain).file_descriptor_proto as Buffer[];
    // A serialized FileDescriptorProto starts with field 1 (name): tag 0x0a, length, name.
    const names = protos.map((b) => b.subarray(2, 2 + b[1]!).toString());
    expect(names).toEqual(expect.arrayContaining(["deltamesh/v1/records.proto", "deltamesh/v1/types.proto"]));
  });
});
