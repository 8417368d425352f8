// The hub: grouping by view, encode once per view, never queuing a change at
// or below a subscriber's position, memory of recent changes, overflow.
import { describe, expect, it, vi } from "vitest";
import { ChangeHub } from "../../../services/changes/hub.js";
import type { StreamEvent } from "../../../services/changes/events.js";
import { Subscriber } from "../../../services/changes/subscriber.js";
import { FilterView } from "../../../services/changes/view.js";
import { change } from "./fixtures.js";

const east = new FilterView("default", [{ collection: "customers", equals: { region: "east_china" }, fields: null }]);
const east2 = new FilterView("default", [{ collection: "customers", equals: { region: "east_china" }, fields: null }]);
const all = new FilterView("default", [{ collection: "customers", equals: {}, fields: null }]);

function hub(recent = 100, recentBytes = Infinity) {
  const encoded: string[] = [];
  const h = new ChangeHub(
    (ev: StreamEvent, cursor: string) => {
      encoded.push(`${ev.kind}@${cursor}`);
      return new TextEncoder().encode(`${ev.kind}@${cursor};`);
    },
    (seq) => `c${seq}`,
    () => ({ changes: recent, bytes: recentBytes }),
  );
  return { h, encoded };
}
const sub = (view: FilterView, position: bigint, maxEvents = 100) => new Subscriber(view, position, `c${position}`, { maxEvents, maxBytes: 1 << 20 });
const text = (s: Subscriber) => s.take(Infinity).map((e) => new TextDecoder().decode(e.bytes)).join("");
const created = (seq: number, region: string, id = `r${seq}`) => change({ seq, id, before: null, set: { region } });

