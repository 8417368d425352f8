// A batch cuts a subscriber's events into messages: together they hold every
// event's bytes in order, exactly as encoded one by one; none is empty or
// over the bound unless a single event is; each carries its last cursor.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Batch, type Message } from "../../../services/changes/batch.js";
import { encodeEvent, encodeSnapshotEnd } from "../../../services/changes/encode.js";
import type { StreamEvent } from "../../../services/changes/events.js";
import { parseSchemaSet } from "../../../services/schema/load.js";

const schemas = parseSchemaSet({ collections: { c: { fields: { s: { type: "string" }, n: { type: "int" } } } } });

const event = fc.oneof(
  fc.record({ note: fc.string({ maxLength: 600 }), n: fc.integer() }).map(
    ({ note, n }): StreamEvent => ({
      kind: "upsert",
      collection: "c",
      id: `r-${n}`,
      version: 2,
      set: { s: note, n },
      masked: [],
      cleared: [],
      clocks: {},
      created: false,
      commitTime: new Date(1_700_000_000_000),
    }),
  ),
  fc.integer({ min: 1, max: 1000 }).map((v): StreamEvent => ({ kind: "delete", collection: "c", id: "gone", version: v, commitTime: new Date(0) })),
);
/** Events with their cursors ("" for some, as snapshot records have), or an already encoded snapshot end. */
const entry = fc.record({ ev: fc.option(event, { nil: null, freq: 8 }), cursor: fc.oneof(fc.constant(""), fc.stringMatching(/^c1_[a-z]{4}$/)) });

describe("Batch", () => {
  it("cuts events into messages that hold every event in order, within the bound unless one event alone exceeds it", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 40 }), fc.integer({ min: 64, max: 2048 }), (entries, maxBytes) => {
        const batch = new Batch(maxBytes, schemas);
        const messages: { message: Message; events: number }[] = [];
        const expected: Uint8Array[] = [];
        const cursorAfter: string[] = [];
        let events = 0;
        let cursor = "";
        for (const { ev, cursor: c } of entries) {
          const bytes = ev ? encodeEvent(ev, c, schemas) : encodeSnapshotEnd(c, 3);
          const full = ev ? batch.add(ev, c) : batch.addEncoded(bytes, c);
          if (full) {
            messages.push({ message: full, events });
            events = 0;
          }
          expected.push(bytes);
          events++;
          if (c) cursor = c;
          cursorAfter.push(cursor);
        }
        const last = batch.finish();
        if (last) messages.push({ message: last, events });
        expect(() => batch.finish()).toThrow();

        expect(Buffer.concat(messages.map((m) => m.message.bytes))).toEqual(Buffer.concat(expected));
        let seen = 0;
        for (const { message, events: n } of messages) {
          expect(n).toBeGreaterThan(0);
          if (n > 1) expect(message.bytes.length).toBeLessThanOrEqual(maxBytes);
          seen += n;
          expect(message.cursor).toBe(cursorAfter[seen - 1]);
        }
        // A message is cut only when the next event would not fit in it.
        let offset = 0;
        for (const [i, { message, events: n }] of messages.entries()) {
          offset += n;
          if (i < messages.length - 1) expect(message.bytes.length + expected[offset]!.length).toBeGreaterThan(maxBytes);
        }
      }),
      { numRuns: 200 },
    );
  });
});
