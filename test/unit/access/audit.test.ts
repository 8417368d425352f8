// The audit hash chain and the batching writer.
import { describe, expect, it } from "vitest";
import { chainHash, GENESIS_HASH, link, verifyChain, type AuditEntry, type AuditEvent } from "../../../services/access/audit-chain.js";
import { AuditLog, type AuditSink } from "../../../services/access/audit-log.js";

const event = (i: number, over: Partial<AuditEvent> = {}): AuditEvent => ({
  tenant: "t",
  actor: `u${i}`,
  roles: ["sales"],
  kind: "denied",
  rpc: "/x",
  collection: "customers",
  recordIds: [`r${i}`],
  fields: ["phone"],
  reason: "OUT_OF_SCOPE",
  device: "d",
  deviceClass: "mobile",
  peer: "127.0.0.1:1",
  details: { b: "2", a: "1" },
  ...over,
});

describe("hash chain", () => {
  const time = new Date("2026-01-01T00:00:00.123Z");
  const chain = link(0, GENESIS_HASH, time, [event(1), event(2), event(3)]);

  it("links consecutive entries from the genesis hash", () => {
    expect(chain.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(chain[0]!.prevHash).toBe(GENESIS_HASH);
    expect(chain[1]!.prevHash).toBe(chain[0]!.hash);
    expect(verifyChain(chain, null)).toEqual({ intact: true, checked: 3, head: { seq: 3, hash: chain[2]!.hash } });
    expect(verifyChain([], null)).toEqual({ intact: true, checked: 0, head: null });
  });

  it("continues from a verified prefix", () => {
    expect(verifyChain(chain.slice(1), { seq: 1, hash: chain[0]!.hash }).intact).toBe(true);
  });

  it("detail order does not matter; every column does", () => {
    expect(chainHash("p", 1, time, event(1))).toBe(chainHash("p", 1, time, event(1, { details: { a: "1", b: "2" } })));
    const variants: Partial<AuditEvent>[] = [{ actor: "x" }, { roles: [] }, { kind: "export" }, { recordIds: [] }, { fields: ["email"] }, { reason: "" }, { device: "" }, { deviceClass: "" }, { peer: "" }, { details: {} }, { tenant: "u" }, { rpc: "/y" }, { collection: "" }];
    for (const v of variants) expect(chainHash("p", 1, time, event(1, v)), JSON.stringify(v)).not.toBe(chainHash("p", 1, time, event(1)));
    expect(chainHash("p", 1, new Date(time.getTime() + 1), event(1))).not.toBe(chainHash("p", 1, time, event(1)));
  });

  it("finds an edited, removed, reordered or relinked entry", () => {
    const edited: AuditEntry[] = chain.map((e) => (e.seq === 2 ? { ...e, fields: [] } : e));
    expect(verifyChain(edited, null)).toMatchObject({ intact: false, badSeq: 2, checked: 1 });
    expect(verifyChain([chain[0]!, chain[2]!], null)).toMatchObject({ intact: false, badSeq: 3 });
    expect(verifyChain([chain[1]!, chain[0]!, chain[2]!], null)).toMatchObject({ intact: false, badSeq: 2 });
    const relinked = { ...chain[2]!, prevHash: GENESIS_HASH };
    expect(verifyChain([chain[0]!, chain[1]!, relinked], null)).toMatchObject({ intact: false, badSeq: 3 });
  });
});

class MemorySink implements AuditSink {
  batches: AuditEvent[][] = [];
  fail = false;
  async append(events: readonly AuditEvent[]) {
    if (this.fail) throw new Error("database down");
    this.batches.push([...events]);
    return link(0, GENESIS_HASH, new Date(), events);
  }
}

const quiet = { error: () => {}, warn: () => {} };

describe("AuditLog batching", () => {
  it("batches queued events and writes them within flushMs", async () => {
    const sink = new MemorySink();
    const log = new AuditLog(() => sink, quiet, { flushMs: 10 });
    for (let i = 0; i < 5; i++) log.record(event(i));
    expect(sink.batches).toEqual([]);
    await new Promise((r) => setTimeout(r, 50));
    expect(sink.batches.map((b) => b.length)).toEqual([5]);
    await log.close();
  });

  it("writes a full batch at once", async () => {
    const sink = new MemorySink();
    const log = new AuditLog(() => sink, quiet, { flushMs: 60_000, maxBatch: 3 });
    for (let i = 0; i < 3; i++) log.record(event(i));
    await log.flush();
    expect(sink.batches.map((b) => b.length)).toEqual([3]);
    await log.close();
  });

  it("recordNow writes after everything queued before it, and rejects when it cannot", async () => {
    const sink = new MemorySink();
    const log = new AuditLog(() => sink, quiet, { flushMs: 60_000 });
    log.record(event(1));
    await log.recordNow(event(2, { kind: "export" }));
    expect(sink.batches.flat().map((e) => e.actor)).toEqual(["u1", "u2"]);
    sink.fail = true;
    await expect(log.recordNow(event(3))).rejects.toThrow("database down");
    sink.fail = false;
    await log.flush();
    expect(sink.batches.flat().map((e) => e.actor)).toEqual(["u1", "u2", "u3"]); // kept and retried
    await log.close();
  });

  it("waits for the database; bounds the queue while it is away", async () => {
    let sink: MemorySink | null = null;
    const errors: object[] = [];
    const log = new AuditLog(() => sink, { error: (o) => errors.push(o), warn: () => {} }, { flushMs: 5, maxQueued: 3 });
    for (let i = 0; i < 5; i++) log.record(event(i));
    await new Promise((r) => setTimeout(r, 20));
    sink = new MemorySink();
    await log.flush();
    expect(sink.batches.flat().map((e) => e.actor)).toEqual(["u2", "u3", "u4"]);
    expect(errors).toEqual([{ dropped: 2 }]);
    await log.close();
  });
});
