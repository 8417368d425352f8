// ApplyConfig checks a schema change against the records already stored, on a
// real node and PostgreSQL: a change the records do not fit is refused with
// FAILED_PRECONDITION naming each field, how many records and a few of them,
// dry runs included, and nothing changes; a change they fit goes through.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { ClusterService } from "../../../gen/deltamesh/v1/cluster_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { scratchDir } from "../../support/env.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { byId, enm, int, rejection, str, type ValueInit } from "../../support/rpc.js";

type FieldDoc = Record<string, unknown>;
type ConfigDoc = { collections: Record<string, { fields: Record<string, FieldDoc> }> };

let node: TestNode;
const admin = () => node.connect(ClusterService);
const currentDoc = async () => parse((await admin().getConfig({})).document) as ConfigDoc;
/** The config in force with `edit` applied to its customers fields. */
const edited = async (edit: (fields: Record<string, FieldDoc>) => void) => {
  const doc = await currentDoc();
  edit(doc.collections.customers!.fields);
  return stringify(doc);
};

beforeAll(async () => {
  const configFile = path.join(await scratchDir("schema-change"), "config.yaml");
  await writeFile(configFile, await readFile(DEFAULT_CONFIG_PATH, "utf8"));
  node = await startTestNode({ configFile });
  const customer = (id: string, set: Record<string, ValueInit>) => ({
    ref: byId(id),
    set: { name: str(`Customer ${id}`), region: enm("east_china"), ...set },
    source: "crm-desktop",
    device: "test",
  });
  await node.connect(RecordService).writeRecords({
    mutations: [
      customer("c-1", { notes: str("call back"), level: enm("key"), visits: int(3), birthday: { kind: { case: "timestampValue", value: { seconds: 86_400n } } } }),
      customer("c-2", { level: enm("regular"), visits: int(5) }),
      customer("c-3", { notes: str("vip"), level: enm("regular") }),
      customer("c-4", { notes: str("gone"), level: enm("potential") }),
    ],
  });
  await node.connect(RecordService).deleteRecord({ ref: byId("c-4") });
});
afterAll(async () => {
  await node?.stop();
});

/** The refusal of `document` (dry run and real), checked to have changed nothing; its violations as [field, reason, description]. */
async function refused(document: string): Promise<[string, string, string][]> {
  const before = (await admin().getConfig({})).revision;
  const dry = await rejection(admin().applyConfig({ document, dryRun: true }));
  const err = await rejection(admin().applyConfig({ document }));
  for (const e of [dry, err]) {
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.findDetails(ErrorInfoSchema)[0]?.reason).toBe("SCHEMA_DOES_NOT_FIT_RECORDS");
  }
  expect((await admin().getConfig({})).revision).toBe(before);
  const violations = err.findDetails(BadRequestSchema)[0]!.fieldViolations.map((v): [string, string, string] => [v.field, v.reason, v.description]);
  expect(dry.findDetails(BadRequestSchema)[0]!.fieldViolations.map((v) => v.field)).toEqual(violations.map((v) => v[0]));
  return violations;
}

