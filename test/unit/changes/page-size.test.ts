import { describe, expect, it } from "vitest";
import { PageSizer } from "../../../services/changes/page-size.js";

describe("PageSizer", () => {
  it("reads about the target bytes per page, within bounds", () => {
    const p = new PageSizer(1_000_000, 8, 1000, 128);
    expect(p.next).toBe(128);
    p.observe(128, 128 * 50_000); // 50 KB rows
    expect(p.next).toBe(20);
    p.observe(20, 20 * 100); // tiny rows
    expect(p.next).toBe(1000);
    p.observe(1000, 1000 * 10_000_000); // huge rows: never below the minimum
    expect(p.next).toBe(8);
    p.observe(0, 0); // an empty page says nothing
    expect(p.next).toBe(8);
  });
});