describe("ChangeHub", () => {
  it("encodes each change once per view and queues the same bytes for every member", () => {
    const { h, encoded } = hub();
    const [a, b, c] = [sub(east, 0n), sub(east2, 0n), sub(all, 0n)];
    for (const s of [a, b, c]) expect(h.attach(s)).toBe(true);
    h.publish([created(1, "east_china"), created(2, "north_china")]);
    expect(encoded).toEqual(["upsert@c1", "upsert@c1", "upsert@c2"]);
    expect(h.encodes).toBe(3);
    expect(text(a)).toBe("upsert@c1;");
    expect(text(b)).toBe("upsert@c1;");
    expect(text(c)).toBe("upsert@c1;upsert@c2;");
    // Everyone has judged everything, seen or not.
    expect([a, b, c].map((s) => s.position)).toEqual([2n, 2n, 2n]);
    expect(h.stats()).toMatchObject({ position: 2n, liveSubscribers: 3, views: 2 });
  });

  it("skips ahead only while nobody is live, and then remembers nothing before the new position", () => {
    const { h } = hub();
    h.publish([created(1, "east_china"), created(2, "east_china")]);
    expect(h.recentAfter(0n, 10, 100n)?.map((c) => c.seq)).toEqual([1n, 2n]);
    expect(h.skipTo(7n, 1234)).toBe(true);
    expect(h.stats()).toMatchObject({ position: 7n, positionCommitMs: 1234 });
    // Changes 3..7 were never given to the hub: a subscriber behind 7 must read them elsewhere.
    expect(h.recentAfter(2n, 10, 100n)).toBeNull();
    expect(h.recentAfter(7n, 10, 100n)).toEqual([]);
    // Never backwards.
    expect(h.skipTo(5n, 99)).toBe(true);
    expect(h.position).toBe(7n);
    // A live subscriber at 7 would miss 8..9: refused, nothing moves.
    const s = sub(all, 7n);
    expect(h.attach(s)).toBe(true);
    expect(h.skipTo(9n, 5678)).toBe(false);
    expect(h.stats()).toMatchObject({ position: 7n, positionCommitMs: 1234 });
    h.publish([created(8, "east_china")]);
    expect(text(s)).toBe("upsert@c8;");
  });

  it("publishes a writer's own commits where they continue the log, holding those after a gap until it fills", () => {
    const { h } = hub();
    h.reset(10n);
    const s = sub(all, 10n);
    expect(h.attach(s)).toBe(true);
    expect(h.hasLiveSubscribers).toBe(true);
    // 11 and 12 continue the log at 10.
    expect(h.publishNext([created(11, "east_china"), created(12, "east_china")])).toBe(2);
    // 14 may be preceded by an unread 13 from another writer: held, nothing published.
    expect(h.publishNext([created(14, "east_china"), created(15, "east_china")])).toBe(0);
    expect(h.position).toBe(12n);
    expect(text(s)).toBe("upsert@c11;upsert@c12;");
    // This node's own 13 (its reply came later on another connection) fills the gap: 13, 14, 15 go out in order.
    expect(h.publishNext([created(13, "east_china")])).toBe(3);
    expect(h.position).toBe(15n);
    // 17 waits behind 16, which another writer committed: the tailer's page publishes 16, then the held 17.
    expect(h.publishNext([created(17, "east_china")])).toBe(0);
    h.publish([created(16, "north_china")]);
    expect(h.position).toBe(17n);
    // The tailer then reads 17 itself: already published, skipped.
    h.publish([created(17, "east_china")]);
    expect(text(s)).toBe("upsert@c13;upsert@c14;upsert@c15;upsert@c16;upsert@c17;");
    // A held change whose gap never fills (a rolled-back seq) is forgotten once the tailer passes it.
    expect(h.publishNext([created(20, "east_china")])).toBe(0);
    h.publish([18, 19, 20, 21].map((seq) => created(seq, "east_china")));
    expect(text(s)).toBe("upsert@c18;upsert@c19;upsert@c20;upsert@c21;");
    expect(h.publishNext([created(21, "east_china")])).toBe(0);
    expect(text(s)).toBe("");
  });

  it("tells a waiting writer once its change is published, or once the hub restarts elsewhere", async () => {
    const { h } = hub();
    h.reset(10n);
    const settled: string[] = [];
    await h.whenPublished(10n); // already there
    void h.whenPublished(12n).then(() => settled.push("12"));
    void h.whenPublished(13n).then(() => settled.push("13"));
    h.publishNext([created(12, "east_china")]); // held behind 11
    await Promise.resolve();
    expect(settled).toEqual([]);
    h.publish([created(11, "east_china")]); // the tailer fills the gap: 11, then the held 12
    await Promise.resolve();
    expect(settled).toEqual(["12"]);
    h.reset(20n); // restarted (expired, say): nothing to wait for any more
    await Promise.resolve();
    expect(settled).toEqual(["12", "13"]);
  });

  it("only a caught-up subscriber attaches, and nothing at or below its position is queued", () => {
    const { h } = hub();
    h.publish([created(1, "east_china"), created(2, "east_china")]);
    const behind = sub(all, 1n);
    expect(h.attach(behind)).toBe(false);
    const ahead = sub(all, 3n); // read further in the database than the hub has
    expect(h.attach(ahead)).toBe(true);
    h.publish([created(3, "east_china"), created(4, "east_china")]);
    expect(text(ahead)).toBe("upsert@c4;");
  });

  it("remembers recent changes for subscribers slightly behind, up to its limit", () => {
    const { h } = hub(3);
    h.reset(10n);
    h.publish([11, 12, 13, 14, 15].map((s) => created(s, "east_china")));
    expect(h.recentAfter(11n, 100, 1000n)).toBeNull(); // 12 was forgotten... but (12,15] is held
    expect(h.recentAfter(12n, 100, 1000n)!.map((c) => c.seq)).toEqual([13n, 14n, 15n]);
    expect(h.recentAfter(13n, 1, 1000n)!.map((c) => c.seq)).toEqual([14n]);
    expect(h.recentAfter(12n, 100, 14n)!.map((c) => c.seq)).toEqual([13n, 14n]);
    expect(h.recentAfter(15n, 100, 1000n)).toEqual([]);
  });

  it("remembers no more than its byte limit of recent changes, and nothing of a change larger than that", () => {
    const size = created(1, "east_china").size;
    const { h } = hub(100, size * 2.5);
    h.reset(10n);
    h.publish([11, 12, 13, 14].map((s) => created(s, "east_china")));
    expect(h.recentAfter(11n, 100, 1000n)).toBeNull();
    expect(h.recentAfter(12n, 100, 1000n)!.map((c) => c.seq)).toEqual([13n, 14n]);
    const huge = change({ seq: 15, id: "r15", before: null, set: { notes: "备注".repeat(size) } });
    h.publish([huge]);
    expect(h.recentAfter(14n, 100, 1000n)).toBeNull();
    expect(h.recentAfter(15n, 100, 1000n)).toEqual([]);
    h.publish([created(16, "east_china")]);
    expect(h.recentAfter(15n, 100, 1000n)!.map((c) => c.seq)).toEqual([16n]);
  });

  it("ends and detaches a subscriber whose buffer overflows; the others carry on", () => {
    const { h } = hub();
    const slow = sub(all, 0n, 2);
    const fast = sub(all, 0n);
    h.attach(slow);
    h.attach(fast);
    h.publish([1, 2, 3].map((s) => created(s, "east_china")));
    expect(slow.ending).toEqual({ kind: "overflow" });
    expect(slow.live).toBe(false);
    expect(slow.buffered).toBe(0);
    expect(fast.buffered).toBe(3);
    h.publish([created(4, "east_china")]);
    expect(fast.buffered).toBe(4);
  });

  it("expiring ends every live subscriber and restarts from the floor", () => {
    const { h } = hub();
    const s = sub(all, 0n);
    h.attach(s);
    h.expire(50n);
    expect(s.ending).toEqual({ kind: "expired", floor: 50n });
    expect(h.position).toBe(50n);
    expect(h.stats().liveSubscribers).toBe(0);
  });
});

