// The write benchmark's minimal gRPC caller (test/bench/h2-unary.ts) speaks
// gRPC the server accepts: a write through it commits and answers with the
// same response a generated client decodes, and a refused call rejects with
// its status instead of counting as an acknowledgement.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService, WriteRecordsRequestSchema, WriteRecordsResponseSchema } from "../../../gen/deltamesh/v1/records_pb.js";
import { H2UnaryClient } from "../../bench/h2-unary.js";
import { identityHeaders, startTestNode, type TestNode } from "../../support/node.js";
import { byId, enm, str } from "../../support/rpc.js";

const WRITE = `/${RecordService.typeName}/${RecordService.method.writeRecords.name}`;
let node: TestNode;
let client: H2UnaryClient;
beforeAll(async () => {
  node = await startTestNode();
  client = new H2UnaryClient(node.grpcAddress, identityHeaders({}));
});
afterAll(async () => {
  client?.close();
  await node?.stop();
});

const writeRequest = (id: string) =>
  Buffer.from(
    toBinary(
      WriteRecordsRequestSchema,
      create(WriteRecordsRequestSchema, { mutations: [{ ref: byId(id), set: { name: str("Bench Customer"), region: enm("east_china") }, source: "bench" }] }),
    ),
  );

describe("the benchmark's gRPC caller", () => {
  it("writes a record and returns the response message", async () => {
    const res = fromBinary(WriteRecordsResponseSchema, await client.call(WRITE, writeRequest("bench-client-1")));
    expect(res.results).toMatchObject([{ id: "bench-client-1", version: 1n, created: true }]);
    const stored = await node.grpcJs(RecordService).getRecord({ ref: byId("bench-client-1") });
    expect(stored.record?.fields.name?.kind).toEqual({ case: "stringValue", value: "Bench Customer" });
  });

  it("rejects with the status of a refused call", async () => {
    await expect(client.call(WRITE, Buffer.from([0x0a, 0x05, 0xff]))).rejects.toThrow(/grpc-status 3 /);
    const anonymous = new H2UnaryClient(node.grpcAddress);
    try {
      await expect(anonymous.call(WRITE, writeRequest("bench-client-2"))).rejects.toThrow(/grpc-status 16 /);
    } finally {
      anonymous.close();
    }
  });
});
