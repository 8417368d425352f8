// A catching-up subscriber's events cut into stream messages: history and
// snapshots are sent in messages of many events, up to a byte bound.
import type { SchemaSet } from "../schema/types.js";
import { WireWriter } from "../platform/wire/writer.js";
import { writeEvent } from "./encode.js";
import type { StreamEvent } from "./events.js";

/**
 * Writers start small and grow with their events: a subscriber a few events
 * behind (most catch-ups) holds little while its stream waits to send. A
 * finished batch's writer, grown to a message's size, is kept for the next
 * batch (a few of them), so catching up many pages does not grow one anew
 * for every page.
 */
const INITIAL_BYTES = 16 * 1024;
const MAX_IDLE = 4;
const idle: WireWriter[] = [];

/** A message ready to send, and the last cursor in it ("" when none, e.g. snapshot records). */
export interface Message {
  bytes: Uint8Array;
  cursor: string;
}

/**
 * Collects framed events into messages of at most `maxBytes` (an event
 * bigger than that alone makes a message of its own). Events are encoded
 * straight into one buffer: no array per event, copied again into its
 * message (a tenth of a catching-up stream's CPU).
 */
export class Batch {
  private readonly w: WireWriter;
  private cursor = "";
  private done = false;

  constructor(
    private readonly maxBytes: number,
    private readonly schemas: SchemaSet,
  ) {
    this.w = idle.pop() ?? new WireWriter(INITIAL_BYTES);
  }

  /** Adds an event; returns the message it completed, if any (without this event). */
  add(ev: StreamEvent, cursor: string): Message | null {
    const start = this.end();
    writeEvent(this.w, ev, cursor, this.schemas);
    return this.added(start, cursor);
  }

  /** Adds an event already encoded and framed. */
  addEncoded(bytes: Uint8Array, cursor: string): Message | null {
    const start = this.end();
    this.w.raw(bytes);
    return this.added(start, cursor);
  }

  /** The last message, if any events are left; the batch is done (its buffer goes back for reuse). */
  finish(): Message | null {
    if (this.done) throw new Error("Batch.finish called twice");
    this.done = true;
    const last = this.w.length === 0 ? null : { bytes: this.w.take(this.w.length), cursor: this.cursor };
    if (idle.length < MAX_IDLE) idle.push(this.w.reset());
    return last;
  }

  /** Where the next event starts; a finished batch's writer belongs to another. */
  private end(): number {
    if (this.done) throw new Error("Batch.add after finish");
    return this.w.length;
  }

  /** The event written from `start` overflowed the message: the events before it go. */
  private added(start: number, cursor: string): Message | null {
    const out = start > 0 && this.w.length > this.maxBytes ? { bytes: this.w.take(start), cursor: this.cursor } : null;
    if (cursor) this.cursor = cursor;
    return out;
  }
}
