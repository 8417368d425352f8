// What one principal sees of one collection: which records (row scope), which
// of their fields, masked how. Every read path projects records through a
// view; a change stream asks its view, per subscriber, what an event becomes.
// Views with equal `key` show exactly the same thing, so a stream hub encodes
// each event once per distinct key, not once per subscriber. Pure.
import type { Principal } from "../platform/principal.js";
import type { CollectionSchema, StoredValue } from "../schema/types.js";
import { deviceClassOf, fieldRules, GrantSet, shortHash, type FieldRules } from "./engine.js";
import { applyMask, type Hasher } from "./masks.js";
import type { Policy } from "./policy.js";

export type Fields = Readonly<Record<string, StoredValue>>;

/** A record's fields as a view shows them. */
export interface Projection {
  /** Visible fields; masked ones hold their mask's text. */
  fields: Record<string, StoredValue>;
  /** Visible fields whose value is masked. */
  masked: string[];
  /** Sensitive fields shown in clear that hold a value (such reads are audited). */
  unmaskedSensitive: string[];
  rules: FieldRules;
}

/** The state of a record before or after a change, as a stream event carries it. */
export interface RecordState {
  fields: Fields;
  deleted: boolean;
}

/** What a change is to one view. */
export type ViewedChange =
  | { kind: "none" }
  /** The record came into view (or what the view shows of it changed shape): every visible field. */
  | { kind: "enter"; projection: Projection }
  /** The record left the view: drop it. */
  | { kind: "leave" }
  /** Changed visible fields only. */
  | { kind: "upsert"; set: Record<string, StoredValue>; cleared: string[]; masked: string[] }
  | { kind: "delete" };

export interface RecordView {
  /** Equal for views that show exactly the same records and fields the same way. */
  readonly key: string;
  readonly schema: CollectionSchema;
  readonly deviceClass: string;
  /** False when no grant lets the principal read the collection at all. */
  readonly readable: boolean;
  /** Whether some read grant has a row scope (else every record is in scope, under the same rules). */
  readonly scoped: boolean;
  /** Whether the record's fields are in row scope. */
  inScope(fields: Fields): boolean;
  /** The field rules for a record in scope; null when out of scope. */
  rulesFor(fields: Fields): FieldRules | null;
  /**
   * Whether the record is in scope and each of `names` is readable in it
   * (under the grants admitting it). A filter or identity lookup on a field
   * the record hides must not match the record: that would reveal the value.
   */
  reveals(fields: Fields, names: readonly string[]): boolean;
  /** The record as this view shows it; null when out of scope. */
  project(fields: Fields): Projection | null;
  /** Projects with known rules (e.g. history entries shown by the record's current rules). */
  projectWith(rules: FieldRules, fields: Fields): Projection;
  change(before: RecordState | null, after: RecordState | null, delta: { set: Fields; cleared: readonly string[] }): ViewedChange;
}

export interface ViewOptions {
  /** Default: the principal's device_class attribute. */
  deviceClass?: string;
  /** Keyed hash for `hash` masks: the principal's tenant's (see masks.ts tenantHasher). */
  hasher: Hasher;
}

export function viewFor(policy: Policy, principal: Principal, schema: CollectionSchema, opts: ViewOptions): RecordView {
  const deviceClass = opts.deviceClass ?? deviceClassOf(principal);
  const set = new GrantSet(policy, principal, schema, "read");
  const rulesCache = new Map<string, FieldRules>();
  const key = shortHash([policy.revision, principal.tenant, schema.name, deviceClass, set.grants.map((g) => g.id), set.scopeInputs()]);

  const rulesFor = (fields: Fields): FieldRules | null => {
    const admitting = set.admitting(fields);
    if (admitting.length === 0) return null;
    const cacheKey = admitting.map((g) => g.id).join("|");
    let rules = rulesCache.get(cacheKey);
    if (!rules) rulesCache.set(cacheKey, (rules = fieldRules(schema, admitting, deviceClass)));
    return rules;
  };

  const projectWith = (rules: FieldRules, fields: Fields): Projection => {
    const out: Record<string, StoredValue> = {};
    const masked: string[] = [];
    const unmaskedSensitive: string[] = [];
    // for-in, not Object.entries: no array per field (this runs for every
    // streamed change and every record read).
    for (const name in fields) {
      const mask = rules.visible.get(name);
      if (mask === undefined) continue;
      const value = fields[name]!;
      if (mask === "none") {
        out[name] = value;
        if (schema.fields.get(name)!.sensitive) unmaskedSensitive.push(name);
      } else {
        out[name] = applyMask(mask, value, opts.hasher);
        masked.push(name);
      }
    }
    return { fields: out, masked, unmaskedSensitive, rules };
  };

  const project = (fields: Fields): Projection | null => {
    const rules = rulesFor(fields);
    return rules ? projectWith(rules, fields) : null;
  };

  return {
    key,
    schema,
    deviceClass,
    readable: !set.empty,
    scoped: set.grants.some((g) => g.scope !== null),
    inScope: (fields) => set.admits(fields),
    rulesFor,
    reveals(fields, names) {
      if (names.length === 0) return set.admits(fields);
      const rules = rulesFor(fields);
      return rules !== null && names.every((n) => rules.visible.has(n));
    },
    project,
    projectWith,
    change(before, after, delta) {
      const was = before && !before.deleted ? rulesFor(before.fields) : null;
      if (after?.deleted || after === null) return was ? { kind: after === null ? "leave" : "delete" } : { kind: "none" };
      const now = rulesFor(after.fields);
      if (!now) return was ? { kind: "leave" } : { kind: "none" };
      // New to the view, or shown through other grants than before: resend it whole.
      if (!was || was.key !== now.key) return { kind: "enter", projection: projectWith(now, after.fields) };
      const shown = projectWith(now, delta.set);
      const cleared = delta.cleared.filter((f) => now.visible.has(f));
      if (Object.keys(shown.fields).length === 0 && cleared.length === 0) return { kind: "none" };
      return { kind: "upsert", set: shown.fields, cleared, masked: shown.masked };
    },
  };
}
