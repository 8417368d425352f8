// ChangeStreams: a node's change streams. It owns the tailer and the hub and
// runs each subscription: validating its start (cursor, now, snapshot),
// catching it up from memory or PostgreSQL in pages, attaching it to the hub,
// sending batched live events and heartbeats, swapping its view on demand,
// and computing digests. It yields message bytes; translating requests and
// responses is handlers.ts's job.
import type { ConfigSource } from "../config/source.js";
import { DomainError } from "../platform/errors.js";
import type { ChangeReader, LogChange, LogPage, LogSnapshot } from "../store/change-reader.js";
import type { StoredRecord } from "../records/model.js";
import type { StoredValue } from "../schema/types.js";
import { cursorEncoder, decodeCursor } from "./cursor.js";
import { bucketOf, DigestBuilder, type Bucket } from "./digest.js";
import { Batch, type Message } from "./batch.js";
import { encodeEvent, encodeHeartbeat, encodeSnapshotEnd, joinEvents } from "./encode.js";
import { changeEvent, viewRecord, viewSwapEvent, type EventRecord, type StreamEvent } from "./events.js";
import { ChangeHub } from "./hub.js";
import type { StreamSettings } from "./settings.js";
import type { StreamStats, StreamStatsSource } from "./stats.js";
import { Subscriber, type Ending } from "./subscriber.js";
import { ChangeTailer, type TailerLogger } from "./tailer.js";
import type { SubscriberView } from "./view.js";

export type StreamStart = { kind: "cursor"; cursor: string } | { kind: "now" } | { kind: "snapshot" };

export interface SubscribeSpec {
  view: SubscriberView;
  /** Who opens the stream (tenant and subject), for the per-caller stream cap. */
  caller: string;
  /** The view as the access policy stands now (called once the stream is open, to catch a change made while it opened). */
  current?: (view: SubscriberView) => SubscriberView;
  start: StreamStart;
  /** Heartbeat interval; absent: the configured default. */
  heartbeatMs?: number;
}

export interface DigestQuery {
  /** A view of exactly one collection. */
  view: SubscriberView;
  bucketCount: number;
  /** The digest is taken at this cursor or later ("" for now). */
  minCursor: string;
}

export interface DigestResult {
  seq: bigint;
  cursor: string;
  buckets: Bucket[];
  recordCount: number;
}

export interface BucketResult {
  cursor: string;
  records: EventRecord[];
}

/** Rows per catch-up or snapshot read. */
const PAGE = 1000;
/** Most records GetDigestBucket returns; beyond, the caller asks with more buckets. */
export const MAX_BUCKET_RECORDS = 10_000;

export function cursorExpired(floorCursor: string, floor: bigint, why: string, metadata: Record<string, string> = {}): DomainError {
  return new DomainError("failed_precondition", `${why}; subscribe again with a snapshot`, {
    reason: "CURSOR_EXPIRED",
    metadata: { floor: floorCursor, floor_seq: floor.toString(), ...metadata },
  });
}

function tooManyStreams(scope: "node" | "caller", limit: number, advice: string): DomainError {
  return new DomainError("resource_exhausted", `too many open streams: ${advice} (limit ${limit})`, {
    reason: "TOO_MANY_STREAMS",
    metadata: { scope, limit: String(limit) },
  });
}

export function subscriberTooSlow(cursor: string): DomainError {
  return new DomainError("resource_exhausted", "the subscriber fell too far behind and its buffer overflowed; resume from the cursor in the error details", {
    reason: "SUBSCRIBER_TOO_SLOW",
    metadata: { cursor },
  });
}

export class ChangeStreams implements StreamStatsSource {
  readonly hub: ChangeHub;
  private readonly tailer: ChangeTailer;
  private readonly open = new Set<Subscriber>();
  /** Streams admitted (opening or open), in all and per caller: what the caps count. */
  private admitted = 0;
  private readonly admittedPerCaller = new Map<string, number>();
  private readonly encodeCursor: (seq: bigint) => string;

  constructor(
    private readonly reader: ChangeReader,
    private readonly config: ConfigSource,
    log: TailerLogger,
  ) {
    this.encodeCursor = cursorEncoder(reader.databaseId);
    this.hub = new ChangeHub(
      (ev, cursor) => this.encode(ev, cursor),
      (seq) => this.cursorOf(seq),
      () => ({ changes: this.settings().recentChanges, bytes: this.settings().recentBytes }),
    );
    this.tailer = new ChangeTailer(reader, this.hub, () => this.settings(), log, () => this.open.size > 0);
  }