describe("ApplyConfig against stored records", () => {
  it("refuses making a field required that live records lack, naming how many and which", async () => {
    const violations = await refused(await edited((f) => (f.notes!.required = true)));
    expect(violations.map(([field, reason]) => [field, reason])).toEqual([["collections.customers.fields.notes.required", "RECORDS_LACK_VALUE"]]);
    // c-2 lacks notes; c-4 lacks nothing that matters: it is deleted.
    expect(violations[0]![2]).toMatch(/customers\.notes becomes required, but 1 record holds no value for it \(e\.g\. default\/c-2\)/);
  });

  it("refuses a new type or enum that stored values do not fit, with the reasons counted", async () => {
    const violations = await refused(
      await edited((f) => {
        f.visits = { type: "string" };
        f.level = { type: "enum", values: ["strategic", "key"] };
      }),
    );
    expect(violations.map(([field, reason]) => [field, reason])).toEqual([
      ["collections.customers.fields.level", "RECORDS_DO_NOT_FIT"],
      ["collections.customers.fields.visits", "RECORDS_DO_NOT_FIT"],
    ]);
    // Examples come in scan order.
    expect(violations[0]![2]).toMatch(/refuses the stored value of 2 records \(NOT_IN_ENUM: 2; e\.g\. (default\/c-2, default\/c-3|default\/c-3, default\/c-2)\)/);
    expect(violations[1]![2]).toMatch(/refuses the stored value of 2 records \(WRONG_TYPE: 2; e\.g\. (default\/c-1, default\/c-2|default\/c-2, default\/c-1)\)/);
  });

  it("checks a removed field's values when it comes back: removal leaves them in the records", async () => {
    const removed = await admin().applyConfig({ document: await edited((f) => delete f.birthday) });
    expect(removed.changed).toBe(true);
    const violations = await refused(await edited((f) => (f.birthday = { type: "int" })));
    expect(violations.map(([field, reason, description]) => [field, reason, /WRONG_TYPE: 1; e\.g\. default\/c-1\)/.test(description)])).toEqual([
      ["collections.customers.fields.birthday", "RECORDS_DO_NOT_FIT", true],
    ]);
    expect((await admin().applyConfig({ document: await edited((f) => (f.birthday = { type: "timestamp", sensitive: true })) })).changed).toBe(true);
  });

  it("refuses an identity over values already stored (tombstones keep keys too), and takes one on a field nobody holds", async () => {
    const violations = await refused(await edited((f) => (f.notes!.identity = true)));
    expect(violations.map(([field, reason]) => [field, reason])).toEqual([["collections.customers.fields.notes.identity", "RECORDS_HOLD_VALUES"]]);
    expect(violations[0]![2]).toMatch(/3 records \(deleted ones included\) already hold a value/);

    const applied = await admin().applyConfig({ document: await edited((f) => (f.invoice_title = { type: "string", identity: true })) });
    expect(applied.changed).toBe(true);
    // The new identity works from the first write: a second record with the value is refused.
    const records = node.connect(RecordService);
    await records.writeRecords({ mutations: [{ ref: byId("c-2"), set: { invoice_title: str("ACME Ltd") }, source: "erp", device: "test" }] });
    const dup = await rejection(
      records.writeRecords({ mutations: [{ ref: byId("c-3"), set: { invoice_title: str("ACME Ltd") }, source: "erp", device: "test" }] }),
    );
    expect(dup.findDetails(ErrorInfoSchema)[0]?.reason).toBe("IDENTITY_KEY_TAKEN");
  });

  it("drops the stale keys of a field that was an identity before, when it becomes one again with no value held", async () => {
    const records = node.connect(RecordService);
    const phone = "+8613900001111";
    await records.writeRecords({ mutations: [{ ref: byId("k-1"), set: { name: str("K1"), region: enm("east_china"), level: enm("key"), phone: str(phone) }, source: "erp", device: "test" }] });
    expect((await admin().applyConfig({ document: await edited((f) => (f.phone!.identity = false)) })).changed).toBe(true);
    // Cleared while phone is no identity: its key stays behind.
    await records.writeRecords({ mutations: [{ ref: byId("k-1"), clear: ["phone"], source: "erp", device: "test" }] });
    expect((await admin().applyConfig({ document: await edited((f) => (f.phone!.identity = true)) })).changed).toBe(true);
    // Another record takes the number, and a lookup by it finds that record, not k-1.
    await records.writeRecords({ mutations: [{ ref: byId("k-2"), set: { name: str("K2"), region: enm("east_china"), level: enm("key"), phone: str(phone) }, source: "erp", device: "test" }] });
    const found = await records.getRecord({ ref: { collection: "customers", target: { case: "identity", value: { field: "phone", value: str(phone) } } } });
    expect(found.record?.id).toBe("k-2");
  });

  it("applies a change the stored records fit: enum values and a length they all match, a required field every live record holds", async () => {
    const document = await edited((f) => {
      f.level = { type: "enum", values: ["key", "regular"], required: true };
      f.name = { ...f.name, max_length: 50 };
    });
    expect((await admin().applyConfig({ document, dryRun: true })).changed).toBe(false);
    const applied = await admin().applyConfig({ document });
    expect(applied.changed).toBe(true);
    expect((await currentDoc()).collections.customers!.fields.level).toEqual({ type: "enum", values: ["key", "regular"], required: true });
  });
});
