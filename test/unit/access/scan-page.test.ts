// Scanning a keyset-paged source for the rows a caller may see.
import { describe, expect, it } from "vitest";
import { scanPage } from "../../../services/platform/page-token.js";

const rows = Array.from({ length: 50 }, (_, i) => String(i).padStart(3, "0"));
const source = (calls: number[] = []) => async (after: string, limit: number) => {
  calls.push(limit);
  return rows.filter((r) => r > after).slice(0, limit);
};

describe("scanPage", () => {
  it("keeps everything: plain pages, no token on the last", async () => {
    const p1 = await scanPage(source(), (r) => r, () => true, "", 20);
    expect(p1).toEqual({ items: rows.slice(0, 20), next: "019" });
    const p3 = await scanPage(source(), (r) => r, () => true, "039", 20);
    expect(p3).toEqual({ items: rows.slice(40), next: null });
    expect(await scanPage(source(), (r) => r, () => true, "029", 20)).toEqual({ items: rows.slice(30, 50), next: null });
  });

  it("skips rows it may not keep, reading on to fill the page", async () => {
    const even = (r: string) => Number(r) % 2 === 0;
    const p = await scanPage(source(), (r) => r, even, "", 5);
    expect(p.items).toEqual(["000", "002", "004", "006", "008"]);
    const all: string[] = [];
    let after = "";
    for (;;) {
      const page = await scanPage(source(), (r) => r, even, after, 7);
      all.push(...page.items);
      if (page.next === null) break;
      after = page.next;
    }
    expect(all).toEqual(rows.filter(even));
  });

  it("stops after its budget with a token to go on, even with an empty page", async () => {
    const calls: number[] = [];
    const p = await scanPage(source(calls), (r) => r, () => false, "", 2, 6);
    expect(p).toEqual({ items: [], next: "005" });
    expect(calls).toEqual([3, 3]);
  });
});
