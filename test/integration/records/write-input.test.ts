// Bad input to WriteRecords that once slipped past validation: names the
// database cannot store, versions and edit times out of range, a base version
// the record never reached, a client_mutation_id reused for another write, a
// map key that hides in the prototype. Each is refused with its field named
// and nothing written, and one caller's bad input never fails its neighbours
// in the same group-commit batch.
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService, WriteRecordsRequestSchema } from "../../../gen/deltamesh/v1/records_pb.js";
import type { MutationSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DEFAULT_CONFIG_PATH, readConfigFile } from "../../../services/config/file-source.js";
import { WritePipeline } from "../../../services/records/write-pipeline.js";
import type { MutationInput } from "../../../services/records/model.js";
import { RecordStore } from "../../../services/store/record-store.js";
import { identityHeaders, startTestNode, type TestNode } from "../../support/node.js";
import { byId, byKey, enm, rejection, str } from "../../support/rpc.js";

type MutationInit = MessageInitShape<typeof MutationSchema>;

const region = enm("east_china");
let node: TestNode;
let db: pg.Pool;
beforeAll(async () => {
  node = await startTestNode();
  db = new pg.Pool({ connectionString: node.node.databaseUrl, max: 2 });
});
afterAll(async () => {
  await db?.end();
  await node?.stop();
});

let seq = 0;
const uid = (p: string) => `${p}-${process.pid}-${++seq}`;

async function changesOf(id: string): Promise<number> {
  const res = await db.query<{ n: string }>("SELECT count(*) AS n FROM changes WHERE record_id = $1", [id]);
  return Number(res.rows[0]!.n);
}

/** A write pipeline of this process on the node's database (to put writes in one batch, or input past request validation). */
async function withPipeline(work: (pipeline: WritePipeline) => Promise<void>): Promise<void> {
  const store = await RecordStore.open({ url: node.node.databaseUrl });
  try {
    const schemas = (await readConfigFile(DEFAULT_CONFIG_PATH)).schemas;
    await work(new WritePipeline(store, () => schemas));
  } finally {
    await store.close();
  }
}

/** A customers mutation as the pipeline takes it. */
const customerMutation = (target: MutationInput["target"], set: MutationInput["set"], source = "crm"): MutationInput => ({
  collection: "customers",
  target,
  set,
  clear: [],
  baseVersion: 0,
  clientMutationId: "",
  source,
  device: "",
  delete: false,
});

/** The error's reason, and its violations as `path: REASON`. */
function described(err: Awaited<ReturnType<typeof rejection>>) {
  return {
    code: err.code,
    reason: err.findDetails(ErrorInfoSchema)[0]?.reason,
    violations: err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => `${v.field}: ${v.reason}`) ?? [],
  };
}

// Connect JSON is left out where its client cannot even encode the input (a
// timestamp past year 9999, a NUL is fine in JSON but covered by the others).
const binaryClients = [
  ["grpc-js", () => node.grpcJs(RecordService)],
  ["connect (gRPC over HTTP/2)", () => node.connect(RecordService)],
] as const;

