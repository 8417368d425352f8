// Authorization of mutations: action grants, field rights, scope before and
// after the merge; the refusals clients see and the denial facts for audit.
import { describe, expect, it } from "vitest";
import { accessDenialOf, writeGuard } from "../../../services/access/write-guard.js";
import { DomainError } from "../../../services/platform/errors.js";
import type { MutationInput, StoredRecord } from "../../../services/records/model.js";
import { missingRecord } from "../../../services/records/apply-mutation.js";
import { customer, eastSales, example, principal } from "./fixtures.js";

const mutation = (over: Partial<MutationInput> = {}): MutationInput => ({
  collection: "customers",
  target: { id: "c1" },
  set: {},
  clear: [],
  baseVersion: 0,
  clientMutationId: "",
  source: "sales-app",
  device: "d1",
  delete: false,
  ...over,
});

const record = (fields: Record<string, unknown>, id = "c1"): StoredRecord => ({
  tenant: "default",
  collection: "customers",
  id,
  version: 1,
  fields: fields as StoredRecord["fields"],
  clocks: {},
  deleted: false,
  createTime: new Date(0),
  updateTime: new Date(0),
});

function refusal(f: () => void): DomainError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    return e as DomainError;
  }
  throw new Error("expected a refusal");
}

const g = writeGuard(example.policy, eastSales());

describe("write guard", () => {
  it("lets sales edit their fields of an east-China customer", () => {
    const m = mutation({ set: { notes: "called" } });
    const cur = record(customer());
    g.precheck(m);
    g.before(cur, m);
    g.after(cur, record(customer({ notes: "called" })), m);
  });

  it("refuses fields the writer may not write, naming them, before touching the database", () => {
    const m = mutation({ set: { credit_limit: "1", notes: "x" }, clear: ["id_number"] });
    const e = refusal(() => g.precheck(m));
    expect(e.kind).toBe("permission_denied");
    expect(e.reason).toBe("FIELD_NOT_WRITABLE");
    expect(e.violations.map((v) => v.field)).toEqual(["set.credit_limit", "clear"]);
    expect(e.message).not.toContain("1");
    expect(accessDenialOf(e)).toMatchObject({ action: "write", reason: "FIELD_NOT_WRITABLE", fields: ["credit_limit", "id_number"] });
  });

  it("a record outside scope is not found, before the merge, with no detail of it", () => {
    const cur = record(customer({ region: "north_china" }), "secret-id");
    const e = refusal(() => g.before(cur, mutation({ target: { id: "secret-id" }, set: { notes: "x" } })));
    expect(e.kind).toBe("not_found");
    expect(e.reason).toBe("RECORD_NOT_FOUND");
    expect(e.message).toBe("record customers/secret-id does not exist");
    expect(accessDenialOf(e)).toMatchObject({ reason: "OUT_OF_SCOPE", recordId: "secret-id" });
  });

  it("addressed by identity key, the refusal names no id, exactly as for an identity value nobody holds", () => {
    const cur = record(customer({ region: "north_china" }), "hidden-id");
    const m = mutation({ target: { identity: { field: "phone", value: "+8613812345678" } }, set: { notes: "x" } });
    const e = refusal(() => g.before(cur, m));
    expect(e.message).not.toContain("hidden-id");
    const missing = missingRecord(m, "made-up-id");
    expect([e.kind, e.reason, e.message, e.metadata, e.resource]).toEqual([missing.kind, missing.reason, missing.message, missing.metadata, missing.resource]);
    expect(e.metadata).toEqual({ collection: "customers" });
  });

  it("refuses moving a record out of the writer's scope", () => {
    const m = mutation({ set: { region: "north_china" } });
    const cur = record(customer());
    g.before(cur, m);
    const e = refusal(() => g.after(cur, record(customer({ region: "north_china" })), m));
    expect(e.kind).toBe("permission_denied");
    expect(e.reason).toBe("OUT_OF_SCOPE_WRITE");
    expect(e.message).not.toContain("north_china");
  });

  it("refuses creating a record outside scope, allows it inside", () => {
    const m = mutation({ set: { name: "x", region: "north_china" } });
    g.before(null, m);
    expect(refusal(() => g.after(null, record({ name: "x", region: "north_china" }), m)).reason).toBe("OUT_OF_SCOPE_WRITE");
    g.after(null, record({ name: "x", region: "north_china", owner: "u1" }), { ...m, set: { ...m.set, owner: "u1" } });
  });

  it("deletes need the delete action: sales have none, managers do within their regions", () => {
    const del = mutation({ delete: true });
    expect(refusal(() => g.precheck(del))).toMatchObject({ kind: "permission_denied", reason: "ACTION_NOT_GRANTED" });
    const mgr = writeGuard(example.policy, principal(["sales_manager"], { regions: ["east_china"] }));
    mgr.precheck(del);
    mgr.before(record(customer()), del);
    expect(refusal(() => mgr.before(record(customer({ region: "south_china" })), del)).kind).toBe("not_found");
  });

  it("no grant on the collection at all: permission denied", () => {
    const none = writeGuard(example.policy, principal(["finance"]));
    expect(refusal(() => none.precheck(mutation({ collection: "contacts", set: { name: "x" } }))).reason).toBe("ACTION_NOT_GRANTED");
    expect(refusal(() => writeGuard(example.policy, principal([])).before(null, mutation({ set: { name: "x" } }))).reason).toBe("ACTION_NOT_GRANTED");
  });

  it("conflict resolution needs resolve_conflicts and lets set what the resolver can read", () => {
    const sales = writeGuard(example.policy, eastSales(), "resolve_conflicts");
    expect(refusal(() => sales.precheck(mutation({ set: { owner: "u2" } }))).reason).toBe("ACTION_NOT_GRANTED");
    const mgr = writeGuard(example.policy, principal(["sales_manager"], { regions: ["east_china"] }), "resolve_conflicts");
    const m = mutation({ set: { id_number: "110105199001011235" } });
    mgr.precheck(m);
    mgr.before(record(customer()), m);
    mgr.after(record(customer()), record(customer()), m);
  });
});
