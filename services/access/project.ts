// Records, history entries and conflict candidates as a view shows them:
// unreadable fields (and their clocks and decisions) left out, masked fields
// holding their mask's text. Pure; the encoders in services/records/convert.ts
// turn the results into protobuf.
import { DELETED_FIELD } from "../records/apply-mutation.js";
import type { ChangeEntry, FieldClock, StoredRecord } from "../records/model.js";
import type { StoredValue } from "../schema/types.js";
import type { FieldRules } from "./engine.js";
import type { RecordView } from "./view.js";

export interface Shown<T> {
  value: T;
  /** Fields shown masked. */
  masked: string[];
  /** Sensitive fields shown in clear that held a value. */
  unmaskedSensitive: string[];
}

function visibleClocks(rules: FieldRules, clocks: Record<string, FieldClock>): Record<string, FieldClock> {
  const out: Record<string, FieldClock> = {};
  for (const [f, c] of Object.entries(clocks)) if (f === DELETED_FIELD || rules.visible.has(f)) out[f] = c;
  return out;
}

export function shownRecord(view: RecordView, rules: FieldRules, r: StoredRecord): Shown<StoredRecord> {
  const p = view.projectWith(rules, r.fields);
  return { value: { ...r, fields: p.fields, clocks: visibleClocks(rules, r.clocks) }, masked: p.masked, unmaskedSensitive: p.unmaskedSensitive };
}

/** A history entry shown by the rules of its record as it is now. */
export function shownChange(view: RecordView, rules: FieldRules, c: ChangeEntry): Shown<ChangeEntry> {
  const p = view.projectWith(rules, c.set);
  const masked = new Set(p.masked);
  // A decision's proposed value is a read of its field too (shown in clear: audited like `set`).
  const unmaskedSensitive = new Set(p.unmaskedSensitive);
  const decisions = c.decisions
    .filter((d) => d.field === DELETED_FIELD || rules.visible.has(d.field))
    .map((d) => {
      if (d.proposed === undefined || d.proposed === null || !rules.visible.has(d.field)) return d;
      const proposed = view.projectWith(rules, { [d.field]: d.proposed });
      if (proposed.masked.length > 0) masked.add(d.field);
      for (const f of proposed.unmaskedSensitive) unmaskedSensitive.add(f);
      return { ...d, proposed: proposed.fields[d.field] as StoredValue };
    });
  return {
    value: {
      ...c,
      set: p.fields,
      cleared: c.cleared.filter((f) => rules.visible.has(f)),
      clocks: visibleClocks(rules, c.clocks),
      decisions,
    },
    masked: [...masked],
    unmaskedSensitive: [...unmaskedSensitive],
  };
}

/**
 * One value of a field, as the rules show it; null when the field is not
 * visible. `unmaskedSensitive`: a sensitive value shown in clear (audit it).
 */
export function shownValue(
  view: RecordView,
  rules: FieldRules,
  field: string,
  value: StoredValue,
): { value: StoredValue; masked: boolean; unmaskedSensitive: boolean } | null {
  if (!rules.visible.has(field)) return null;
  const p = view.projectWith(rules, { [field]: value });
  return { value: p.fields[field] as StoredValue, masked: p.masked.length > 0, unmaskedSensitive: p.unmaskedSensitive.length > 0 };
}
