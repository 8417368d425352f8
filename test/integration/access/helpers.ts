// Shared setup of the access integration tests: a node on its own copy of
// the example config (policy writes must not touch the shipped file), the
// principals of the example roles, and seeded customers.
import { copyFile } from "node:fs/promises";
import path from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import type { MutationSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import type { NodeConfigInput } from "../../../services/platform/node-config.js";
import { scratchDir } from "../../support/env.js";
import { startTestNode, type Identity, type TestNode, type TestNodeOptions } from "../../support/node.js";
import { byId, enm, str } from "../../support/rpc.js";

export async function startAccessNode(overrides: NodeConfigInput = {}, opts: TestNodeOptions = {}): Promise<TestNode> {
  const dir = await scratchDir("access");
  const configFile = path.join(dir, "config.yaml");
  await copyFile(DEFAULT_CONFIG_PATH, configFile);
  return startTestNode({ configFile, ...overrides }, opts);
}

export const ADMIN: Identity = { subject: "root" };
export const eastSales = (device = "mobile"): Identity => ({ subject: "s-east", roles: ["sales"], attributes: { regions: ["east_china"], device_class: device } });
export const eastManager = (device = "mobile"): Identity => ({ subject: "m-east", roles: ["sales_manager"], attributes: { regions: ["east_china"], device_class: device } });
export const FINANCE: Identity = { subject: "f-1", roles: ["finance"], attributes: { device_class: "desktop" } };

let n = 0;
export const uid = (p: string) => `${p}-${process.pid}-${++n}`;
/** A valid, distinct Chinese mobile number. */
export const phone = () => `+86139${String(10_000_000 + ((++n * 7919) % 89_999_999)).padStart(8, "0")}`;

export type MutationInit = MessageInitShape<typeof MutationSchema>;

/** Writes as the administrator; returns the record id. */
export async function seed(node: TestNode, id: string, set: MutationInit["set"]): Promise<string> {
  const rs = node.grpcJs(RecordService, ADMIN);
  await rs.writeRecords({ mutations: [{ ref: byId(id), set: { name: str(id), ...set }, source: "crm-desktop", device: "seed" }] });
  return id;
}

export const region = (r: string) => enm(r);
