// Views: row scope, field projection and masks by device class, stable keys,
// and what a change becomes to a view (the seam for change streams).
import { describe, expect, it } from "vitest";
import { viewFor } from "../../../services/access/view.js";
import { hasAction } from "../../../services/access/engine.js";
import { customer, customers, eastSales, example, hasher, principal, withPolicies } from "./fixtures.js";

const view = (p = eastSales(), snap = example, deviceClass?: string) =>
  viewFor(snap.policy, p, snap.schemas.collections.get("customers")!, { hasher, ...(deviceClass ? { deviceClass } : {}) });

describe("row scope", () => {
  it("east-China sales see east-China customers and the ones they own, nothing else", () => {
    const v = view();
    expect(v.inScope(customer())).toBe(true);
    expect(v.inScope(customer({ region: "north_china" }))).toBe(false);
    expect(v.inScope(customer({ region: "north_china", owner: "u1" }))).toBe(true);
    expect(v.project(customer({ region: "north_china" }))).toBeNull();
  });

  it("reveals: a record matches a lookup only on fields readable in it (under the grants admitting it)", () => {
    // Finance admits every region without phone; sales admits east China with it.
    const v = view(principal(["sales", "finance"], { regions: ["east_china"], device_class: "desktop" }));
    const north = customer({ region: "north_china" });
    expect(v.inScope(north)).toBe(true);
    expect(v.reveals(north, [])).toBe(true);
    expect(v.reveals(north, ["erp_id"])).toBe(true);
    expect(v.reveals(north, ["phone"])).toBe(false);
    expect(v.reveals(north, ["erp_id", "phone"])).toBe(false);
    expect(v.reveals(customer(), ["phone"])).toBe(true);
    expect(view().reveals(north, [])).toBe(false); // out of scope
  });

  it("a record without the scoped fields is out of scope, not an error", () => {
    expect(view().inScope({ name: "x" })).toBe(false);
  });

  it("a principal lacking the attribute a scope reads sees nothing (deny by default)", () => {
    const v = view(principal(["sales"], { device_class: "mobile" }));
    expect(v.readable).toBe(true);
    expect(v.inScope(customer())).toBe(false);
    expect(v.inScope(customer({ owner: "u1" }))).toBe(true);
  });

  it("no role, unknown roles: nothing readable", () => {
    for (const p of [principal([]), principal(["nope"])]) {
      const v = view(p);
      expect(v.readable).toBe(false);
      expect(v.inScope(customer())).toBe(false);
    }
    expect(hasAction(example.policy, principal(["nope"]), "read")).toBe(false);
  });
});

describe("fields and masks", () => {
  it("the phone app shows 138****5678; the desktop shows the number; hidden fields are absent", () => {
    const mobile = view(eastSales("mobile")).project(customer())!;
    expect(mobile.fields.phone).toBe("+86 138****5678");
    expect(mobile.fields.email).toBe("l***@example.com");
    expect(mobile.masked.sort()).toEqual(["email", "phone", "wechat_openid"]);
    expect(mobile.unmaskedSensitive).toEqual([]);
    expect(mobile.fields).not.toHaveProperty("id_number");
    expect(mobile.fields).not.toHaveProperty("credit_limit");
    expect(mobile.fields).not.toHaveProperty("birthday");
    expect(mobile.fields.name).toBe("Li Lei");

    const desktop = view(eastSales("desktop")).project(customer())!;
    expect(desktop.fields.phone).toBe("+8613812345678");
    expect(desktop.unmaskedSensitive.sort()).toEqual(["email", "phone"]);
    expect(desktop.fields.wechat_openid).toBe(hasher("oWx123"));
  });

  it("an unknown or missing device class gets the base (masked) rules", () => {
    expect(view(principal(["sales"], { regions: ["east_china"] })).project(customer())!.fields.phone).toBe("+86 138****5678");
    expect(view(eastSales("fridge")).project(customer())!.fields.phone).toBe("+86 138****5678");
  });

  it("the device class can be given explicitly", () => {
    expect(view(eastSales("mobile"), example, "desktop").project(customer())!.fields.phone).toBe("+8613812345678");
  });

  it("finance sees credit and a partial id number, no contact data", () => {
    const p = view(principal(["finance"])).project(customer())!;
    expect(p.fields.id_number).toBe("110105********1234");
    expect(p.fields.credit_limit).toBe("50000");
    expect(p.fields).not.toHaveProperty("phone");
  });

  it("several roles combine: the least hiding mask and the union of fields", () => {
    const p = view(principal(["sales", "finance"], { regions: ["east_china"], device_class: "mobile" })).project(customer())!;
    expect(p.fields.credit_limit).toBe("50000");
    expect(p.fields.phone).toBe("+86 138****5678");
    const admin = view(principal(["admin", "sales"], { regions: [] })).project(customer())!;
    expect(admin.fields.phone).toBe("+8613812345678");
    expect(admin.fields.birthday).toBe("1990-01-01T00:00:00Z");
    expect(admin.unmaskedSensitive.sort()).toEqual(["birthday", "email", "id_number", "phone", "wechat_openid"]);
  });

  it("a grant admitting a record only through another scope adds nothing to it", () => {
    // sales admits by region; finance (unscoped) adds its fields to every record.
    const p = view(principal(["sales", "finance"], { regions: ["north_china"] })).project(customer())!;
    expect(p.fields).not.toHaveProperty("phone"); // sales does not admit this record
    expect(p.fields.credit_limit).toBe("50000");
  });
});

