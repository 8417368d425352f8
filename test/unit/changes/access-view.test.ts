// AccessView: a subscription's filters narrowed by the access policy, as the
// change hub uses it (events per change, keys for encode-once grouping,
// rebuilds on policy change).
import { describe, expect, it } from "vitest";
import { AccessView, type Subscription } from "../../../services/changes/access-view.js";
import { changeEvent, viewRecord, viewSwapEvent } from "../../../services/changes/events.js";
import type { CollectionFilter } from "../../../services/changes/view.js";
import type { StoredRecord } from "../../../services/records/model.js";
import type { StoredValue } from "../../../services/schema/types.js";
import { customer, eastSales, example, exampleDoc, hasher, principal, withPolicies } from "../access/fixtures.js";
import { change } from "./fixtures.js";

const all: CollectionFilter[] = [{ collection: "customers", equals: {}, fields: null }];
const sub = (p = eastSales(), filters = all): Subscription => ({ principal: p, filters, hasher });
const build = (s: Subscription, snap = example) => AccessView.build(snap.policy, snap.schemas, s);

function stored(fields: Record<string, StoredValue>, id = "r1"): StoredRecord {
  const t = new Date(0);
  return { tenant: "default", collection: "customers", id, version: 1, fields, clocks: {}, deleted: false, createTime: t, updateTime: t };
}