  start(): Promise<void> {
    return this.tailer.start();
  }

  /** Ends every stream (clients see UNAVAILABLE from the transport's shutdown) and stops the tailer. */
  async stop(): Promise<void> {
    for (const sub of this.open) {
      sub.end({ kind: "closed" });
      this.hub.detach(sub);
    }
    await this.tailer.stop();
  }

  /** Makes the tailer read now (tests; a write on this node could call it too). */
  wakeTailer(): void {
    this.tailer.wake();
  }

  cursorOf(seq: bigint): string {
    return this.encodeCursor(seq);
  }

  /** Whether changes committed on this node would reach anyone now (the write path builds them only then). */
  listening(): boolean {
    return this.hub.hasLiveSubscribers;
  }

  /**
   * Changes the write path of this node has just committed: live streams get
   * them now rather than after the commit notification, the tailer's batch
   * delay and a read (the tailer still reads them). Changes the hub cannot
   * place yet (see ChangeHub.publishNext) make the tailer read at once; the
   * returned promise resolves once the streams have them all, and the writer
   * waits for it before acknowledging (unless the tailer is behind anyway).
   */
  committed(changes: readonly LogChange[]): Promise<void> | undefined {
    if (changes.length === 0) return undefined;
    this.hub.publishNext(changes);
    const last = changes[changes.length - 1]!.seq;
    if (last <= this.hub.position) return undefined;
    this.tailer.readNow();
    // Only a gap that just opened is waited for: a tailer that was behind
    // already (streams lagging under load) would hold every write up.
    if (this.tailer.behind() > 0n) return undefined;
    return this.hub.whenPublished(last);
  }

  /**
   * Swaps the view of open streams: `next` gets each stream's view (the one
   * it is about to get, if a swap is already pending) and returns a new view
   * or null to keep it. Each swapped stream first finishes the changes it was
   * judging under its old view, then receives leave_scope / enter_scope
   * (reason POLICY) for the records whose visibility or visible fields
   * differ, all at one log position, then continues under the new view.
   * Returns how many streams will swap.
   */
  replaceViews(next: (current: SubscriberView) => SubscriberView | null): number {
    let n = 0;
    for (const sub of this.open) {
      const current = sub.pendingView ?? sub.view;
      const view = next(current);
      if (!view || view.key === current.key) continue;
      sub.pendingView = view;
      this.hub.detach(sub);
      sub.wake();
      n++;
    }
    return n;
  }

  streamStats(): StreamStats {
    const hub = this.hub.stats();
    const now = Date.now();
    let maxLagMs = 0;
    let live = 0;
    for (const sub of this.open) {
      if (sub.live) live++;
      const caughtUp = sub.live && sub.buffered === 0 && sub.position >= hub.position;
      if (!caughtUp && sub.processedCommitMs > 0) maxLagMs = Math.max(maxLagMs, now - sub.processedCommitMs);
    }
    return {
      subscribers: this.open.size,
      liveSubscribers: live,
      catchingUp: this.open.size - live,
      views: hub.views,
      tailerSeq: hub.position,
      tailerCursor: this.cursorOf(hub.position),
      tailerCommitTime: hub.positionCommitMs > 0 ? new Date(hub.positionCommitMs) : null,
      tailerBehind: this.tailer.behind(),
      maxLagMs,
    };
  }

  /** The log position a resume cursor stands for; CURSOR_EXPIRED when it cannot be resumed here. */
  async resumePosition(text: string, field = "after_cursor"): Promise<bigint> {
    const cursor = decodeCursor(text, field);
    const { floor, tail } = await this.reader.bounds();
    const floorCursor = this.cursorOf(floor);
    if (cursor.databaseId !== this.reader.databaseId) {
      throw cursorExpired(floorCursor, floor, "the cursor belongs to another database (restored or replaced since?)", {
        cursor_database_id: cursor.databaseId,
        database_id: this.reader.databaseId,
      });
    }
    if (cursor.seq < floor) throw cursorExpired(floorCursor, floor, `the changes after the cursor were deleted by retention (floor ${floor})`);
    if (cursor.seq > tail) throw cursorExpired(floorCursor, floor, `the cursor is ahead of this database's change log (at ${tail}); was the database restored from an older backup?`);
    return cursor.seq;
  }

