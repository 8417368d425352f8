// The in-memory fan-out hub of one node. The tailer publishes the change log
// to it in order; it keeps the most recent changes (so a subscriber slightly
// behind catches up from memory) and hands every change to the live
// subscribers. Subscribers are grouped by view key: each change is judged and
// encoded once per group, and the same bytes are queued for every member.
//
// Everything here is synchronous: a subscriber that has caught up attaches in
// the same tick in which it checked its position against the hub's, so no
// change can slip between catch-up and live delivery.
import type { LogChange } from "../store/change-reader.js";
import type { EncodedEvent } from "./encode.js";
import { changeEvent, changesRecord, type StreamEvent } from "./events.js";
import type { Subscriber } from "./subscriber.js";
import type { SubscriberView } from "./view.js";

/** Placeholder for slots of forgotten recent changes (never read: they are below recentHead). */
const FORGOTTEN = null as unknown as LogChange;

/**
 * Most own commits held behind a gap. A gap normally fills within a
 * millisecond or two; a larger backlog means the tailer is behind and will
 * read these anyway.
 */
const MAX_HELD = 10_000;

/** Encodes one event for one view; injected so the hub needs no schemas. */
export type EventEncoder = (ev: StreamEvent, cursor: string) => Uint8Array;

/** How much the hub remembers: at most `changes` changes and `bytes` characters of their JSON (LogChange.size). */
export interface RecentLimit {
  changes: number;
  bytes: number;
}

interface Group {
  readonly view: SubscriberView;
  readonly members: Set<Subscriber>;
}

export interface HubStats {
  /** Last change published. */
  position: bigint;
  /** Commit time of that change (ms since epoch; 0 when none since start). */
  positionCommitMs: number;
  liveSubscribers: number;
  /** Distinct views among live subscribers (events are encoded once per view). */
  views: number;
}

export class ChangeHub {
  private positionSeq = 0n;
  private positionCommitMs = 0;
  /** Recent changes, oldest first; they cover the log from (recentFrom, position]. */
  private recent: LogChange[] = [];
  private recentHead = 0;
  private recentFrom = 0n;
  /** Sum of the remembered changes' sizes. */
  private recentSize = 0;
  private readonly groups = new Map<string, Group>();
  /** Groups by `${tenant}\0${collection}`. */
  private readonly scopes = new Map<string, Set<Group>>();
  private readonly live = new Set<Subscriber>();
  /** This node's own commits waiting behind a gap in the log (publishNext), by seq. */
  private readonly held = new Map<bigint, LogChange>();
  /** whenPublished callers, resolved once the hub passes their seq (or restarts). */
  private waiters: { seq: bigint; done: () => void }[] = [];
  /** Events encoded since start (tests count encodes per view with it). */
  encodes = 0;

  constructor(
    private readonly encode: EventEncoder,
    private readonly cursorOf: (seq: bigint) => string,
    private readonly recentLimit: () => RecentLimit,
  ) {}

  get position(): bigint {
    return this.positionSeq;
  }

  /** Starts (or restarts) at a log position with nothing recent. */
  reset(position: bigint): void {
    this.positionSeq = position;
    this.held.clear();
    this.releaseWaiters(() => true);
    this.forgetAll(position);
  }

  /**
   * Moves a hub without live subscribers to a later log position without
   * being given the changes in between (nobody would receive them). It then
   * remembers nothing before that position: a subscriber behind it catches
   * up from PostgreSQL. False, and nothing done, while anyone is live.
   */
  skipTo(position: bigint, commitMs: number): boolean {
    if (this.live.size > 0) return false;
    if (position <= this.positionSeq) return true;
    this.positionSeq = position;
    this.positionCommitMs = commitMs;
    this.held.clear();
    this.releaseWaiters(() => true);
    this.forgetAll(position);
    return true;
  }

