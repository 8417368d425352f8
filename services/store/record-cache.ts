// The records a node wrote lately, as it committed them, so that a batch of
// edits of those records can merge without first reading and locking them.
//
// A hint, never the truth: the write that follows checks, under the row
// locks it takes, that each record is still at the version kept here
// (migration 0012), and a batch that finds one moved is retried the locking
// way. So a stale entry (another node wrote the record, a commit whose
// outcome was lost) costs a retry, not a lost update.
//
// Bounded by the size of the records' stored JSON; the records kept longest
// go first. (Not least recently used: moving an entry on every hit cost the
// write path more than the order was worth.)
import type { StoredRecord } from "../records/model.js";

interface Entry {
  record: StoredRecord;
  bytes: number;
  /** Batches writing the record now: until they commit, it is not known (a miss). */
  writers: number;
}

export class RecordCache {
  /** By recordKeyString, in the order they were first kept. */
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

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
    const entry = this.entries.get(key);
    return entry && entry.writers === 0 ? entry.record : undefined;
  }

  /** A batch starts writing the record: it is a miss until `committed` or `forget`. */
  writing(key: string): void {
    const entry = this.entries.get(key);
    if (entry) entry.writers++;
  }

  /**
   * Keeps `record` (not copied: records are never modified in place) as a
   * batch that called `writing` for it (or created it) committed it.
   */
  committed(key: string, record: StoredRecord, bytes: number): void {
    const entry = this.entries.get(key);
    if (bytes > this.maxBytes) return this.forget(key);
    if (entry) {
      this.bytes += bytes - entry.bytes;
      entry.record = record;
      entry.bytes = bytes;
      entry.writers = Math.max(0, entry.writers - 1);
    } else {
      this.entries.set(key, { record, bytes, writers: 0 });
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