describe("AccessView", () => {
  it("admits only records in the principal's row scope, and within the request's filters", () => {
    const v = build(sub());
    expect(v.admits(stored(customer()))).toBe(true);
    expect(v.admits(stored(customer({ region: "north_china" })))).toBe(false);
    expect(v.admits(stored(customer({ region: "north_china", owner: "u1" })))).toBe(true); // owns it
    const filtered = build(sub(eastSales(), [{ collection: "customers", equals: { visits: 4 }, fields: null }]));
    expect(filtered.admits(stored(customer()))).toBe(false);
  });

  it("a record hiding a filtered field is not in view: changing that value alone sends nothing", () => {
    // Finance admits north China without phone; sales admits east China with it.
    const p = principal(["sales", "finance"], { regions: ["east_china"], device_class: "desktop" });
    const v = build(sub(p, [{ collection: "customers", equals: { phone: "+8613812345678" }, fields: null }]));
    const north = customer({ region: "north_china" });
    expect(v.admits(stored(customer()))).toBe(true);
    expect(v.admits(stored(north))).toBe(false);
    expect(changeEvent(change({ seq: 1, before: north, set: { phone: "+8613900001111" } }), v)).toBeNull();
    expect(changeEvent(change({ seq: 2, before: { ...north, phone: "+8613900001111" }, set: { phone: "+8613812345678" } }), v)).toBeNull();
    // Moved where it shows its phone: in view.
    expect(changeEvent(change({ seq: 3, before: north, set: { region: "east_china" } }), v)).toMatchObject({ kind: "enter" });
  });

  it("judges records by their fields only under a row scope or a filter (else catching up skips the record images)", () => {
    expect(build(sub()).judgesByFields).toBe(true); // sales: region and owner scope
    const admin = principal(["admin"]);
    expect(build(sub(admin)).judgesByFields).toBe(false);
    expect(build(sub(admin, [{ collection: "customers", equals: { visits: 4 }, fields: null }])).judgesByFields).toBe(true);
  });

  it("shows readable fields only, masked by device class, and says which are masked", () => {
    const r = stored(customer());
    const mobile = viewRecord(build(sub(eastSales("mobile"))), r);
    expect(mobile.fields.phone).toBe("+86 138****5678");
    expect(mobile.masked).toContain("phone");
    for (const hidden of ["credit_limit", "id_number", "birthday"]) expect(mobile.fields).not.toHaveProperty(hidden);
    const desktop = viewRecord(build(sub(eastSales("desktop"))), r);
    expect(desktop.fields.phone).toBe("+8613812345678");
    expect(desktop.masked).not.toContain("phone");
  });

  it("field selection narrows further; it never widens what the policy allows", () => {
    const v = build(sub(eastSales(), [{ collection: "customers", equals: {}, fields: ["name", "credit_limit"] }]));
    expect(viewRecord(v, stored(customer())).fields).toEqual({ name: "Li Lei" });
  });

  it("subscribers alike share a key (one encoding); other regions, devices or roles do not", () => {
    const key = (p = eastSales()) => build(sub(p)).key;
    const manager = (subject: string, device = "mobile", regions = ["east_china"]) => principal(["sales_manager"], { regions, device_class: device }, subject);
    expect(key(manager("u1"))).toBe(key(manager("u2"))); // their scope reads only their regions
    expect(key(eastSales("mobile", "u1"))).not.toBe(key(eastSales("mobile", "u2"))); // sales scope reads the subject (owner rule)
    expect(key(manager("u1", "mobile"))).not.toBe(key(manager("u1", "desktop")));
    expect(key(manager("u1", "mobile", ["north_china"]))).not.toBe(key(manager("u1")));
    expect(key(principal(["finance"]))).not.toBe(key(principal(["service"])));
  });

  it("a change within scope is a delta of visible fields; one out of the readable set carries nothing", () => {
    const v = build(sub());
    const ev = changeEvent(change({ seq: 1, before: customer(), set: { phone: "+8613900001111", credit_limit: "1" } }), v);
    expect(ev).toMatchObject({ kind: "upsert", set: { phone: "+86 139****1111" }, masked: ["phone"] });
    expect(ev?.kind === "upsert" && Object.keys(ev.clocks)).toEqual(["phone"]);
    const hidden = changeEvent(change({ seq: 2, before: customer(), set: { credit_limit: "2" } }), v);
    expect(hidden).toMatchObject({ kind: "upsert", set: {}, masked: [], clocks: {} });
  });

  it("moving between grants that show different fields resends the record whole", () => {
    // Service reads every customer; sales, only its regions' (with more fields, e.g. wechat_openid and owner).
    const v = build(sub(principal(["sales", "service"], { regions: ["east_china"], device_class: "console" })));
    const east = changeEvent(change({ seq: 1, before: customer({ region: "north_china" }), set: { region: "east_china" } }), v);
    expect(east).toMatchObject({ kind: "enter", reason: "fields" });
    expect(east?.kind === "enter" && east.record.fields).toHaveProperty("wechat_openid");
    const north = changeEvent(change({ seq: 2, before: customer(), set: { region: "north_china" } }), v);
    expect(north).toMatchObject({ kind: "enter", reason: "fields" });
    expect(north?.kind === "enter" && north.record.fields).not.toHaveProperty("wechat_openid");
    // Within one set of grants, a delta.
    expect(changeEvent(change({ seq: 3, before: customer(), set: { notes: "x" } }), v)).toMatchObject({ kind: "upsert", set: { notes: "x" } });
  });

  it("rebuilt under a narrower policy, records leave; under the same policy, nothing changes", () => {
    const v = build(sub());
    const r = stored(customer());
    expect(viewSwapEvent(r, v, v.rebuilt(example.policy, example.schemas))).toBeNull();
    const doc = structuredClone(exampleDoc) as { policies: { roles: Record<string, { grants: { scope?: string }[] }> } };
    for (const g of doc.policies.roles.sales!.grants) g.scope = "record.owner == principal.sub";
    const narrow = withPolicies(doc.policies, "r3");
    const next = v.rebuilt(narrow.policy, narrow.schemas);
    expect(next.key).not.toBe(v.key);
    expect(viewSwapEvent(r, v, next)).toMatchObject({ kind: "leave", reason: "policy" });
  });

  it("a filter on a field the new policy makes unreadable shows nothing (the filter would reveal it)", () => {
    const v = build(sub(eastSales(), [{ collection: "customers", equals: { notes: "likes tea" }, fields: null }]));
    expect(v.admits(stored(customer()))).toBe(true);
    const doc = structuredClone(exampleDoc) as { policies: { roles: Record<string, { grants: { read_fields?: string[] }[] }> } };
    const g = doc.policies.roles.sales!.grants[0]!;
    g.read_fields = g.read_fields!.filter((f) => f !== "notes");
    const snap = withPolicies(doc.policies, "r4");
    expect(v.rebuilt(snap.policy, snap.schemas).admits(stored(customer()))).toBe(false);
  });

  it("without row scopes, never reads a record's fields (streams then never parse change images)", () => {
    const v = build(sub(principal(["admin"])));
    const untouchable = {
      collection: "customers",
      id: "r1",
      version: 2,
      get fields(): Record<string, StoredValue> {
        throw new Error("the record's fields were read");
      },
    };
    expect(v.admits(untouchable)).toBe(true);
    expect(v.fieldVisible(untouchable, "phone")).toBe(true);
    expect(v.shape(untouchable)).not.toBe("");
    expect(v.show(untouchable, { notes: "x" })).toEqual({ fields: { notes: "x" }, masked: [], unmaskedSensitive: [] });
  });
});
