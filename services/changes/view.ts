// What one subscriber may see: the seam between streams and permissions.
//
// A SubscriberView decides which records are in view (row scope, filters) and
// what of them is shown (field selection, masks). The hub evaluates views on
// the full state of a record before and after each change, so a record that
// moves in or out of view produces enter_scope / leave_scope. Views with the
// same `key` must behave identically: the hub groups subscribers by key and
// encodes each event once per group, not once per subscriber.
//
// FilterView below is the unrestricted default built from a request's
// filters and field selection. A permission-aware implementation (row scope
// from the caller's policy, readable fields, masks) can wrap or replace it;
// ChangeStreams.replaceViews swaps the view of open streams, which then
// receive enter/leave events for records whose visibility changed.
import type { StoredValue } from "../schema/types.js";
import { storedEquals } from "../schema/values.js";

/** A record's state as views judge it. */
export interface RecordState {
  collection: string;
  id: string;
  version: number;
  fields: Readonly<Record<string, StoredValue>>;
}

export interface SubscriberView {
  /** Equal keys ⇒ identical behaviour (events are encoded once per key). Include the tenant. */
  readonly key: string;
  readonly tenant: string;
  /** The collections this view streams. */
  readonly collections: readonly string[];
  /** Is this (non-deleted) record in view? Pure and fast: called per change. */
  admits(record: RecordState): boolean;
  /** The visible fields among `fields`, with masked values where the view masks them. */
  project(collection: string, fields: Readonly<Record<string, StoredValue>>): Record<string, StoredValue>;
  /** Whether a field name is visible (cleared-field lists and clocks are filtered with it). */
  fieldVisible(collection: string, field: string): boolean;
  /**
   * Equality conditions every admitted record of `collection` satisfies, so
   * the store can pre-filter in SQL ({} when none). `admits` still decides.
   */
  prefilter(collection: string): Readonly<Record<string, StoredValue>>;
}

/** One collection of a FilterView. */
export interface CollectionFilter {
  collection: string;
  /** Field equality conditions, all of which must hold. */
  equals: Readonly<Record<string, StoredValue>>;
  /** Visible fields; null: all. */
  fields: readonly string[] | null;
}

/** The unrestricted view: a request's equality filters and field selection. */
export class FilterView implements SubscriberView {
  readonly key: string;
  readonly collections: readonly string[];
  private readonly byCollection: ReadonlyMap<string, { equals: [string, StoredValue][]; fields: ReadonlySet<string> | null; prefilter: Readonly<Record<string, StoredValue>> }>;

  constructor(
    readonly tenant: string,
    filters: readonly CollectionFilter[],
  ) {
    const sorted = [...filters].sort((a, b) => (a.collection < b.collection ? -1 : a.collection > b.collection ? 1 : 0));
    this.collections = sorted.map((f) => f.collection);
    this.byCollection = new Map(
      sorted.map((f) => [
        f.collection,
        {
          equals: Object.entries(f.equals),
          fields: f.fields === null ? null : new Set(f.fields),
          prefilter: f.equals,
        },
      ]),
    );
    this.key = JSON.stringify([
      "filter",
      tenant,
      sorted.map((f) => [
        f.collection,
        Object.entries(f.equals).sort(([a], [b]) => (a < b ? -1 : 1)),
        f.fields === null ? null : [...new Set(f.fields)].sort(),
      ]),
    ]);
  }

  admits(record: RecordState): boolean {
    const c = this.byCollection.get(record.collection);
    if (!c) return false;
    for (const [field, value] of c.equals) {
      const v = record.fields[field];
      if (v === undefined || !storedEquals(v, value)) return false;
    }
    return true;
  }

  project(collection: string, fields: Readonly<Record<string, StoredValue>>): Record<string, StoredValue> {
    const visible = this.byCollection.get(collection)?.fields;
    if (visible === null) return fields as Record<string, StoredValue>;
    const out: Record<string, StoredValue> = {};
    if (!visible) return out;
    for (const name in fields) if (visible.has(name)) out[name] = fields[name]!;
    return out;
  }

  fieldVisible(collection: string, field: string): boolean {
    const c = this.byCollection.get(collection);
    return c !== undefined && (c.fields === null || c.fields.has(field));
  }

  prefilter(collection: string): Readonly<Record<string, StoredValue>> {
    return this.byCollection.get(collection)?.prefilter ?? {};
  }
}
