import { describe, expect, it } from "vitest";
import { FilterView } from "../../../services/changes/view.js";

describe("FilterView", () => {
  it("equal requests give equal keys whatever their order; different ones differ", () => {
    const a = new FilterView("t", [
      { collection: "b", equals: { x: 1, y: "2" }, fields: ["q", "p"] },
      { collection: "a", equals: {}, fields: null },
    ]);
    const b = new FilterView("t", [
      { collection: "a", equals: {}, fields: null },
      { collection: "b", equals: { y: "2", x: 1 }, fields: ["p", "q", "p"] },
    ]);
    expect(a.key).toBe(b.key);
    expect(new FilterView("u", [{ collection: "a", equals: {}, fields: null }]).key).not.toBe(new FilterView("t", [{ collection: "a", equals: {}, fields: null }]).key);
    expect(new FilterView("t", [{ collection: "a", equals: { x: 1 }, fields: null }]).key).not.toBe(new FilterView("t", [{ collection: "a", equals: { x: "1" }, fields: null }]).key);
  });

  it("admits records whose fields equal every filter (deep equality for lists)", () => {
    const v = new FilterView("t", [{ collection: "c", equals: { region: "east", tags: ["a", "b"] }, fields: null }]);
    const rec = (fields: Record<string, unknown>) => ({ collection: "c", id: "1", version: 1, fields: fields as never });
    expect(v.admits(rec({ region: "east", tags: ["a", "b"], other: 1 }))).toBe(true);
    expect(v.admits(rec({ region: "east", tags: ["b", "a"] }))).toBe(false);
    expect(v.admits(rec({ region: "east" }))).toBe(false);
    expect(v.admits({ ...rec({ region: "east", tags: ["a", "b"] }), collection: "other" })).toBe(false);
  });

  it("projects selected fields and reports visibility", () => {
    const v = new FilterView("t", [{ collection: "c", equals: {}, fields: ["name"] }]);
    const state = (collection: string) => ({ collection, id: "1", version: 1, fields: { name: "x", phone: "y" } });
    expect(v.show(state("c"), { name: "x", phone: "y" })).toEqual({ fields: { name: "x" }, masked: [] });
    expect(v.show(state("zzz"), { name: "x" })).toEqual({ fields: {}, masked: [] });
    expect(v.fieldVisible(state("c"), "phone")).toBe(false);
    expect(v.fieldVisible(state("c"), "name")).toBe(true);
    expect(v.prefilter("c")).toEqual({});
  });
});
