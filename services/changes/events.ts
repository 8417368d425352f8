// What one change means to one view: pure, no I/O. A change is judged on the
// record's full state before and after it (the change row's image and prior
// values), so moving in or out of view is exact even when the change did not
// touch the fields the view filters on.
import type { StoredValue } from "../schema/types.js";
import { storedEquals } from "../schema/values.js";
import { DELETED_FIELD } from "../records/apply-mutation.js";
import type { FieldClock, StoredRecord } from "../records/model.js";
import { fieldsBefore } from "../store/change-image.js";
import type { LogChange } from "../store/change-reader.js";
import type { RecordState, SubscriberView } from "./view.js";

export type ScopeReason = "fields" | "policy" | "restored";

/** A record as an event carries it (enter_scope, snapshot): visible fields only. */
export interface EventRecord extends Omit<StoredRecord, "deleted" | "createTime" | "updateTime"> {
  /** Null when the event does not know it (enter_scope from a change). */
  createTime: Date | null;
  updateTime: Date | null;
  /** Fields shown masked. */
  masked: readonly string[];
  /** Sensitive fields shown in clear (see Shown). */
  unmaskedSensitive?: readonly string[];
}

export type StreamEvent =
  | {
      kind: "upsert";
      collection: string;
      id: string;
      version: number;
      set: Record<string, StoredValue>;
      /** Fields of `set` shown masked. */
      masked: readonly string[];
      cleared: string[];
      clocks: Record<string, FieldClock>;
      created: boolean;
      commitTime: Date;
    }
  | { kind: "delete"; collection: string; id: string; version: number; commitTime: Date }
  | { kind: "enter"; reason: ScopeReason; record: EventRecord; commitTime: Date | null }
  | { kind: "leave"; reason: ScopeReason; collection: string; id: string; version: number; commitTime: Date | null }
  | { kind: "snapshot"; record: EventRecord };

/** The record's state around one change, as views judge it. */
export interface ChangeStates {
  /** State before, or null when the record did not exist or was deleted. */
  before: RecordState | null;
  /** State after, or null when the change deleted the record. */
  after: RecordState | null;
  /** The change restored a deleted record. */
  restored: boolean;
}

/** True when the change altered the record (a change can record only conflict decisions). */
export function changesRecord(c: LogChange): boolean {
  return c.newVersion !== c.oldVersion;
}

/**
 * Before/after states of a change. Their fields are built on first read, so
 * a view that judges nothing by fields (no filters, no row scope) never
 * parses the change's image. Rows written before migration 0003 have no
 * image (nor do pages read for such views, services/store/change-reader.ts):
 * their after-state is approximated by the delta and their before-state is
 * unknown (treated as empty).
 */
export function changeStates(c: LogChange): ChangeStates {
  const restored = !c.created && !c.deleted && c.clocks[DELETED_FIELD] !== undefined;
  return {
    before: c.created || restored ? null : new LazyState(c, "before"),
    after: c.deleted ? null : new LazyState(c, "after"),
    restored,
  };
}

/** A record's state on one side of a change, its fields built on first read (a class: the hub makes two per change). */
class LazyState implements RecordState {
  readonly collection: string;
  readonly id: string;
  readonly version: number;
  private built: Readonly<Record<string, StoredValue>> | undefined;

  constructor(
    private readonly change: LogChange,
    private readonly side: "before" | "after",
  ) {
    this.collection = change.collection;
    this.id = change.recordId;
    this.version = side === "before" ? change.oldVersion : change.newVersion;
  }

  get fields(): Readonly<Record<string, StoredValue>> {
    return (this.built ??= this.build());
  }

  private build(): Readonly<Record<string, StoredValue>> {
    const c = this.change;
    const image = c.image();
    if (this.side === "after") return image ?? c.set;
    return image === null ? {} : fieldsBefore(image, c.prior() ?? {}, c.set, c.cleared);
  }
}

function visibleClocks(view: SubscriberView, state: RecordState, clocks: Record<string, FieldClock>): Record<string, FieldClock> {
  const out: Record<string, FieldClock> = {};
  for (const name in clocks) if (name !== DELETED_FIELD && view.fieldVisible(state, name)) out[name] = clocks[name]!;
  return out;
}