describe.each(binaryClients)("WriteRecords bad input via %s", (_name, makeClient) => {
  let rs: ReturnType<typeof makeClient>;
  beforeAll(() => {
    rs = makeClient();
  });
  const write = (...mutations: MutationInit[]) => rs.writeRecords({ mutations } as MessageInitShape<typeof WriteRecordsRequestSchema>);

  it("a NUL in client_mutation_id, source or device is INVALID_ARGUMENT naming each, and nothing is written", async () => {
    const id = uid("nul");
    const err = await rejection(write({ ref: byId(id), set: { region, name: str("N") }, clientMutationId: "a\u0000b", source: "crm\u0000", device: "\u0000pc" }));
    expect(described(err)).toEqual({
      code: Code.InvalidArgument,
      reason: "INVALID_ARGUMENT",
      violations: ["mutations[0].client_mutation_id: INVALID_CHARACTER", "mutations[0].source: INVALID_CHARACTER", "mutations[0].device: INVALID_CHARACTER"],
    });
    expect(await changesOf(id)).toBe(0);
  });

  it("an edit_time outside the Timestamp range is INVALID_ARGUMENT naming it", async () => {
    const id = uid("time");
    const err = await rejection(write({ ref: byId(id), set: { region, name: str("T") }, editTime: { seconds: 10n ** 13n } }));
    expect(described(err)).toEqual({ code: Code.InvalidArgument, reason: "INVALID_ARGUMENT", violations: ["mutations[0].edit_time: OUT_OF_RANGE"] });
    expect(await changesOf(id)).toBe(0);
  });

  it("versions above 2^53 are OUT_OF_RANGE, not rounded to a version the client never sent", async () => {
    const err = await rejection(write({ ref: byId(uid("v")), set: { region, name: str("V") }, expectedVersion: 2n ** 64n - 1n, baseVersion: 2n ** 60n }));
    expect(described(err).violations).toEqual(["mutations[0].expected_version: OUT_OF_RANGE", "mutations[0].base_version: OUT_OF_RANGE"]);
    expect(err.rawMessage).toContain("18446744073709551615");
  });

  it("a base_version ahead of the record is FAILED_PRECONDITION: the conflict policies cannot be skipped by claiming a future base", async () => {
    const id = uid("base");
    await write({ ref: byId(id), set: { region, name: str("B"), invoice_title: str("Original Co.") } });
    await write({ ref: byId(id), set: { contract_no: str("C-1") }, baseVersion: 1n });
    const err = await rejection(write({ ref: byId(id), set: { invoice_title: str("Evil Co."), contract_no: str("C-EVIL") }, baseVersion: 1_000_000n }));
    expect(described(err)).toEqual({ code: Code.FailedPrecondition, reason: "BASE_VERSION_AHEAD", violations: ["mutations[0].base_version: BASE_VERSION_AHEAD"] });
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({ base_version: "1000000", current_version: "2", mutation_index: "0" });
    const got = (await rs.getRecord({ ref: byId(id) })).record!;
    expect([got.version, got.fields.invoice_title?.kind.value, got.fields.contract_no?.kind.value]).toEqual([2n, "Original Co.", "C-1"]);
  });

  it("an unknown collection in a batch is NOT_FOUND naming the mutation, and the valid ones are not written", async () => {
    const id = uid("ok");
    const err = await rejection(write({ ref: byId(id), set: { region, name: str("ok") } }, { ref: byId(uid("x"), "customerz"), set: { name: str("x") } }));
    expect(err.code).toBe(Code.NotFound);
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({ collection: "customerz", mutation_index: "1" });
    expect(await changesOf(id)).toBe(0);
  });

  it("DeleteRecord names its own fields, and a missing identity target by its field, not by a made-up id", async () => {
    const bad = await rejection(rs.deleteRecord({ ref: byId(uid("d")), clientMutationId: "x\u0000" }));
    expect(described(bad).violations).toEqual(["client_mutation_id: INVALID_CHARACTER"]);
    expect(bad.findDetails(ErrorInfoSchema)[0]?.metadata.mutation_index).toBeUndefined();
    const missing = await rejection(rs.deleteRecord({ ref: byKey("erp_id", str(uid("ERP-missing"))) }));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.rawMessage).toContain("the customers record with this erp_id does not exist");
    expect(missing.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({ collection: "customers" });
  });
});

