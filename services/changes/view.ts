// What one subscriber may see: the seam between streams and permissions.
//
// A SubscriberView decides which records are in view (row scope, filters) and
// what of them is shown (field selection, masks). The hub evaluates views on
// the full state of a record before and after each change, so a record that
// moves in or out of view produces enter_scope / leave_scope. Views with the
// same `key` must behave identically: the hub groups subscribers by key and
// encodes each event once per group, not once per subscriber.
//
// FilterView below is a request's filters and field selection alone;
// AccessView (./access-view.ts) narrows it by the caller's access policy
// (row scope, readable fields, masks). ChangeStreams.replaceViews swaps the
// view of open streams (on a policy change), which then receive enter/leave
// events for records whose visibility changed.
import type { StoredValue } from "../schema/types.js";
import { storedEquals } from "../schema/values.js";

/** A record's state as views judge it. */
export interface RecordState {
  collection: string;
  id: string;
  version: number;
  fields: Readonly<Record<string, StoredValue>>;
}

/** What a view shows of a record's fields. */
export interface Shown {
  /** Visible fields; masked ones hold their mask's text. */
  fields: Record<string, StoredValue>;
  /** Visible fields whose value is masked. */
  masked: readonly string[];
  /** Sensitive fields shown in clear that hold a value (views under the access policy say; GetDigestBucket audits them). */
  unmaskedSensitive?: readonly string[];
}

export interface SubscriberView {
  /** Equal keys ⇒ identical behaviour (events are encoded once per key). Include the tenant. */
  readonly key: string;
  readonly tenant: string;
  /** The collections this view streams. */
  readonly collections: readonly string[];
  /**
   * Whether the view judges records by their fields (filters, row scopes).
   * If not, nothing but a change's own fields is read, and a subscriber
   * catching up from PostgreSQL does not fetch the record images.
   */
  readonly judgesByFields: boolean;
  /** Is this (non-deleted) record in view? Pure and fast: called per change. */
  admits(record: RecordState): boolean;
  /**
   * What the view shows of `fields` (the whole record, or a change's fields)
   * for a record in view whose full state is `record`: which fields are
   * visible and how they are masked can depend on the record (the grants
   * whose row scope admits it).
   */
  show(record: RecordState, fields: Readonly<Record<string, StoredValue>>): Shown;
  /** Whether a field of a record in view is visible (cleared-field lists and clocks are filtered with it). */
  fieldVisible(record: RecordState, field: string): boolean;
  /**
   * Names how a record in view is shown (which fields, which masks). When a
   * change alters it, the subscriber gets the record again whole
   * (enter_scope), since a delta would leave fields it can no longer see, or
   * miss fields it now can.
   */
  shape(record: RecordState): string;
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
  readonly judgesByFields: boolean;
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
    this.judgesByFields = filters.some((f) => Object.keys(f.equals).length > 0);
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

  show(record: RecordState, fields: Readonly<Record<string, StoredValue>>): Shown {
    return { fields: this.select(record.collection, fields), masked: [] };
  }

  /** The selected fields among `fields`. */
  select(collection: string, fields: Readonly<Record<string, StoredValue>>): Record<string, StoredValue> {
    const visible = this.byCollection.get(collection)?.fields;
    if (visible === null) return fields as Record<string, StoredValue>;
    const out: Record<string, StoredValue> = {};
    if (!visible) return out;
    for (const name in fields) if (visible.has(name)) out[name] = fields[name]!;
    return out;
  }

  fieldVisible(record: RecordState, field: string): boolean {
    return this.selects(record.collection, field);
  }

  /** Whether the request selected `field` of `collection`. */
  selects(collection: string, field: string): boolean {
    const c = this.byCollection.get(collection);
    return c !== undefined && (c.fields === null || c.fields.has(field));
  }

  shape(): string {
    return "";
  }

  prefilter(collection: string): Readonly<Record<string, StoredValue>> {
    return this.byCollection.get(collection)?.prefilter ?? {};
  }
}
