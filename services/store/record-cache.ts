// The records a node wrote lately, as it committed them, so that a batch of
// edits of those records can merge without first reading and locking them;
// and the writes of this node still in flight, which a batch touching the
// same records waits for.
//
// A hint, never the truth: the write that follows checks, under the row
// locks it takes, that each record is still at the version and update time
// kept here (migration 0012), and a batch that finds one moved is retried
// the locking way. So a stale entry (another node wrote the record, a commit
// whose outcome was lost) costs a retry, not a lost update.
//
// Waiting matters for order: a batch that merged without locking takes its
// row locks only when it writes, so a later batch that read under lock could
// otherwise lock and commit first, and the earlier batch, retried, would be
// applied after it.
//
// Bounded by the size of the records' stored JSON; the records kept longest
// go first. (Not least recently used: moving an entry on every hit cost the
// write path more than the order was worth.)
import type { StoredRecord } from "../records/model.js";

interface Entry {
  record: StoredRecord;
  bytes: number;
}

export class RecordCache {
  /** By recordKeyString, in the order they were first kept. */
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  /** Records being written by a batch of this node: settles when it has committed or failed. */
  private readonly inflight = new Map<string, Promise<unknown>>();
  /** Writes of batches that merged without locking, in flight. */
  private readonly unlockedWrites = new Set<Promise<unknown>>();

  /** `maxBytes`: budget for the records' stored JSON (fields and clocks); 0 keeps nothing. */
  constructor(private readonly maxBytes: number) {}

  get enabled(): boolean {
    return this.maxBytes > 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The record as last committed, unless a batch is writing it now. */
  get(key: string): StoredRecord | undefined {
    return this.inflight.has(key) ? undefined : this.entries.get(key)?.record;
  }

  /**
   * A batch writes these records until `done` settles (whatever its
   * outcome); `unlocked`: it merged from kept records and takes its row locks
   * only as it writes.
   */
  writing(keys: readonly string[], done: Promise<unknown>, unlocked: boolean): void {
    // One settled-promise for the batch; a key another batch still writes waits for both.
    const settled = done.then(ignore, ignore);
    const marks: [string, Promise<unknown>][] = [];
    for (const key of keys) {
      const earlier = this.inflight.get(key);
      const mark = earlier ? Promise.all([earlier, settled]) : settled;
      this.inflight.set(key, mark);
      marks.push([key, mark]);
    }
    if (unlocked) this.unlockedWrites.add(settled);
    void settled.then(() => {
      for (const [key, mark] of marks) if (this.inflight.get(key) === mark) this.inflight.delete(key);
      this.unlockedWrites.delete(settled);
    });
  }

  /**
   * Settles once the writes in flight of these records have (null when
   * there are none); with `holdersUnknown`, also every write in flight that
   * took no locks yet (the batch locks records it cannot name beforehand).
   */
  writesBefore(keys: readonly string[], holdersUnknown: boolean): Promise<unknown> | null {
    const pending: Promise<unknown>[] = [];
    for (const key of keys) {
      const p = this.inflight.get(key);
      if (p) pending.push(p);
    }
    if (holdersUnknown) pending.push(...this.unlockedWrites);
    // Every promise here resolves (failed writes included).
    return pending.length === 0 ? null : pending.length === 1 ? pending[0]! : Promise.all(pending);
  }

  /**
   * Keeps `record` (not copied: records are never modified in place) as a
   * batch committed it; an older version than the one kept is ignored.
   */
  committed(key: string, record: StoredRecord, bytes: number): void {
    const entry = this.entries.get(key);
    if (entry && entry.record.version > record.version) return;
    if (bytes > this.maxBytes) return this.forget(key);
    if (entry) {
      this.bytes += bytes - entry.bytes;
      entry.record = record;
      entry.bytes = bytes;
    } else {
      this.entries.set(key, { record, bytes });
      this.bytes += bytes;
    }
    if (this.bytes > this.maxBytes) this.evict();
  }

  /** Drops the record (a write of it failed, or it was read under lock and may have been stale). */
  forget(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }

  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) return;
      this.entries.delete(key);
      this.bytes -= entry.bytes;
    }
  }
}

function ignore(): void {}
