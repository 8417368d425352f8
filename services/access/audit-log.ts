// The audit writer. Events that may be frequent (reads of unmasked sensitive
// fields, refused calls) are queued and appended in batches off the request
// path; events that must not be lost before the action proceeds (exports,
// policy changes) are appended and awaited with `recordNow`. Appends are
// serialized, so the chain grows in the order events were recorded.
import type { AuditEntry, AuditEvent } from "./audit-chain.js";

/** Where entries are appended (services/store/audit-store.ts AuditStore). */
export interface AuditSink {
  append(events: readonly AuditEvent[]): Promise<AuditEntry[]>;
}

export interface AuditLogger {
  error(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface AuditLogOptions {
  /** Longest wait of a queued event (default 200 ms). */
  flushMs?: number;
  /** A batch is written at once when it holds this many (default 500). */
  maxBatch?: number;
  /** Queued events kept while the database is unreachable; older ones are dropped and counted (default 100,000). */
  maxQueued?: number;
}

export class AuditLog {
  private queue: AuditEvent[] = [];
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  private dropped = 0;
  private closed = false;
  private readonly flushMs: number;
  private readonly maxBatch: number;
  private readonly maxQueued: number;

  /** `sink` returns null until the database is ready; events wait meanwhile. */
  constructor(
    private readonly sink: () => AuditSink | null,
    private readonly log: AuditLogger,
    opts: AuditLogOptions = {},
  ) {
    this.flushMs = opts.flushMs ?? 200;
    this.maxBatch = opts.maxBatch ?? 500;
    this.maxQueued = opts.maxQueued ?? 100_000;
  }

  /** Queues an event; it is written within `flushMs` (or sooner, with a full batch). */
  record(event: AuditEvent): void {
    if (this.closed) return;
    this.queue.push(event);
    if (this.queue.length > this.maxQueued) {
      this.dropped += this.queue.length - this.maxQueued;
      this.queue.splice(0, this.queue.length - this.maxQueued);
    }
    if (this.queue.length >= this.maxBatch) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  /** Writes the event (after everything queued before it); rejects when it could not be written. */
  async recordNow(event: AuditEvent): Promise<void> {
    this.queue.push(event);
    await this.flush(true);
  }

  /** Writes everything queued. With `strict`, a failure rejects (and the events stay queued). */
  flush(strict = false): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const run = this.writing.then(() => this.writeQueued(strict));
    this.writing = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.flush().catch(() => undefined);
  }

  private async writeQueued(strict: boolean): Promise<void> {
    if (this.dropped > 0) {
      this.log.error({ dropped: this.dropped }, "audit events dropped: the database was unreachable and the queue was full");
      this.dropped = 0;
    }
    const sink = this.sink();
    if (!sink) {
      if (strict) throw new Error("the audit log is not ready");
      if (this.queue.length > 0 && !this.timer && !this.closed) {
        this.timer = setTimeout(() => void this.flush(), this.flushMs);
        this.timer.unref();
      }
      return;
    }
    while (this.queue.length > 0) {
      const batch = this.queue.slice(0, this.maxBatch);
      try {
        await sink.append(batch);
      } catch (e) {
        this.log.error({ err: e, events: batch.length }, "audit append failed; will retry");
        if (!this.closed && !this.timer) {
          this.timer = setTimeout(() => void this.flush(), Math.max(this.flushMs, 1000));
          this.timer.unref();
        }
        if (strict) throw e;
        return;
      }
      this.queue.splice(0, batch.length);
    }
  }
}
