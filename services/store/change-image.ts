// What a change row keeps for change streams besides its delta (migration
// 0003): the record's fields after the change, and the before-values of the
// fields it set or cleared. Together they give the record's full state before
// and after every change, so a stream can decide exactly whether a record
// entered or left a subscriber's view, even when the change did not touch the
// fields the view filters on, and even when the record has changed again since.
import type { StoredValue } from "../schema/types.js";

export interface ChangeImage {
  /** All fields after the change. */
  image: Record<string, StoredValue>;
  /** Before-values of the fields in `set` and `cleared`; a field absent here had no value. */
  prior: Record<string, StoredValue>;
}

export function changeImage(
  before: Readonly<Record<string, StoredValue>> | null,
  after: Record<string, StoredValue>,
  set: Readonly<Record<string, StoredValue>>,
  cleared: readonly string[],
): ChangeImage {
  const prior: Record<string, StoredValue> = {};
  if (before) {
    for (const f of Object.keys(set)) if (Object.prototype.hasOwnProperty.call(before, f)) prior[f] = before[f]!;
    for (const f of cleared) if (Object.prototype.hasOwnProperty.call(before, f)) prior[f] = before[f]!;
  }
  return { image: after, prior };
}

/** The fields before a change, rebuilt from its image and prior values. */
export function fieldsBefore(
  image: Readonly<Record<string, StoredValue>>,
  prior: Readonly<Record<string, StoredValue>>,
  set: Readonly<Record<string, StoredValue>>,
  cleared: readonly string[],
): Record<string, StoredValue> {
  const out: Record<string, StoredValue> = { ...image };
  for (const f of [...Object.keys(set), ...cleared]) {
    if (Object.prototype.hasOwnProperty.call(prior, f)) out[f] = prior[f]!;
    else delete out[f];
  }
  return out;
}
