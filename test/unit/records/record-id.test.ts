// New record ids are UUIDv7: version and variant bits set, the creation time
// in the first 48 bits (so ids sort by creation and append to the primary-key
// index), and no repeats, including across refills of the random page.
import { describe, expect, it } from "vitest";
import { newRecordId } from "../../../services/records/write-pipeline.js";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("newRecordId", () => {
  it("is a UUIDv7 carrying its creation time", () => {
    const now = Date.UTC(2026, 10, 23, 12, 0, 0, 123);
    const id = newRecordId(now);
    expect(id).toMatch(UUID_V7);
    expect(parseInt(id.replace(/-/g, "").slice(0, 12), 16)).toBe(now);
  });

  it("never repeats, across many pages of randomness", () => {
    const now = Date.now();
    const ids = Array.from({ length: 5000 }, () => newRecordId(now));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(UUID_V7);
    // Same millisecond: the random part differs, in many positions (not a counter).
    const tails = new Set(ids.map((id) => id.slice(-4)));
    expect(tails.size).toBeGreaterThan(4000);
  });

  it("sorts by creation time", () => {
    const ids = [0, 1, 2, 1000, 2 ** 40].map((dt) => newRecordId(1_700_000_000_000 + dt));
    expect([...ids].sort()).toEqual(ids);
  });
});