/** A stored record (in view) as the view shows it. */
export function viewRecord(view: SubscriberView, r: StoredRecord): EventRecord {
  const shown = view.show(r, r.fields);
  return {
    tenant: r.tenant,
    collection: r.collection,
    id: r.id,
    version: r.version,
    fields: shown.fields,
    masked: shown.masked,
    unmaskedSensitive: shown.unmaskedSensitive,
    clocks: visibleClocks(view, r, r.clocks),
    createTime: r.createTime,
    updateTime: r.updateTime,
  };
}

/** The event `c` produces for `view`, or null when the view does not see it. */
export function changeEvent(c: LogChange, view: SubscriberView): StreamEvent | null {
  if (c.tenant !== view.tenant || !changesRecord(c) || !view.collections.includes(c.collection)) return null;
  const s = changeStates(c);
  const wasIn = s.before !== null && view.admits(s.before);
  const isIn = s.after !== null && view.admits(s.after);
  // Still in view, shown the same way: the delta. Shown another way (other
  // grants admit it now, with other fields or masks): the record again, whole.
  if (wasIn && isIn && view.shape(s.before!) === view.shape(s.after!)) return upsert(c, view, s.after!, false);
  if (isIn) {
    if (c.created) return upsert(c, view, s.after!, true);
    const reason: ScopeReason = s.restored ? "restored" : "fields";
    const shown = view.show(s.after!, s.after!.fields);
    return {
      kind: "enter",
      reason,
      commitTime: c.commitTime,
      record: {
        tenant: c.tenant,
        collection: c.collection,
        id: c.recordId,
        version: c.newVersion,
        fields: shown.fields,
        masked: shown.masked,
        // The log holds the clocks this change set; the record's others are in GetRecord.
        clocks: visibleClocks(view, s.after!, c.clocks),
        createTime: null,
        updateTime: c.commitTime,
      },
    };
  }
  if (wasIn) {
    if (c.deleted) return { kind: "delete", collection: c.collection, id: c.recordId, version: c.newVersion, commitTime: c.commitTime };
    return { kind: "leave", reason: "fields", collection: c.collection, id: c.recordId, version: c.newVersion, commitTime: c.commitTime };
  }
  return null;
}

function upsert(c: LogChange, view: SubscriberView, after: RecordState, created: boolean): StreamEvent {
  const shown = view.show(after, c.set);
  return {
    kind: "upsert",
    collection: c.collection,
    id: c.recordId,
    version: c.newVersion,
    set: shown.fields,
    masked: shown.masked,
    cleared: c.cleared.filter((f) => view.fieldVisible(after, f)),
    clocks: visibleClocks(view, after, c.clocks),
    created,
    commitTime: c.commitTime,
  };
}

/**
 * Events that take a subscriber's copy from what `from` shows of a record to
 * what `to` shows (both judged on the same state): leave, enter, or a
 * re-enter when the visible fields differ (a field became readable, masked or
 * hidden). Null when nothing changes for the subscriber.
 */
export function viewSwapEvent(r: StoredRecord, from: SubscriberView, to: SubscriberView): StreamEvent | null {
  const state = { collection: r.collection, id: r.id, version: r.version, fields: r.fields };
  const wasIn = !r.deleted && from.tenant === r.tenant && from.collections.includes(r.collection) && from.admits(state);
  const isIn = !r.deleted && to.tenant === r.tenant && to.collections.includes(r.collection) && to.admits(state);
  if (!wasIn && !isIn) return null;
  if (wasIn && !isIn) return { kind: "leave", reason: "policy", collection: r.collection, id: r.id, version: r.version, commitTime: null };
  const next = viewRecord(to, r);
  if (wasIn && sameProjection(viewRecord(from, r), next)) return null;
  return { kind: "enter", reason: "policy", record: next, commitTime: null };
}

function sameProjection(a: EventRecord, b: EventRecord): boolean {
  const ka = Object.keys(a.fields);
  if (ka.length !== Object.keys(b.fields).length) return false;
  if (Object.keys(a.clocks).length !== Object.keys(b.clocks).length) return false;
  if (a.masked.length !== b.masked.length || a.masked.some((m) => !b.masked.includes(m))) return false;
  for (const k of ka) {
    const bv = b.fields[k];
    if (bv === undefined || !storedEquals(a.fields[k]!, bv)) return false;
  }
  for (const k in a.clocks) if (!(k in b.clocks)) return false;
  return true;
}
