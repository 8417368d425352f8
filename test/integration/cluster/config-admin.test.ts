// The config document (schemas and the access policy) through ClusterService
// on a node coordinated by a real etcd: only administrators read or replace
// it, a replaced policy is audited, and the node that applied a change moves
// its own open streams to every new policy, not only the first.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { AccessService, AuditEventKind } from "../../../gen/deltamesh/v1/access_pb.js";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { ClusterService } from "../../../gen/deltamesh/v1/cluster_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { scratchDir, testEtcdEndpoint, testEtcdPrefix } from "../../support/env.js";
import { startTestNode, type Identity, type TestNode } from "../../support/node.js";
import { byId, enm, rejection, str } from "../../support/rpc.js";
import { openStream } from "../../support/streams.js";

type ConfigDoc = { policies: { roles: Record<string, { grants: Record<string, unknown>[] }> } };

let node: TestNode;
let prefix: string;
const SALES: Identity = { subject: "sales-1", roles: ["sales"], attributes: { regions: ["east_china"], device_class: "desktop" } };
const admin = () => node.connect(ClusterService);
const currentDoc = async () => parse((await admin().getConfig({})).document) as ConfigDoc;

beforeAll(async () => {
  const configFile = path.join(await scratchDir("config-admin"), "config.yaml");
  await writeFile(configFile, await readFile(DEFAULT_CONFIG_PATH, "utf8"));
  prefix = testEtcdPrefix("cfgadm");
  node = await startTestNode({ configFile, etcd: { endpoints: [testEtcdEndpoint()], prefix, leaseTtlSeconds: 2 } });
});
afterAll(async () => {
  await node?.stop();
});

describe("ClusterService config", () => {
  it("GetConfig and ApplyConfig need the admin action: a sales rep cannot read the document or make itself admin", async () => {
    const sales = node.connect(ClusterService, SALES);
    expect((await rejection(sales.getConfig({}))).code).toBe(Code.PermissionDenied);
    const doc = await currentDoc();
    (doc.policies.roles.sales!.grants[0]!.actions as string[]).push("admin");
    const before = (await admin().getConfig({})).revision;
    const err = await rejection(sales.applyConfig({ document: stringify(doc) }));
    expect(err.code).toBe(Code.PermissionDenied);
    expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("ACTION_NOT_GRANTED");
    expect((await admin().getConfig({})).revision).toBe(before);
    expect((await rejection(node.connect(AccessService, SALES).getPolicy({}))).code).toBe(Code.PermissionDenied);
  });

  it("an ApplyConfig that changes the policy is audited as a policy change, naming who applied it", async () => {
    const doc = await currentDoc();
    doc.policies.roles.sales!.grants[0]!.description = `audited ${Date.now()}`;
    const applied = await node.connect(ClusterService, { subject: "ops-1", roles: ["admin"] }).applyConfig({ document: stringify(doc) });
    expect(applied.changed).toBe(true);
    const entries = (await node.connect(AccessService).queryAuditLog({ kind: AuditEventKind.POLICY_CHANGE, actor: "ops-1", pageSize: 10 })).entries;
    expect(entries.map((e) => [e.reason, e.details.to_revision])).toEqual([["CONFIG_APPLIED", applied.revision]]);
  });

  it("a document too large for etcd is INVALID_ARGUMENT naming its size, not an etcd outage, and nothing changes", async () => {
    const before = (await admin().getConfig({})).revision;
    const huge = `${stringify(await currentDoc())}# ${"x".repeat(2 * 1024 * 1024)}\n`;
    const err = await rejection(admin().applyConfig({ document: huge }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => [v.field, v.reason])).toEqual([["document", "TOO_LARGE"]]);
    expect((await admin().getConfig({})).revision).toBe(before);
  });

  it("a document no node can load, written to etcd around the API, is replaced by a change based on the config in force", async () => {
    const inForce = await admin().getConfig({});
    const etcd = new Etcd3({ hosts: testEtcdEndpoint() });
    try {
      await etcd.put(`${prefix}config/document`).value("collections: 3\n");
    } finally {
      etcd.close();
    }
    // The node keeps serving the config in force, and a change based on it goes through.
    expect((await admin().getConfig({})).revision).toBe(inForce.revision);
    const applied = await admin().applyConfig({ document: inForce.document, expectedRevision: inForce.revision });
    expect(applied.revision).not.toBe(inForce.revision);
    const { policy, revision } = await node.connect(AccessService).getPolicy({});
    await node.connect(AccessService).putPolicy({ policy, expectedRevision: revision });
  });

  it("the applying node's open streams follow each of several policy changes in a row", async () => {
    const stream = openStream(node.connect(ChangeService, SALES), { collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
    try {
      // Opened before the first change: wait until it is live (its first heartbeat or event).
      await new Promise((r) => setTimeout(r, 300));
      for (const [i, mask] of ["redact", "phone", "redact", "phone"].entries()) {
        const doc = await currentDoc();
        doc.policies.roles.sales!.grants[0]!.device_masks = { desktop: { phone: mask, email: "none" } };
        await admin().applyConfig({ document: stringify(doc) });
        const id = `mask-${process.pid}-${i}-${Date.now()}`;
        await node.connect(RecordService).writeRecords({ mutations: [{ ref: byId(id), set: { name: str("Li Lei"), region: enm("east_china"), phone: str(`1380013800${i}`) } }] });
        const read = (await node.connect(RecordService, SALES).getRecord({ ref: byId(id) })).record!;
        // The stream switches policy at a log position taken a moment after the
        // change applies: a write committed before it arrives under the old mask,
        // and the switch then re-sends the record (enter_scope) under the new one.
        // Either way the last word on the record is the new mask.
        const phoneShown = (e: (typeof stream.events)[number]) => {
          if (e.kind.case === "upsert" && e.kind.value.id === id) return e.kind.value.set.phone?.kind.value;
          if (e.kind.case === "enterScope" && e.kind.value.record?.id === id) return e.kind.value.record.fields.phone?.kind.value;
          return undefined;
        };
        const lastShown = (evs: typeof stream.events) => evs.map(phoneShown).filter((v) => v !== undefined).at(-1);
        await stream.until((evs) => lastShown(evs) === read.fields.phone?.kind.value, 10_000, `the write under mask ${mask}`);
        expect([mask, lastShown(stream.events)]).toEqual([mask, mask === "redact" ? "***" : "+86 138****800" + String(i)]);
      }
    } finally {
      stream.close();
    }
  });
});