  async *subscribe(spec: SubscribeSpec, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const release = this.admit(spec.caller);
    let sub: Subscriber | undefined;
    try {
      const s = this.settings();
      let position = 0n;
      if (spec.start.kind === "cursor") position = await this.resumePosition(spec.start.cursor);
      else if (spec.start.kind === "now") position = (await this.reader.bounds()).tail;
      sub = new Subscriber(spec.view, position, this.cursorOf(position), { maxEvents: s.maxBufferedEvents, maxBytes: s.maxBufferedBytes });
      const heartbeatMs = spec.heartbeatMs ?? s.heartbeatIntervalMs;
      sub.watch(signal);
      this.open.add(sub);
      // A policy change announced while the start position was read found this
      // stream not open yet (replaceViews): it starts under the policy of now.
      const now = spec.current?.(sub.view);
      if (now && now.key !== sub.view.key) sub.view = now;
      if (spec.start.kind === "snapshot") yield* this.snapshot(sub);
      // The first message tells the client where it stands, so even a quiet
      // "from now" stream has a cursor to resume from.
      else yield this.heartbeat(sub);
      yield* this.follow(sub, heartbeatMs, signal);
    } finally {
      if (sub) {
        sub.dispose();
        this.hub.detach(sub);
        this.open.delete(sub);
      }
      release();
    }
  }

  /**
   * Counts a stream against the caps before it reads anything, so a storm of
   * opening streams is refused as cheaply as it arrives.
   * @throws DomainError resource_exhausted TOO_MANY_STREAMS.
   */
  private admit(caller: string): () => void {
    const { maxStreams, maxStreamsPerCaller } = this.settings();
    const mine = this.admittedPerCaller.get(caller) ?? 0;
    if (this.admitted >= maxStreams) throw tooManyStreams("node", maxStreams, "this node has as many open streams as it takes; retry later or on another node");
    if (mine >= maxStreamsPerCaller) throw tooManyStreams("caller", maxStreamsPerCaller, "this caller has as many open streams as one caller may; close one, or share one stream among consumers");
    this.admitted++;
    this.admittedPerCaller.set(caller, mine + 1);
    return () => {
      this.admitted--;
      const left = (this.admittedPerCaller.get(caller) ?? 1) - 1;
      if (left > 0) this.admittedPerCaller.set(caller, left);
      else this.admittedPerCaller.delete(caller);
    };
  }

  async digest(q: DigestQuery): Promise<DigestResult> {
    const snap = await this.snapshotAt(q.minCursor);
    try {
      const builder = new DigestBuilder(q.bucketCount);
      await this.scan(snap, q.view, (r) => builder.add(r.id, r.version));
      return { seq: snap.position, cursor: this.cursorOf(snap.position), buckets: builder.buckets, recordCount: builder.count };
    } finally {
      await snap.close();
    }
  }

  async digestBucket(q: DigestQuery & { bucket: number }): Promise<BucketResult> {
    const snap = await this.snapshotAt(q.minCursor);
    try {
      const records: EventRecord[] = [];
      await this.scan(snap, q.view, (r) => {
        if (bucketOf(r.id, q.bucketCount) !== q.bucket) return;
        if (records.length >= MAX_BUCKET_RECORDS) {
          throw new DomainError("failed_precondition", `bucket ${q.bucket} of ${q.bucketCount} holds more than ${MAX_BUCKET_RECORDS} records; ask with more buckets`, {
            reason: "BUCKET_TOO_LARGE",
            metadata: { bucket: String(q.bucket), bucket_count: String(q.bucketCount), max_records: String(MAX_BUCKET_RECORDS) },
          });
        }
        records.push(viewRecord(q.view, r));
      });
      return { cursor: this.cursorOf(snap.position), records };
    } finally {
      await snap.close();
    }
  }

  private settings(): StreamSettings {
    return this.config.current().streams;
  }

  private batch(): Batch {
    return new Batch(this.settings().maxMessageBytes, this.config.current().schemas);
  }

  private encode(ev: StreamEvent, cursor: string): Uint8Array {
    return encodeEvent(ev, cursor, this.config.current().schemas);
  }

