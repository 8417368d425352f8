// The benchmarks' minimal gRPC caller (test/bench/h2-client.ts) speaks gRPC
// the server accepts: a write through it commits and answers with the same
// response a generated client decodes, a stream delivers the messages a
// generated client would decode, and a refused call rejects with its status
// instead of counting as an acknowledgement or a quiet stream.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService, WriteRecordsRequestSchema, WriteRecordsResponseSchema } from "../../../gen/deltamesh/v1/records_pb.js";
import { ChangeService, SubscribeRequestSchema, SubscribeResponseSchema } from "../../../gen/deltamesh/v1/changes_pb.js";
import { H2GrpcClient } from "../../bench/h2-client.js";
import { identityHeaders, startTestNode, type TestNode } from "../../support/node.js";
import { byId, enm, str } from "../../support/rpc.js";

const WRITE = `/${RecordService.typeName}/${RecordService.method.writeRecords.name}`;
const SUBSCRIBE = `/${ChangeService.typeName}/${ChangeService.method.subscribe.name}`;
let node: TestNode;
let client: H2GrpcClient;
beforeAll(async () => {
  node = await startTestNode();
  client = new H2GrpcClient(node.grpcAddress, identityHeaders({}));
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
    const anonymous = new H2GrpcClient(node.grpcAddress);
    try {
      await expect(anonymous.call(WRITE, writeRequest("bench-client-2"))).rejects.toThrow(/grpc-status 16 /);
    } finally {
      anonymous.close();
    }
  });

  it("streams a subscription's messages as they come, and reports a refused stream's status", async () => {
    const received: string[] = [];
    // From the cursor of a first write, so the stream misses nothing that follows.
    const first = fromBinary(WriteRecordsResponseSchema, await client.call(WRITE, writeRequest("bench-stream-0"))).results[0]!.cursor;
    const request = Buffer.from(
      toBinary(SubscribeRequestSchema, create(SubscribeRequestSchema, { collections: [{ collection: "customers" }], start: { case: "afterCursor", value: first } })),
    );
    const stream = client.stream(SUBSCRIBE, request, (bytes) => {
      for (const e of fromBinary(SubscribeResponseSchema, bytes).events) if (e.kind.case === "upsert") received.push(`${e.kind.value.id}@${e.kind.value.version}`);
    });
    try {
      for (const id of ["bench-stream-1", "bench-stream-2", "bench-stream-3"]) await client.call(WRITE, writeRequest(id));
      await expect.poll(() => received, { timeout: 5_000 }).toEqual(["bench-stream-1@1", "bench-stream-2@1", "bench-stream-3@1"]);
    } finally {
      stream.cancel();
    }
    await expect(stream.done).resolves.toBeUndefined();

    const anonymous = new H2GrpcClient(node.grpcAddress);
    try {
      const refused = anonymous.stream(SUBSCRIBE, request, () => undefined);
      await expect(refused.done).rejects.toThrow(/grpc-status 16 /);
    } finally {
      anonymous.close();
    }
  });
});