describe("view keys", () => {
  it("equal for principals who see exactly the same, different otherwise", () => {
    const a = view(eastSales("mobile", "u1"));
    const b = view(eastSales("mobile", "u2")); // sub is read by the scope (owner == sub)
    const c = view(eastSales("mobile", "u1"));
    const d = view(eastSales("desktop", "u1"));
    const e = view(principal(["sales"], { regions: ["north_china"], device_class: "mobile" }, "u1"));
    expect(a.key).toBe(c.key);
    expect(a.key).not.toBe(b.key);
    expect(a.key).not.toBe(d.key);
    expect(a.key).not.toBe(e.key);
  });

  it("attributes a scope does not read do not split views", () => {
    const f1 = view(principal(["finance"], { department: "a" }, "x"));
    const f2 = view(principal(["finance"], { department: "b" }, "y"));
    expect(f1.key).toBe(f2.key);
  });

  it("differ across tenants and policy revisions", () => {
    const p = principal(["finance"]);
    expect(view(p).key).not.toBe(view({ ...p, tenant: "other" }).key);
    expect(view(p).key).not.toBe(view(p, withPolicies(example.doc.policies, "r2")).key);
  });
});

describe("changes as a view sees them", () => {
  const v = view(eastSales("mobile"));
  const east = { fields: customer(), deleted: false };
  const north = { fields: customer({ region: "north_china" }), deleted: false };

  it("an update of visible fields: only those, masked", () => {
    const after = { fields: customer({ phone: "+8613900000000", credit_limit: "1" }), deleted: false };
    const c = v.change(east, after, { set: { phone: "+8613900000000", credit_limit: "1" }, cleared: ["birthday", "notes"] });
    expect(c).toEqual({ kind: "upsert", set: { phone: "+86 139****0000" }, cleared: ["notes"], masked: ["phone"] });
  });

  it("a change of hidden fields only is nothing to the view", () => {
    expect(v.change(east, east, { set: { credit_limit: "2" }, cleared: [] })).toEqual({ kind: "none" });
  });

  it("moving into scope is enter with every visible field; out of scope is leave", () => {
    const enter = v.change(north, east, { set: { region: "east_china" }, cleared: [] });
    expect(enter.kind).toBe("enter");
    if (enter.kind === "enter") {
      expect(enter.projection.fields.phone).toBe("+86 138****5678");
      expect(enter.projection.fields).not.toHaveProperty("id_number");
    }
    expect(v.change(east, north, { set: { region: "north_china" }, cleared: [] })).toEqual({ kind: "leave" });
    expect(v.change(north, north, { set: { notes: "x" }, cleared: [] })).toEqual({ kind: "none" });
  });

  it("creation in scope enters; deletion of a visible record is a delete; undelete re-enters", () => {
    expect(v.change(null, east, { set: east.fields, cleared: [] }).kind).toBe("enter");
    expect(v.change(east, { ...east, deleted: true }, { set: {}, cleared: [] })).toEqual({ kind: "delete" });
    expect(v.change(north, { ...north, deleted: true }, { set: {}, cleared: [] })).toEqual({ kind: "none" });
    expect(v.change({ ...east, deleted: true }, east, { set: {}, cleared: [] }).kind).toBe("enter");
  });

  it("a change that shows the record through other grants resends it whole", () => {
    const both = view(principal(["sales", "sales_manager"], { regions: ["north_china"], device_class: "mobile" }, "u1"));
    // Owned by u1 in east China: only the sales grant admits it; moved to north China the manager grant does too.
    const owned = { fields: customer({ owner: "u1" }), deleted: false };
    const moved = { fields: customer({ owner: "u1", region: "north_china" }), deleted: false };
    const c = both.change(owned, moved, { set: { region: "north_china" }, cleared: [] });
    expect(c.kind).toBe("enter");
    if (c.kind === "enter") expect(c.projection.fields.id_number).toBe("110105********1234");
  });
});

describe("customers schema sanity for these tests", () => {
  it("phone, email, wechat_openid, id_number and birthday are sensitive", () => {
    expect([...customers.fields.values()].filter((f) => f.sensitive).map((f) => f.name)).toEqual(["phone", "email", "wechat_openid", "id_number", "birthday"]);
  });
});