  private heartbeat(sub: Subscriber): Uint8Array {
    sub.sentCursor = this.cursorOf(sub.position);
    sub.lastSentAtMs = Date.now();
    return encodeHeartbeat(sub.sentCursor, sub.lastSentAtMs);
  }

  private sent(sub: Subscriber, cursor: string): void {
    if (cursor) sub.sentCursor = cursor;
    sub.lastSentAtMs = Date.now();
  }

  /** The bytes of a message about to be sent, noting its cursor as the subscriber's. */
  private deliver(sub: Subscriber, m: Message): Uint8Array {
    this.sent(sub, m.cursor);
    return m.bytes;
  }

  private endingError(sub: Subscriber, ending: Ending): DomainError {
    switch (ending.kind) {
      case "overflow":
        return subscriberTooSlow(sub.sentCursor);
      case "expired":
        return cursorExpired(this.cursorOf(ending.floor), ending.floor, "this node's change-log reader fell behind retention");
      case "closed":
        return new DomainError("unavailable", "the stream was closed by the server; resume from the last cursor on any node", { reason: "STREAM_CLOSED" });
    }
  }

  /** Catch-up, live delivery and view swaps, until the client leaves or the stream is ended. */
  private async *follow(sub: Subscriber, heartbeatMs: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    const maxBytes = () => this.settings().maxMessageBytes;
    for (;;) {
      if (signal.aborted) return;
      if (sub.ending) throw this.endingError(sub, sub.ending);
      if (sub.pendingView) {
        yield* this.swap(sub);
        continue;
      }
      if (!sub.live) {
        if (this.hub.attach(sub)) continue;
        yield* this.catchUp(sub, null);
        if (Date.now() - sub.lastSentAtMs >= heartbeatMs) yield this.heartbeat(sub);
        continue;
      }
      await sub.wait(sub.lastSentAtMs + heartbeatMs);
      if (sub.ending || signal.aborted || sub.pendingView) continue;
      const events = sub.take(maxBytes());
      if (events.length > 0) {
        this.sent(sub, events[events.length - 1]!.cursor);
        yield joinEvents(events.map((e) => e.bytes));
      } else if (Date.now() - sub.lastSentAtMs >= heartbeatMs) {
        yield this.heartbeat(sub);
      }
    }
  }

  /**
   * One page of history for a subscriber behind the hub, from memory when the
   * hub still holds it, else from PostgreSQL; `upTo` bounds it (null: none).
   */
  private async *catchUp(sub: Subscriber, upTo: bigint | null): AsyncGenerator<Uint8Array> {
    const bound = upTo ?? (1n << 63n) - 1n;
    let changes: LogChange[] | null = upTo === null || upTo <= this.hub.position ? this.hub.recentAfter(sub.position, PAGE, bound) : null;
    if (changes === null) {
      const limit = sub.pages.next;
      const page = await this.historyPage(sub, limit, bound);
      sub.pages.observe(page.changes.length, page.size);
      if (page.floor > sub.position) {
        throw cursorExpired(this.cursorOf(page.floor), page.floor, "retention deleted changes this stream had not read yet");
      }
      changes = page.changes;
      // A full page means more history: read the next one while this one is
      // encoded and sent, so PostgreSQL and this process work at the same time.
      if (changes.length >= limit) this.readAhead(sub, changes[changes.length - 1]!.seq, bound);
    }
    const batch = this.batch();
    for (const c of changes) {
      const ev = changeEvent(c, sub.view);
      if (!ev) continue;
      const cursor = this.cursorOf(c.seq);
      const full = batch.add(ev, cursor);
      if (full) yield this.deliver(sub, full);
    }
    const last = batch.finish();
    if (last) yield this.deliver(sub, last);
    const end = changes[changes.length - 1];
    if (end) {
      sub.position = end.seq;
      sub.processedCommitMs = end.commitTime.getTime();
    } else if (upTo !== null) {
      sub.position = upTo; // nothing in (position, upTo]
    }
  }

  /** The page of history after the subscriber's position: the one read ahead for it if that is the one, else read now. */
  private historyPage(sub: Subscriber, limit: number, upTo: bigint): Promise<LogPage> {
    const ahead = sub.readAhead;
    sub.readAhead = null;
    const images = sub.view.judgesByFields;
    // A page read for a view since swapped may lack the images the new one needs.
    if (ahead && ahead.after === sub.position && ahead.upTo === upTo && ahead.images === images) return ahead.page;
    return this.reader.readPage(sub.position, limit, upTo, images);
  }

