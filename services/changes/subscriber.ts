// One open stream's state: its view, how far through the log it is, and the
// bounded buffer of encoded events the hub has queued for it but its client
// has not yet taken. A subscriber whose buffer overflows is ended (its client
// resumes from the last cursor it was sent), so a slow client costs the
// server at most its buffer, never unbounded memory.
import type { LogPage } from "../store/change-reader.js";
import type { EncodedEvent } from "./encode.js";
import { PageSizer } from "./page-size.js";
import type { SubscriberView } from "./view.js";

export interface BufferLimits {
  maxEvents: number;
  maxBytes: number;
}

/** A history read started ahead of need: the changes after `after`, up to `upTo`. */
export interface PageRead {
  after: bigint;
  upTo: bigint;
  /** Read with record images (for a view that judges records by their fields). */
  images: boolean;
  page: Promise<LogPage>;
}

/** Why a subscriber stops receiving live events. */
export type Ending = { kind: "overflow" } | { kind: "expired"; floor: bigint } | { kind: "closed" };

let nextId = 1;
/** Placeholder for slots already taken (never read: they are below head). */
const TAKEN = null as unknown as EncodedEvent;

export class Subscriber {
  readonly id = nextId++;
  /** Every change up to here has been judged for this subscriber (visible ones queued or sent). */
  position: bigint;
  /** The last cursor handed to the transport (event or heartbeat): where the client resumes. */
  sentCursor: string;
  lastSentAtMs = Date.now();
  /** Commit time of the last change this subscriber has been brought up to (0: none yet). */
  processedCommitMs = 0;
  /** Set by the hub: the stream stops taking live events. */
  ending: Ending | null = null;
  /** A replacement view waiting to be swapped in (see ChangeStreams.replaceViews). */
  pendingView: SubscriberView | null = null;
  live = false;
  /** Page sizes of this subscriber's history reads. */
  readonly pages = new PageSizer();
  /**
   * The next page of history, read while the current one is encoded and sent
   * (catching up only; services/changes/streams.ts). Used only if the
   * subscriber then asks for exactly that page.
   */
  readAhead: PageRead | null = null;

  private queue: EncodedEvent[] = [];
  private head = 0;
  private bytes = 0;
  private waiter: (() => void) | null = null;
  private aborted = false;
  /** When the current wait ends at the latest (epoch ms). */
  private deadlineMs = 0;
  /** One timer for all waits, re-armed only when it fires before the deadline. */
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = 0;

  constructor(
    public view: SubscriberView,
    position: bigint,
    cursor: string,
    private readonly limits: BufferLimits,
  ) {
    this.position = position;
    this.sentCursor = cursor;
  }

  get buffered(): number {
    return this.queue.length - this.head;
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  /** Queues a live event; false (and the subscriber is ended) when that overflows the buffer. */
  push(e: EncodedEvent): boolean {
    this.position = e.seq;
    this.processedCommitMs = e.commitMs;
    this.queue.push(e);
    this.bytes += e.bytes.length;
    if (this.buffered > this.limits.maxEvents || this.bytes > this.limits.maxBytes) {
      this.end({ kind: "overflow" });
      return false;
    }
    this.wake();
    return true;
  }

  /** The hub has judged every change up to `position` (this subscriber saw none of the later ones). */
  advance(position: bigint, commitMs: number): void {
    if (position > this.position) {
      this.position = position;
      this.processedCommitMs = commitMs;
    }
  }

  /** Stops live delivery; pending events are dropped. */
  end(ending: Ending): void {
    if (this.ending) return;
    this.ending = ending;
    this.queue = [];
    this.head = 0;
    this.bytes = 0;
    this.wake();
  }

  /** Takes queued events, oldest first, up to about `maxBytes` (at least one). */
  take(maxBytes: number): EncodedEvent[] {
    const out: EncodedEvent[] = [];
    let size = 0;
    while (this.head < this.queue.length) {
      const e = this.queue[this.head]!;
      if (out.length > 0 && size + e.bytes.length > maxBytes) break;
      out.push(e);
      size += e.bytes.length;
      this.queue[this.head++] = TAKEN; // release the bytes as soon as they are sent

    }
    this.bytes -= size;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  /** Ends every wait, now and later, once `signal` aborts (one listener for the stream's life). */
  watch(signal: AbortSignal): void {
    const abort = () => {
      this.aborted = true;
      this.wake();
    };
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
  }

  /**
   * Resolves when events are queued, the subscriber is ended or woken, the
   * watched signal aborts, or at `deadlineMs` (epoch ms). A live stream waits
   * once per delivery: a timer and an abort listener per wait cost more than
   * the delivery, so the subscriber keeps one timer across waits.
   */
  wait(deadlineMs: number): Promise<void> {
    if (this.buffered > 0 || this.ending || this.pendingView || this.aborted) return Promise.resolve();
    this.deadlineMs = deadlineMs;
    if (this.timer && this.timerAtMs > deadlineMs) this.clearTimer();
    if (!this.timer) this.armTimer();
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** Stops the timer (the stream is over). */
  dispose(): void {
    this.readAhead = null;
    this.clearTimer();
    this.wake();
  }

  private armTimer(): void {
    this.timerAtMs = this.deadlineMs;
    this.timer = setTimeout(this.onTimer, Math.max(0, this.deadlineMs - Date.now()));
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    if (!this.waiter) return;
    if (Date.now() >= this.deadlineMs) this.wake();
    else this.armTimer();
  };

  wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.();
  }
}
