// What one change means to one view: exact enter/leave on the record's full
// state before and after the change, projection, and view swaps.
import { describe, expect, it } from "vitest";
import { changeEvent, changeStates, viewSwapEvent } from "../../../services/changes/events.js";
import { FilterView } from "../../../services/changes/view.js";
import { changeImage, fieldsBefore } from "../../../services/store/change-image.js";
import type { StoredRecord } from "../../../services/records/model.js";
import { change, clock } from "./fixtures.js";

const all = new FilterView("default", [{ collection: "customers", equals: {}, fields: null }]);
const east = new FilterView("default", [{ collection: "customers", equals: { region: "east_china" }, fields: null }]);
const north = new FilterView("default", [{ collection: "customers", equals: { region: "north_china" }, fields: null }]);
const vipEast = new FilterView("default", [{ collection: "customers", equals: { region: "east_china", vip: true }, fields: null }]);
const nameOnly = new FilterView("default", [{ collection: "customers", equals: {}, fields: ["name"] }]);

const kind = (ev: ReturnType<typeof changeEvent>) => (ev ? `${ev.kind}${"reason" in ev ? `:${ev.reason}` : ""}` : null);

describe("changeImage / fieldsBefore", () => {
  it("rebuild the fields before a change from the image and the prior values", () => {
    const before = { name: "a", region: "east_china", notes: "x" };
    const after = { name: "b", region: "east_china", visits: 3 };
    const set = { name: "b", visits: 3 };
    const { image, prior } = changeImage(before, after, set, ["notes"]);
    expect(prior).toEqual({ name: "a", notes: "x" });
    expect(fieldsBefore(image, prior, set, ["notes"])).toEqual(before);
  });

  it("a created record has no prior values", () => {
    expect(changeImage(null, { a: 1 }, { a: 1 }, []).prior).toEqual({});
  });
});

describe("changeEvent", () => {
  it("a change inside the view is an upsert of the changed fields", () => {
    const ev = changeEvent(change({ seq: 5, before: { name: "a", region: "east_china" }, set: { name: "b" } }), east);
    expect(ev).toMatchObject({ kind: "upsert", id: "r1", version: 2, set: { name: "b" }, cleared: [], created: false });
  });

  it("a created record matching the view is an upsert with created", () => {
    expect(changeEvent(change({ seq: 1, before: null, set: { name: "a", region: "east_china" } }), east)).toMatchObject({ kind: "upsert", created: true, version: 1 });
    expect(changeEvent(change({ seq: 1, before: null, set: { name: "a", region: "north_china" } }), east)).toBeNull();
  });

  it("moving the filtered field leaves one view and enters the other with all fields", () => {
    const c = change({ seq: 7, before: { name: "a", region: "east_china", vip: true }, set: { region: "north_china" } });
    expect(changeEvent(c, east)).toMatchObject({ kind: "leave", reason: "fields", version: 2 });
    expect(changeEvent(c, north)).toMatchObject({ kind: "enter", reason: "fields", record: { fields: { name: "a", region: "north_china", vip: true }, version: 2 } });
    expect(changeEvent(c, all)?.kind).toBe("upsert");
  });

  it("a change of another field is judged on the full state: no spurious enter or leave", () => {
    const c = change({ seq: 8, before: { name: "a", region: "north_china" }, set: { name: "b" } });
    expect(changeEvent(c, east)).toBeNull();
    expect(changeEvent(c, north)?.kind).toBe("upsert");
  });

  it("a change of one of several filtered fields enters exactly when all match", () => {
    const c = change({ seq: 9, before: { region: "east_china", vip: false }, set: { vip: true } });
    expect(kind(changeEvent(c, vipEast))).toBe("enter:fields");
    const cleared = change({ seq: 10, before: { region: "east_china", vip: true }, cleared: ["vip"] });
    expect(kind(changeEvent(cleared, vipEast))).toBe("leave:fields");
  });

  it("a delete of a visible record is a delete; of an invisible one, nothing", () => {
    expect(kind(changeEvent(change({ seq: 3, before: { region: "east_china" }, deleted: true }), east))).toBe("delete");
    expect(changeEvent(change({ seq: 3, before: { region: "north_china" }, deleted: true }), east)).toBeNull();
  });

  it("restoring a deleted record enters with reason restored", () => {
    const c = change({ seq: 4, before: { name: "a", region: "east_china" }, set: { name: "b" }, restored: true, oldVersion: 2 });
    expect(changeStates(c).before).toBeNull();
    expect(changeEvent(c, east)).toMatchObject({ kind: "enter", reason: "restored", record: { fields: { name: "b", region: "east_china" }, version: 3 } });
  });

  it("a change that only recorded conflict decisions (same version) is not an event", () => {
    const c = { ...change({ seq: 6, before: { region: "east_china" } }), newVersion: 1, oldVersion: 1 };
    expect(changeEvent(c, all)).toBeNull();
  });

  it("field selection projects values, cleared names and clocks; other changes still bump the version", () => {
    const c = change({ seq: 2, before: { name: "a", notes: "n" }, set: { name: "b", visits: 2 }, cleared: ["notes"] });
    expect(changeEvent(c, nameOnly)).toMatchObject({ set: { name: "b" }, cleared: [], clocks: { name: clock(2) } });
    const other = change({ seq: 3, before: { name: "a" }, set: { visits: 2 } });
    expect(changeEvent(other, nameOnly)).toMatchObject({ kind: "upsert", set: {}, version: 2 });
  });

  it("other tenants and other collections are not in view", () => {
    expect(changeEvent(change({ seq: 1, before: null, set: { region: "east_china" }, tenant: "acme" }), east)).toBeNull();
    expect(changeEvent(change({ seq: 1, before: null, set: { region: "east_china" }, collection: "contacts" }), east)).toBeNull();
  });

  it("a view that judges nothing by fields never parses the change's image", () => {
    const unread = () => {
      throw new Error("image parsed");
    };
    const c = { ...change({ seq: 1, before: { name: "a" }, set: { name: "b" } }), image: unread, prior: unread };
    expect(changeEvent(c, all)?.kind).toBe("upsert");
    expect(() => changeEvent(c, east)).toThrow("image parsed");
  });

  it("rows without an image (before migration 0003) fall back to the delta", () => {
    const c = { ...change({ seq: 1, before: { name: "a", region: "east_china" }, set: { name: "b" } }), image: () => null, prior: () => null };
    expect(changeEvent(c, all)?.kind).toBe("upsert");
  });
});

describe("viewSwapEvent", () => {
  const rec = (fields: Record<string, unknown>, deleted = false): StoredRecord => ({
    tenant: "default",
    collection: "customers",
    id: "r9",
    version: 4,
    fields: fields as StoredRecord["fields"],
    clocks: { name: clock(1), region: clock(2) },
    deleted,
    createTime: new Date(0),
    updateTime: new Date(1),
  });

  it("leaves, enters, re-enters on changed visible fields, or says nothing", () => {
    const r = rec({ name: "a", region: "east_china" });
    expect(viewSwapEvent(r, east, north)).toMatchObject({ kind: "leave", reason: "policy", version: 4 });
    expect(viewSwapEvent(r, north, east)).toMatchObject({ kind: "enter", reason: "policy", record: { fields: { name: "a", region: "east_china" } } });
    expect(viewSwapEvent(r, all, nameOnly)).toMatchObject({ kind: "enter", record: { fields: { name: "a" }, clocks: { name: clock(1) } } });
    expect(viewSwapEvent(r, all, east)).toBeNull();
    expect(viewSwapEvent(rec({ region: "east_china" }, true), north, east)).toBeNull();
  });
});