  private readAhead(sub: Subscriber, after: bigint, upTo: bigint): void {
    const images = sub.view.judgesByFields;
    const page = this.reader.readPage(after, sub.pages.next, upTo, images);
    // Its error surfaces when the page is used; unused, it is dropped.
    page.catch(() => undefined);
    sub.readAhead = { after, upTo, images, page };
  }

  private async *snapshot(sub: Subscriber): AsyncGenerator<Uint8Array> {
    const snap = await this.reader.openSnapshot();
    try {
      const batch = this.batch();
      let count = 0;
      for (const collection of sub.view.collections) {
        for await (const records of recordPages(snap, sub.view.tenant, collection, sub.view.prefilter(collection))) {
          for (const r of records) {
            if (!sub.view.admits(r)) continue;
            count++;
            const full = batch.add({ kind: "snapshot", record: viewRecord(sub.view, r) }, "");
            if (full) yield this.deliver(sub, full);
          }
        }
      }
      sub.position = snap.position;
      const cursor = this.cursorOf(snap.position);
      const full = batch.addEncoded(encodeSnapshotEnd(cursor, count), cursor);
      if (full) yield this.deliver(sub, full);
      yield this.deliver(sub, batch.finish()!);
    } finally {
      await snap.close();
    }
  }

  /**
   * Moves a subscriber to its pending view: it finishes the changes up to a
   * snapshot position under the old view, then gets the differences between
   * the two views at that position, then continues under the new view.
   */
  private async *swap(sub: Subscriber): AsyncGenerator<Uint8Array> {
    const from = sub.view;
    const to = sub.pendingView!;
    sub.pendingView = null;
    this.hub.detach(sub);
    for (let events = sub.take(Infinity); events.length > 0; events = sub.take(Infinity)) {
      this.sent(sub, events[events.length - 1]!.cursor);
      yield joinEvents(events.map((e) => e.bytes));
    }
    const snap = await this.reader.openSnapshot();
    try {
      while (sub.position < snap.position) yield* this.catchUp(sub, snap.position);
      const cursor = this.cursorOf(snap.position);
      const batch = this.batch();
      for (const collection of new Set([...from.collections, ...to.collections])) {
        for await (const records of recordPages(snap, to.tenant, collection, {})) {
          for (const r of records) {
            const ev = viewSwapEvent(r, from, to);
            if (!ev) continue;
            const full = batch.add(ev, cursor);
            if (full) yield this.deliver(sub, full);
          }
        }
      }
      const last = batch.finish();
      if (last) yield this.deliver(sub, last);
      sub.view = to;
      sub.position = snap.position;
    } finally {
      await snap.close();
    }
  }

  private async snapshotAt(minCursor: string): Promise<LogSnapshot> {
    let min = 0n;
    if (minCursor) {
      const c = decodeCursor(minCursor, "min_cursor");
      if (c.databaseId !== this.reader.databaseId) {
        const { floor } = await this.reader.bounds();
        throw cursorExpired(this.cursorOf(floor), floor, "the cursor belongs to another database", { cursor_database_id: c.databaseId });
      }
      min = c.seq;
    }
    const snap = await this.reader.openSnapshot();
    if (snap.position < min) {
      await snap.close();
      throw cursorExpired(this.cursorOf(snap.floor), snap.floor, "min_cursor is ahead of this database's change log");
    }
    return snap;
  }

  /** Every record of the view's (one) collection it admits, in id order. */
  private async scan(snap: LogSnapshot, view: SubscriberView, each: (r: StoredRecord) => void): Promise<void> {
    const collection = view.collections[0]!;
    for await (const records of recordPages(snap, view.tenant, collection, view.prefilter(collection))) {
      for (const r of records) if (view.admits(r)) each(r);
    }
  }
}

/** Non-deleted records of a collection in id order, a page at a time. */
async function* recordPages(
  snap: LogSnapshot,
  tenant: string,
  collection: string,
  equals: Readonly<Record<string, StoredValue>>,
): AsyncGenerator<StoredRecord[]> {
  let afterId = "";
  for (;;) {
    const records = await snap.records({ tenant, collection, equals: { ...equals }, afterId, limit: PAGE });
    yield records;
    if (records.length < PAGE) return;
    afterId = records[records.length - 1]!.id;
  }
}
