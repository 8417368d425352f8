// Shared fixtures of the access unit tests: the shipped example config and
// principals of its roles.
import { readFile } from "node:fs/promises";
import { buildSnapshot, type ConfigSnapshot } from "../../../services/config/source.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { parseConfigText } from "../../../services/config/parse.js";
import { tenantHasher } from "../../../services/access/masks.js";
import type { Principal } from "../../../services/platform/principal.js";
import type { StoredValue } from "../../../services/schema/types.js";

export const exampleDoc = parseConfigText(await readFile(DEFAULT_CONFIG_PATH, "utf8")) as Record<string, unknown>;

/** The example config with its policies section replaced (`undefined`: removed). */
export function withPolicies(policies: unknown, revision = "r1"): ConfigSnapshot {
  const doc = { ...exampleDoc };
  if (policies === undefined) delete doc.policies;
  else doc.policies = policies;
  return buildSnapshot(doc, revision);
}

export const example = buildSnapshot(exampleDoc, "example");
export const customers = example.schemas.collections.get("customers")!;
export const hasher = tenantHasher(new TextEncoder().encode("unit"), "default");

export function principal(roles: string[], attributes: Principal["attributes"] = {}, subject = "u1", tenant = "default"): Principal {
  return { subject, tenant, roles, attributes };
}

export const eastSales = (device = "mobile", subject = "u1") => principal(["sales"], { regions: ["east_china"], device_class: device }, subject);

/** A stored customer (stored value forms) with every sensitive field set. */
export function customer(over: Record<string, StoredValue> = {}): Record<string, StoredValue> {
  return {
    name: "Li Lei",
    phone: "+8613812345678",
    email: "lilei@example.com",
    wechat_openid: "oWx123",
    id_number: "110105199001011234",
    region: "east_china",
    owner: "u9",
    credit_limit: "50000",
    birthday: "1990-01-01T00:00:00Z",
    notes: "likes tea",
    visits: 3,
    ...over,
  };
}