describe("Subscriber", () => {
  it("takes queued events in messages of about maxBytes, at least one event each", () => {
    const s = sub(all, 0n);
    for (let i = 1; i <= 5; i++) s.push({ bytes: new Uint8Array(40), seq: BigInt(i), cursor: `c${i}`, commitMs: i });
    expect(s.take(100).map((e) => e.seq)).toEqual([1n, 2n]);
    expect(s.take(10).map((e) => e.seq)).toEqual([3n]);
    expect(s.take(1000).map((e) => e.seq)).toEqual([4n, 5n]);
    expect(s.bufferedBytes).toBe(0);
  });

  it("wait resolves on a push, on abort, or at its deadline", async () => {
    const s = sub(all, 0n);
    const ctl = new AbortController();
    s.watch(ctl.signal);
    const t0 = Date.now();
    await s.wait(t0 + 50);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);
    const pushed = s.wait(Date.now() + 10_000);
    s.push({ bytes: new Uint8Array(1), seq: 1n, cursor: "c1", commitMs: 1 });
    await pushed;
    s.take(10);
    const aborted = s.wait(Date.now() + 10_000);
    ctl.abort();
    await aborted;
    // Once aborted, waits no longer block.
    await s.wait(Date.now() + 10_000);
  });

  it("keeps one timer across waits: a later deadline re-arms it when it fires, an earlier one replaces it", async () => {
    vi.useFakeTimers();
    try {
      const s = sub(all, 0n);
      s.watch(new AbortController().signal);
      let woke = 0;
      const t0 = Date.now();
      // Woken by pushes long before the deadline, as a live stream is.
      for (let i = 1; i <= 3; i++) {
        const w = s.wait(t0 + 1_000).then(() => woke++);
        s.push({ bytes: new Uint8Array(1), seq: BigInt(i), cursor: `c${i}`, commitMs: i });
        await w;
        s.take(10);
      }
      expect(vi.getTimerCount()).toBe(1);
      // The deadline moved on (a message went out): the old timer must not end this wait early.
      const later = s.wait(t0 + 3_000).then(() => woke++);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(woke).toBe(3);
      await vi.advanceTimersByTimeAsync(1_000);
      await later;
      expect(woke).toBe(4);
      // An earlier deadline than the armed timer's is honoured.
      const far = s.wait(Date.now() + 60_000);
      s.wake();
      await far;
      const near = s.wait(Date.now() + 100).then(() => woke++);
      await vi.advanceTimersByTimeAsync(100);
      await near;
      expect(woke).toBe(5);
      s.dispose();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
