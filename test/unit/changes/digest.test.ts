import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { bucketOf, DigestBuilder, differingBuckets, entryHash } from "../../../services/changes/digest.js";

describe("digest", () => {
  it("follows the documented formulas", () => {
    const h = createHash("sha256").update("abc").digest();
    expect(bucketOf("abc", 256)).toBe(h.readUInt32BE(0) % 256);
    expect(entryHash("abc", 7)).toBe(createHash("sha256").update("abc\n7").digest().readBigUInt64BE(0));
  });

  it("is independent of the order records are added in, and sees a changed version", () => {
    const ids = Array.from({ length: 500 }, (_, i) => `id-${i}`);
    const a = new DigestBuilder(16);
    const b = new DigestBuilder(16);
    ids.forEach((id, i) => a.add(id, i + 1));
    [...ids].reverse().forEach((id) => b.add(id, ids.indexOf(id) + 1));
    expect(differingBuckets(a.buckets, b.buckets)).toEqual([]);
    expect(a.count).toBe(500);
    const c = new DigestBuilder(16);
    ids.forEach((id, i) => c.add(id, id === "id-42" ? i + 2 : i + 1));
    expect(differingBuckets(a.buckets, c.buckets)).toEqual([bucketOf("id-42", 16)]);
    const d = new DigestBuilder(16);
    ids.filter((id) => id !== "id-7").forEach((id) => d.add(id, ids.indexOf(id) + 1));
    expect(differingBuckets(a.buckets, d.buckets)).toEqual([bucketOf("id-7", 16)]);
  });
});
