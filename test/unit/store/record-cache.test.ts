// The node's cache of records it wrote: bounded by the records' stored
// bytes (those kept longest go first); a record being written is a miss,
// and later batches of it wait, until its batch has committed or failed.
import { describe, expect, it } from "vitest";
import { RecordCache } from "../../../services/store/record-cache.js";
import type { StoredRecord } from "../../../services/records/model.js";

const record = (id: string, version = 1): StoredRecord => ({
  tenant: "t",
  collection: "customers",
  id,
  version,
  fields: { name: id },
  clocks: {},
  deleted: false,
  createTime: new Date(0),
  updateTime: new Date(0),
});

describe("RecordCache", () => {
  it("keeps records up to its byte budget, dropping those kept longest first", () => {
    const cache = new RecordCache(300);
    cache.committed("a", record("a"), 100);
    cache.committed("b", record("b"), 100);
    cache.committed("c", record("c"), 100);
    cache.committed("d", record("d"), 100);
    expect(cache.get("a")).toBeUndefined();
    expect([cache.get("b")?.id, cache.get("c")?.id, cache.get("d")?.id]).toEqual(["b", "c", "d"]);
    expect(cache.size).toBe(3);
  });

  it("replaces a record's entry and its size in place, and forgets one", () => {
    const cache = new RecordCache(300);
    cache.committed("a", record("a", 1), 200);
    cache.committed("a", record("a", 2), 50);
    cache.committed("b", record("b"), 250);
    expect(cache.get("a")?.version).toBe(2);
    expect(cache.get("b")?.id).toBe("b");
    cache.forget("a");
    expect(cache.get("a")).toBeUndefined();
    cache.committed("c", record("c"), 50);
    expect(cache.size).toBe(2);
  });

  it("misses a record while a batch writes it, and has later batches wait for that write", async () => {
    const cache = new RecordCache(1000);
    cache.committed("a", record("a", 1), 10);
    let finish!: () => void;
    const write = new Promise<void>((resolve) => (finish = resolve));
    cache.writing(["a"], write, false);
    expect(cache.get("a")).toBeUndefined();
    expect(cache.writesBefore(["b"], false)).toBeNull();
    // Nothing of this batch took a lock before writing: a batch whose records are unknown waits too.
    expect(cache.writesBefore(["b"], true)).toBeNull();
    let waited = false;
    const wait = cache.writesBefore(["a", "b"], false)!.then(() => (waited = true));
    await Promise.resolve();
    expect(waited).toBe(false);
    cache.committed("a", record("a", 2), 10);
    finish();
    await wait;
    expect(cache.get("a")?.version).toBe(2);
    expect(cache.writesBefore(["a"], false)).toBeNull();
  });

  it("has a batch that cannot name its records wait for writes that took no locks, failed ones included", async () => {
    const cache = new RecordCache(1000);
    let fail!: (e: Error) => void;
    const write = new Promise<void>((_, reject) => (fail = reject));
    write.catch(() => undefined);
    cache.writing(["a"], write, true);
    const wait = cache.writesBefore([], true);
    expect(wait).not.toBeNull();
    fail(new Error("stale"));
    await wait;
    expect(cache.writesBefore([], true)).toBeNull();
    expect(cache.writesBefore(["a"], false)).toBeNull();
  });

  it("keeps the newer of two commits of a record, whatever order they are told in", () => {
    const cache = new RecordCache(1000);
    cache.committed("a", record("a", 3), 10);
    cache.committed("a", record("a", 2), 10);
    expect(cache.get("a")?.version).toBe(3);
  });

  it("keeps no record larger than the budget, nor any when disabled", () => {
    const cache = new RecordCache(100);
    cache.committed("a", record("a", 1), 60);
    cache.committed("a", record("a", 2), 101);
    expect(cache.get("a")).toBeUndefined();
    expect(cache.size).toBe(0);
    const off = new RecordCache(0);
    off.committed("a", record("a"), 1);
    expect(off.enabled).toBe(false);
    expect(off.get("a")).toBeUndefined();
  });
});