  /** Changes after `after` (at most `limit`, none above `upTo`) from memory, or null when memory does not reach back that far. */
  recentAfter(after: bigint, limit: number, upTo: bigint): LogChange[] | null {
    if (after < this.recentFrom) return null;
    const out: LogChange[] = [];
    // Binary search the first change above `after`.
    let lo = this.recentHead;
    let hi = this.recent.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.recent[mid]!.seq <= after) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.recent.length && out.length < limit; i++) {
      const c = this.recent[i]!;
      if (c.seq > upTo) break;
      out.push(c);
    }
    return out;
  }

  /**
   * Makes `sub` live if it has caught up with the hub (its position is at or
   * past the hub's); false otherwise (it must read more history first).
   * Changes at or below its position are never queued for it.
   */
  attach(sub: Subscriber): boolean {
    if (sub.live) return true;
    if (sub.position < this.positionSeq || sub.ending) return false;
    let group = this.groups.get(sub.view.key);
    if (!group) {
      group = { view: sub.view, members: new Set() };
      this.groups.set(sub.view.key, group);
      for (const collection of sub.view.collections) {
        const scope = `${sub.view.tenant}\u0000${collection}`;
        let set = this.scopes.get(scope);
        if (!set) this.scopes.set(scope, (set = new Set()));
        set.add(group);
      }
    }
    group.members.add(sub);
    this.live.add(sub);
    sub.live = true;
    return true;
  }

  detach(sub: Subscriber): void {
    if (!sub.live) return;
    sub.live = false;
    this.live.delete(sub);
    const group = this.groups.get(sub.view.key);
    if (!group) return;
    group.members.delete(sub);
    if (group.members.size > 0) return;
    this.groups.delete(sub.view.key);
    for (const collection of group.view.collections) {
      const scope = `${group.view.tenant}\u0000${collection}`;
      const set = this.scopes.get(scope);
      set?.delete(group);
      if (set?.size === 0) this.scopes.delete(scope);
    }
  }

  get hasLiveSubscribers(): boolean {
    return this.live.size > 0;
  }

  /**
   * Publishes changes this node has just committed, ahead of the tailer, as
   * far as they continue the log exactly where the hub stands (seq = position
   * + 1, + 2, ...). A gap may hide a change another writer committed that the
   * tailer has not read yet, so changes after a gap are held until the gap
   * fills: usually by this node's own commit whose reply arrived a moment
   * later on another connection, else by the tailer's next page. Returns how
   * many were published now (held ones included).
   */
  publishNext(changes: readonly LogChange[]): number {
    for (const c of changes) if (c.seq > this.positionSeq) this.held.set(c.seq, c);
    // The tailer reads everything anyway: past this bound holding is not worth the memory.
    if (this.held.size > MAX_HELD) this.held.clear();
    return this.publishHeld();
  }

  /** Publishes changes in log order (the tailer's pages), then any held own commits they connect to. */
  publish(changes: readonly LogChange[]): void {
    this.deliver(changes);
    if (this.held.size === 0) return;
    // The log may have passed held commits whose gap never filled (a rolled-back seq): forget those.
    for (const seq of this.held.keys()) if (seq <= this.positionSeq) this.held.delete(seq);
    this.publishHeld();
  }

  /** The held own commits that continue the log now. */
  private publishHeld(): number {
    if (this.held.size === 0) return 0;
    const run: LogChange[] = [];
    for (let next = this.positionSeq + 1n; ; next++) {
      const c = this.held.get(next);
      if (!c) break;
      this.held.delete(next);
      run.push(c);
    }
    this.deliver(run);
    return run.length;
  }

  private deliver(changes: readonly LogChange[]): void {
    if (changes.length === 0) return;
    const overflowed: Subscriber[] = [];
    for (const c of changes) {
      if (c.seq <= this.positionSeq) continue;
      this.positionSeq = c.seq;
      this.positionCommitMs = c.commitTime.getTime();
      this.remember(c);
      if (!changesRecord(c)) continue;
      const groups = this.scopes.get(`${c.tenant}\u0000${c.collection}`);
      if (!groups) continue;
      let cursor: string | undefined;
      for (const group of groups) {
        const ev = changeEvent(c, group.view);
        if (!ev) continue;
        cursor ??= this.cursorOf(c.seq);
        this.encodes++;
        const encoded: EncodedEvent = { bytes: this.encode(ev, cursor), seq: c.seq, cursor, commitMs: this.positionCommitMs };
        for (const sub of group.members) {
          if (sub.position < c.seq && !sub.push(encoded)) overflowed.push(sub);
        }
      }
    }
    for (const sub of overflowed) this.detach(sub);
    for (const sub of this.live) sub.advance(this.positionSeq, this.positionCommitMs);
    if (this.waiters.length > 0) this.releaseWaiters((seq) => seq <= this.positionSeq);
  }

  /**
   * Resolves once the hub has published up to `seq` (at once when it has),
   * or has restarted elsewhere (reset, skipTo, expire). Writers wait on it so
   * that their acknowledgement never overtakes the change on this node's
   * streams.
   */
  whenPublished(seq: bigint): Promise<void> {
    if (seq <= this.positionSeq) return Promise.resolve();
    return new Promise((done) => this.waiters.push({ seq, done }));
  }

  private releaseWaiters(released: (seq: bigint) => boolean): void {
    const keep: { seq: bigint; done: () => void }[] = [];
    for (const w of this.waiters) {
      if (released(w.seq)) w.done();
      else keep.push(w);
    }
    this.waiters = keep;
  }

  /**
   * The log lost changes the hub had not read (retention passed its
   * position): every live subscriber is ended with CURSOR_EXPIRED and the hub
   * continues from the floor.
   */
  expire(floor: bigint): void {
    for (const sub of [...this.live]) {
      sub.end({ kind: "expired", floor });
      this.detach(sub);
    }
    this.reset(floor);
  }

  stats(): HubStats {
    return { position: this.positionSeq, positionCommitMs: this.positionCommitMs, liveSubscribers: this.live.size, views: this.groups.size };
  }

  private remember(c: LogChange): void {
    const limit = this.recentLimit();
    if (limit.changes <= 0 || c.size > limit.bytes) {
      this.forgetAll(c.seq);
      return;
    }
    this.recent.push(c);
    this.recentSize += c.size;
    while (this.recent.length - this.recentHead > limit.changes || this.recentSize > limit.bytes) {
      const forgotten = this.recent[this.recentHead]!;
      this.recentFrom = forgotten.seq;
      this.recentSize -= forgotten.size;
      // Let go of the forgotten change now (its image can be large), not at the next compaction.
      this.recent[this.recentHead] = FORGOTTEN;
      this.recentHead++;
    }
    if (this.recentHead >= 1024 && this.recentHead * 2 > this.recent.length) {
      this.recent = this.recent.slice(this.recentHead);
      this.recentHead = 0;
    }
  }

  /** Memory now starts after `seq`. */
  private forgetAll(seq: bigint): void {
    this.recent = [];
    this.recentHead = 0;
    this.recentSize = 0;
    this.recentFrom = seq;
  }
}
