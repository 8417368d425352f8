// The one change-log reader of a node. It reads `seq > position` in pages
// (safe: seq order is commit order, see services/store/sequencing.ts) and
// publishes each page to the hub. It reads when PostgreSQL notifies a commit
// (LISTEN), and at least every poll interval in case a notification was lost
// or the listening connection is down; either way it never skips a row.
import type { ChangeListener, ChangeReader } from "../store/change-reader.js";
import type { ChangeHub } from "./hub.js";
import { PageSizer } from "./page-size.js";
import type { StreamSettings } from "./settings.js";

export interface TailerLogger {
  warn(obj: object, msg: string): void;
}

/**
 * Changes published at once. Between chunks the tailer yields to the event
 * loop so subscribers can hand what they were given to the transport: a
 * burst (one large write) then does not count whole against a fast
 * subscriber's buffer.
 */
const PUBLISH_CHUNK = 128;
/** Longest wait before retrying after a failed read or listen. */
const MAX_BACKOFF_MS = 5_000;

export class ChangeTailer {
  private stopped = false;
  private notified = false;
  /** A read is wanted without the batch delay (readNow). */
  private urgent = false;
  private sleeper: { wakeable: "notified" | "urgent" | "stop"; done: () => void } | null = null;
  private listener: ChangeListener | null = null;
  private loop: Promise<void> | null = null;
  private listenRetry: NodeJS.Timeout | null = null;
  private readonly pages = new PageSizer();
  /** Reads done (tests and stats). */
  reads = 0;
  /** The log's last seq as of the latest read. */
  private tail = 0n;

  constructor(
    private readonly reader: ChangeReader,
    private readonly hub: ChangeHub,
    private readonly settings: () => StreamSettings,
    private readonly log: TailerLogger,
    /** Whether anyone streams from this node (live or catching up); else rows are not read, see skipToEnd. */
    private readonly wanted: () => boolean = () => true,
  ) {}

  /** Starts at the current end of the log. */
  async start(): Promise<void> {
    const { tail } = await this.reader.bounds();
    this.hub.reset(tail);
    await this.listen(0);
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.listenRetry) clearTimeout(this.listenRetry);
    this.sleeper?.done();
    await this.loop;
    await this.listener?.close();
  }

  /** Reads now (a commit notification, or a test); the batch delay still lets a burst land. */
  wake(): void {
    this.notified = true;
    if (this.sleeper?.wakeable === "notified") this.sleeper.done();
  }

  /**
   * Reads now, skipping the batch delay: this node committed a change the hub
   * cannot place yet (a gap before it), and a writer waits for it. Every
   * lower seq is committed already (see services/store/sequencing.ts), so
   * one read fills the gap. A retry backoff is not cut short.
   */
  readNow(): void {
    this.notified = true;
    this.urgent = true;
    if (this.sleeper && this.sleeper.wakeable !== "stop") this.sleeper.done();
  }

  private async listen(attempt: number): Promise<void> {
    if (this.stopped) return;
    try {
      this.listener = await this.reader.listen(
        () => this.wake(),
        (e) => {
          this.log.warn({ err: e }, "change-log listener lost; polling until it reconnects");
          this.listener = null;
          this.scheduleListen(1);
        },
      );
      // Commits between the old listener's death and now went unnoticed.
      if (attempt > 0) this.wake();
    } catch (e) {
      this.log.warn({ err: e, attempt }, "cannot listen for change-log commits; polling meanwhile");
      this.scheduleListen(attempt + 1);
    }
  }

  private scheduleListen(attempt: number): void {
    if (this.stopped || this.listenRetry) return;
    this.listenRetry = setTimeout(() => {
      this.listenRetry = null;
      void this.listen(attempt);
    }, Math.min(MAX_BACKOFF_MS, 100 * 2 ** attempt));
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.drain();
        failures = 0;
      } catch (e) {
        failures++;
        this.log.warn({ err: e, failures }, "change-log read failed; retrying");
        await this.sleep(Math.min(MAX_BACKOFF_MS, 50 * 2 ** failures), "stop");
        continue;
      }
      await this.sleep(this.settings().pollIntervalMs, "notified");
      // Let a burst of commits land, so one read (and one message per subscriber) carries them all.
      const delay = this.settings().batchDelayMs;
      if (this.notified && delay > 0 && !this.stopped) await this.sleep(delay, "urgent");
    }
  }

  private async drain(): Promise<void> {
    this.notified = false;
    this.urgent = false;
    if (!this.wanted() && (await this.skipToEnd())) return;
    for (;;) {
      const limit = this.pages.next;
      const page = await this.reader.readPage(this.hub.position, limit);
      this.pages.observe(page.changes.length, page.size);
      if (page.tail > this.tail) this.tail = page.tail;
      this.reads++;
      if (page.floor > this.hub.position) {
        // Retention deleted changes this node never read: its subscribers cannot continue.
        this.log.warn({ floor: page.floor.toString(), position: this.hub.position.toString() }, "change log floor passed the tailer");
        this.hub.expire(page.floor);
        continue;
      }
      for (let i = 0; i < page.changes.length; i += PUBLISH_CHUNK) {
        if (i > 0) await new Promise((resolve) => setImmediate(resolve));
        this.hub.publish(page.changes.slice(i, i + PUBLISH_CHUNK));
      }
      if (page.changes.length < limit || this.stopped) return;
    }
  }

  /**
   * With no stream open on this node nobody needs the changes themselves:
   * the hub moves to the log's end for one index probe instead of reading
   * and parsing every row (a busy writer without subscribers spent about a
   * twentieth of its CPU reading its own writes back). False when a stream
   * opened meanwhile: the caller then reads the rows.
   */
  private async skipToEnd(): Promise<boolean> {
    const end = await this.reader.end();
    this.reads++;
    if (end.tail > this.tail) this.tail = end.tail;
    return !this.wanted() && this.hub.skipTo(end.tail, end.tailCommitTime?.getTime() ?? this.hub.stats().positionCommitMs);
  }

  /** Committed changes not yet published to the hub, as of the latest read. */
  behind(): bigint {
    const d = this.tail - this.hub.position;
    return d > 0n ? d : 0n;
  }

  /** Sleeps `ms`, ended early by `stop()` and by what `wakeable` names: a notification (or more), an urgent read, or nothing else. */
  private sleep(ms: number, wakeable: "notified" | "urgent" | "stop"): Promise<void> {
    if (this.stopped || (wakeable === "notified" && this.notified) || (wakeable === "urgent" && this.urgent)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleeper = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleeper = { wakeable, done };
    });
  }
}
