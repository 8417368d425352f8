// A subscriber's view under the access policy: its request's filters and
// field selection (FilterView) narrowed by what its principal may read of
// each collection (row scope, readable fields, masks: services/access/view.ts).
//
// Which fields of a record are visible, and how masked, depends on which of
// the principal's grants admit the record, so every answer starts from the
// record's full state. The hub asks several questions about the same state in
// a row (admits, show, fieldVisible, shape), so the last few answers are
// remembered by the state's fields object.
//
// A view is rebuilt for a new policy (or new schemas) with `rebuilt`: the
// streams swap it in and send enter/leave events for what changed.
import { fieldRules, GrantSet, type FieldRules } from "../access/engine.js";
import type { Hasher } from "../access/masks.js";
import type { Policy } from "../access/policy.js";
import { viewFor, type RecordView } from "../access/view.js";
import type { Principal } from "../platform/principal.js";
import type { CollectionSchema, SchemaSet, StoredValue } from "../schema/types.js";
import { FilterView, type CollectionFilter, type RecordState, type Shown, type SubscriberView } from "./view.js";

/** Who subscribed with what request: enough to build its view under any policy. */
export interface Subscription {
  principal: Principal;
  filters: readonly CollectionFilter[];
  hasher: Hasher;
}

const MEMO_SIZE = 4;
const NO_FIELDS: Readonly<Record<string, StoredValue>> = Object.freeze({});

export class AccessView implements SubscriberView {
  readonly key: string;
  readonly tenant: string;
  readonly collections: readonly string[];
  readonly judgesByFields: boolean;
  private readonly filter: FilterView;
  /** The fields each collection's filters name: a record hiding one of them is not in view. */
  private readonly filtered: ReadonlyMap<string, readonly string[]>;
  private readonly memo: { fields: object; rules: FieldRules | null }[] = [];
  /** The rules of each collection read without row scopes (they hold for every record). */
  private readonly unscoped = new Map<string, FieldRules | null>();

  private constructor(
    readonly subscription: Subscription,
    /** Read views of the collections the principal may read (and filter on) at all. */
    private readonly reads: ReadonlyMap<string, RecordView>,
  ) {
    this.filter = new FilterView(subscription.principal.tenant, subscription.filters);
    this.filtered = new Map(subscription.filters.map((f) => [f.collection, Object.keys(f.equals)]));
    this.tenant = this.filter.tenant;
    this.collections = this.filter.collections;
    this.judgesByFields = this.filter.judgesByFields || [...reads.values()].some((v) => v.scoped);
    this.key = JSON.stringify(["access", this.filter.key, this.collections.map((c) => reads.get(c)?.key ?? null)]);
  }

  /**
   * The view of `subscription` under `policy`. A collection the principal may
   * not read, or whose filters name a field it may read in no record (a filter
   * would reveal that field's values), shows nothing; `admits` leaves out each
   * record hiding a filtered field.
   */
  static build(policy: Policy, schemas: SchemaSet, subscription: Subscription): AccessView {
    const reads = new Map<string, RecordView>();
    for (const f of subscription.filters) {
      const schema = schemas.collections.get(f.collection);
      if (!schema) continue;
      const view = viewFor(policy, subscription.principal, schema, { hasher: subscription.hasher });
      if (!view.readable) continue;
      const readable = readableFields(policy, subscription.principal, schema);
      if (!Object.keys(f.equals).every((field) => readable.has(field))) continue;
      reads.set(f.collection, view);
    }
    return new AccessView(subscription, reads);
  }

  /** This subscription's view under a new policy or schemas. */
  rebuilt(policy: Policy, schemas: SchemaSet): AccessView {
    return AccessView.build(policy, schemas, this.subscription);
  }

  /**
   * In view: it matches the filters, is in scope, and shows every field the
   * filters name. A record matching on a field it hides is not (else its
   * snapshot, or enter/leave when that value changes, would reveal the value).
   */
  admits(record: RecordState): boolean {
    if (!this.filter.admits(record)) return false;
    const rules = this.rules(record);
    if (rules === null) return false;
    for (const field of this.filtered.get(record.collection) ?? []) if (!rules.visible.has(field)) return false;
    return true;
  }

  show(record: RecordState, fields: Readonly<Record<string, StoredValue>>): Shown {
    const rules = this.rules(record);
    if (!rules) return { fields: {}, masked: [] };
    const p = this.reads.get(record.collection)!.projectWith(rules, this.filter.select(record.collection, fields));
    return { fields: p.fields, masked: p.masked, unmaskedSensitive: p.unmaskedSensitive };
  }

  fieldVisible(record: RecordState, field: string): boolean {
    const rules = this.rules(record);
    return rules !== null && rules.visible.has(field) && this.filter.selects(record.collection, field);
  }

  shape(record: RecordState): string {
    return this.rules(record)?.key ?? "";
  }

  prefilter(collection: string): Readonly<Record<string, StoredValue>> {
    return this.filter.prefilter(collection);
  }

  /** The field rules of a record in scope; null out of scope (or in a collection this view may not read). */
  private rules(record: RecordState): FieldRules | null {
    const view = this.reads.get(record.collection);
    if (!view) return null;
    // Without row scopes the rules do not depend on the record: its fields
    // (built from the change's image on first read) are never touched, and
    // the collection's one answer is kept (the hub asks several times an event).
    if (!view.scoped) {
      let rules = this.unscoped.get(record.collection);
      if (rules === undefined) this.unscoped.set(record.collection, (rules = view.rulesFor(NO_FIELDS)));
      return rules;
    }
    const fields = record.fields;
    for (const m of this.memo) if (m.fields === fields) return m.rules;
    const rules = view.rulesFor(fields);
    if (this.memo.length >= MEMO_SIZE) this.memo.pop();
    this.memo.unshift({ fields, rules });
    return rules;
  }
}

/** Fields some grant lets the principal read (in some record) of a collection. */
export function readableFields(policy: Policy, principal: Principal, schema: CollectionSchema): ReadonlySet<string> {
  const grants = new GrantSet(policy, principal, schema, "read");
  return grants.fieldsOf(grants.grants, "readFields");
}

/** Sensitive fields the principal may see in clear in some record of a collection (a stream opening on them is audited). */
export function unmaskedSensitiveFields(policy: Policy, principal: Principal, schema: CollectionSchema, deviceClass: string): readonly string[] {
  const grants = new GrantSet(policy, principal, schema, "read");
  return fieldRules(schema, grants.grants, deviceClass).unmaskedSensitive;
}