it('a "__proto__" key in set is UNKNOWN_FIELD, not silently dropped (protobuf-es decodes it into the map\'s prototype)', async () => {
  const id = uid("proto");
  // Clients in other languages can send the key; a JS client cannot even hold it, so the bytes are patched.
  const request = toBinary(
    WriteRecordsRequestSchema,
    create(WriteRecordsRequestSchema, { mutations: [{ ref: byId(id), set: { region, name: str("P"), zzproto__: str("x") } }] }),
  );
  const at = Buffer.from(request).indexOf("zzproto__");
  Buffer.from(request.buffer, request.byteOffset).write("__", at);
  const client = new grpc.Client(node.grpcAddress, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(identityHeaders({}))) metadata.set(k, v);
  const status = await new Promise<grpc.ServiceError | null>((resolve) =>
    client.makeUnaryRequest("/deltamesh.v1.RecordService/WriteRecords", (b: Uint8Array) => Buffer.from(b), (b: Buffer) => b, request, metadata, (err) => resolve(err)),
  );
  client.close();
  expect(status?.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(status?.details).toContain("mutations[0].set.__proto__: unknown field");
  expect(await changesOf(id)).toBe(0);
});

describe("client_mutation_id reuse", () => {
  const rs = () => node.grpcJs(RecordService);

  it("a retry of the same mutation is replayed, even with the phone written another way (normalized values are compared)", async () => {
    const cmid = uid("m");
    const erp = uid("ERP");
    const m = (phone: string): MutationInit => ({ ref: byKey("erp_id", str(erp)), set: { region, name: str("R"), phone: str(phone) }, clientMutationId: cmid });
    const first = (await rs().writeRecords({ mutations: [m("138 0013 8123")] })).results[0]!;
    const retry = (await rs().writeRecords({ mutations: [m("+86 13800138123")] })).results[0]!;
    expect([retry.replayed, retry.id, retry.version]).toEqual([true, first.id, first.version]);
    expect(await changesOf(first.id)).toBe(1);
  });

  it("the same id for another record is ALREADY_EXISTS (CLIENT_MUTATION_ID_REUSED), and that record is not written", async () => {
    const cmid = uid("m");
    const [a, b] = [uid("a"), uid("b")];
    await rs().writeRecords({ mutations: [{ ref: byId(a), set: { region, name: str("A") }, clientMutationId: cmid }] });
    const err = await rejection(rs().writeRecords({ mutations: [{ ref: byId(b), set: { region, name: str("B") }, clientMutationId: cmid }] }));
    expect(described(err)).toEqual({ code: Code.AlreadyExists, reason: "CLIENT_MUTATION_ID_REUSED", violations: ["mutations[0].client_mutation_id: CLIENT_MUTATION_ID_REUSED"] });
    expect(await changesOf(b)).toBe(0);
  });

  it("another principal reusing an id gets no replay of the first caller's result", async () => {
    const cmid = uid("m");
    const id = uid("c");
    const m: MutationInit = { ref: byId(id), set: { region, name: str("Mine") }, clientMutationId: cmid };
    await rs().writeRecords({ mutations: [m] });
    const other = node.grpcJs(RecordService, { subject: "someone-else", roles: ["admin"] });
    const err = await rejection(other.writeRecords({ mutations: [m] }));
    expect(described(err).reason).toBe("CLIENT_MUTATION_ID_REUSED");
    expect(err.rawMessage).not.toContain(id);
  });

  it("two different mutations with one id in a request fail the request as a whole", async () => {
    const cmid = uid("m");
    const [c, d] = [uid("c"), uid("d")];
    const err = await rejection(
      rs().writeRecords({
        mutations: [
          { ref: byId(c), set: { region, name: str("C") }, clientMutationId: cmid },
          { ref: byId(d), set: { region, name: str("D") }, clientMutationId: cmid },
        ],
      }),
    );
    expect(described(err)).toMatchObject({ code: Code.AlreadyExists, violations: ["mutations[1].client_mutation_id: CLIENT_MUTATION_ID_REUSED"] });
    expect((await changesOf(c)) + (await changesOf(d))).toBe(0);
  });
});

describe("upserts by identity see the keys earlier mutations of their batch moved", () => {
  const rs = () => node.grpcJs(RecordService);
  /** A valid Chinese mobile number, distinct per call. */
  const phone = () => `+86139${String(10_000_000 + ((++seq * 7919) % 89_999_999)).padStart(8, "0")}`;

  it("a key taken earlier in the request is found on the record that took it", async () => {
    const [id, p] = [uid("taker"), phone()];
    const results = (
      await rs().writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str("T"), phone: str(p) } }, { ref: byKey("phone", str(p)), set: { notes: str("by phone") } }] })
    ).results;
    expect(results.map((r) => [r.id, r.version, r.created])).toEqual([
      [id, 1n, true],
      [id, 2n, false],
    ]);
  });

  it("a key given up earlier in the request goes to a new record, not to the one that gave it up", async () => {
    const [id, p2, p3] = [uid("giver"), phone(), phone()];
    await rs().writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str("G"), phone: str(p2) } }] });
    const [moved, upsert] = (
      await rs().writeRecords({
        mutations: [{ ref: byId(id), set: { phone: str(p3) } }, { ref: byKey("phone", str(p2)), set: { region, name: str("New holder") } }],
      })
    ).results;
    expect([moved!.id, moved!.version]).toEqual([id, 2n]);
    expect(upsert!.created).toBe(true);
    expect(upsert!.id).not.toBe(id);
    expect((await rs().getRecord({ ref: byKey("phone", str(p2)) })).record!.id).toBe(upsert!.id);
  });

  it("an edit of a manual_review field by a key taken earlier in the request joins that record's open ticket", async () => {
    const [id, p] = [uid("reviewed"), phone()];
    await rs().writeRecords({ mutations: [{ ref: byId(id), set: { region, name: str("R"), status: enm("active") } }] });
    await rs().writeRecords({ mutations: [{ ref: byId(id), set: { status: enm("dormant") }, baseVersion: 1n }] });
    const queued = (await rs().writeRecords({ mutations: [{ ref: byId(id), set: { status: enm("blacklisted") }, baseVersion: 1n }] })).results[0]!.fields[0]!;
    expect(queued.ticketId).not.toBe("");
    const [, joined] = (
      await rs().writeRecords({ mutations: [{ ref: byId(id), set: { phone: str(p) } }, { ref: byKey("phone", str(p)), set: { status: enm("merged") }, baseVersion: 1n }] })
    ).results;
    expect([joined!.id, joined!.fields[0]!.ticketId]).toEqual([id, queued.ticketId]);
    const open = await db.query("SELECT id FROM conflict_tickets WHERE record_id = $1 AND status = 'open'", [id]);
    expect(open.rows).toHaveLength(1);
  });

  it("two callers in one group-commit batch get what they would get one after the other", async () => {
    await withPipeline(async (pipeline) => {
      const [id, p] = [uid("first"), phone()];
      // The first write fills a batch alone; the two behind it form the next one together.
      const filler = pipeline.write({ tenant: "default", actor: "test", mutations: [customerMutation({ id: uid("filler") }, { name: "F", region: "east_china" })] });
      const creator = pipeline.write({ tenant: "default", actor: "a", mutations: [customerMutation({ id }, { name: "A", region: "east_china", phone: p })] });
      const upserter = pipeline.write({ tenant: "default", actor: "b", mutations: [customerMutation({ identity: { field: "phone", value: p } }, { notes: "B" })] });
      await filler;
      const [[a], [b]] = await Promise.all([creator, upserter]);
      expect([a!.id, a!.version]).toEqual([id, 1]);
      expect([b!.id, b!.version, b!.created]).toEqual([id, 2, false]);
    });
  });
});

describe("one caller's input refused by the database", () => {
  it("fails only that caller: the other writes of its group-commit batch commit", async () => {
    await withPipeline(async (pipeline) => {
      // Past request validation (a caller inside the process): PostgreSQL itself refuses the NUL.
      const ids = Array.from({ length: 12 }, () => uid("batch"));
      const outcomes = await Promise.allSettled(
        ids.map((id, i) =>
          pipeline.write({ tenant: "default", actor: "test", mutations: [customerMutation({ id }, { name: id, region: "east_china" }, i === 5 ? "crm\u0000" : "crm")] }),
        ),
      );
      expect(outcomes.map((o) => o.status)).toEqual(ids.map((_, i) => (i === 5 ? "rejected" : "fulfilled")));
      expect(await Promise.all(ids.map(changesOf))).toEqual(ids.map((_, i) => (i === 5 ? 0 : 1)));
    });
  });
});
