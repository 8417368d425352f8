import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { ValueSchema } from "../../../gen/deltamesh/v1/types_pb.js";
import { DEFAULT_CONFIG_PATH, readConfigFile } from "../../../services/config/file-source.js";
import { parseConfigText } from "../../../services/config/parse.js";
import { parseSchemaSet, schemaSetToDoc } from "../../../services/schema/load.js";
import { decodeValue } from "../../../services/schema/values.js";

describe("config/example.yaml", async () => {
  const snap = await readConfigFile(DEFAULT_CONFIG_PATH);
  const customers = snap.schemas.collections.get("customers")!;

  it("loads and round-trips", () => {
    expect(snap.schemas.defaultPhoneRegion).toBe("CN");
    expect(snap.schemas.sources).toEqual(["erp", "crm-desktop", "sales-app", "service-console", "pos", "ecommerce"]);
    expect(parseSchemaSet(schemaSetToDoc(snap.schemas))).toEqual(snap.schemas);
  });

  it("has the expected customers schema", () => {
    expect(customers.identityFields).toEqual(["phone", "wechat_openid", "erp_id", "membership_no"]);
    const phone = customers.fields.get("phone")!;
    expect(phone).toMatchObject({ type: "string", identity: true, sensitive: true, normalizers: ["phone"], mask: "phone" });
    expect(customers.fields.get("email")).toMatchObject({ sensitive: true, normalizers: ["email"], mask: "email" });
    expect(customers.fields.get("id_number")).toMatchObject({ sensitive: true, mask: "id_number" });
    expect(customers.fields.get("credit_limit")).toMatchObject({ type: "decimal", policy: "source_priority" });
    expect(customers.fields.get("contract_no")).toMatchObject({ policy: "keep_original" });
    expect(customers.fields.get("region")!.enumValues).toContain("east_china");
    expect(customers.sourcePriority[0]).toBe("erp");
    for (const [name, type] of [["tags", "string_list"], ["birthday", "timestamp"], ["vip", "bool"], ["visits", "int"], ["extra", "json"], ["level", "enum"], ["status", "enum"]]) {
      expect(customers.fields.get(name!)!.type).toBe(type);
    }
  });

  it("has contacts and followups", () => {
    const contacts = snap.schemas.collections.get("contacts")!;
    expect([...contacts.fields.keys()]).toEqual(["customer_id", "name", "phone", "email", "title", "region", "owner"]);
    const followups = snap.schemas.collections.get("followups")!;
    expect(followups.fields.get("channel")!.enumValues).toEqual(["phone", "visit", "wechat", "email"]);
    expect(followups.fields.get("next_action_at")!.type).toBe("timestamp");
    expect(followups.fields.get("region")!.enumValues).toEqual(customers.fields.get("region")!.enumValues);
  });

  it("normalizes a CN mobile number through the phone field", () => {
    const v = create(ValueSchema, { kind: { case: "stringValue", value: "138 0013 8000" } });
    expect(decodeValue(customers.fields.get("phone")!, v, { defaultPhoneRegion: snap.schemas.defaultPhoneRegion, path: "p" })).toEqual({
      ok: true,
      value: "+8613800138000",
    });
  });

  it("is plain YAML with the schema and policy sections", async () => {
    const doc = parseConfigText(await readFile(DEFAULT_CONFIG_PATH, "utf8")) as Record<string, unknown>;
    expect(Object.keys(doc)).toEqual(["default_phone_region", "sources", "collections", "policies"]);
  });
});
