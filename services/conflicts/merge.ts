// Field-level merge: what happens to one field of a mutation, given the
// field's current value and clock and the writer's base version. Pure.
//
// A field nobody changed since the writer's base version is simply applied.
// Only a field changed concurrently (its clock is newer than the base) goes
// to the field's policy. A writer with no base (0) is concurrent with every
// field that already has a clock, so policies also guard blind writes: an
// import cannot overwrite a contract number under `keep_original`.
import type { ConflictPolicy, StoredValue } from "../schema/types.js";
import type { FieldClock } from "../records/model.js";

export interface FieldState {
  /** Undefined: the field holds no value (never set, or cleared). */
  value: StoredValue | undefined;
  /** Undefined: the field was never set or cleared. */
  clock: FieldClock | undefined;
}

export type FieldDecision =
  /** The incoming value becomes current. */
  | { kind: "apply"; policy?: ConflictPolicy }
  /** The value already holds; nothing to do. */
  | { kind: "unchanged" }
  /** A concurrent edit wins; the incoming one is recorded as superseded. */
  | { kind: "superseded"; policy: ConflictPolicy; winner: FieldClock }
  /** keep_original: the first value stays. */
  | { kind: "kept"; winner: FieldClock }
  /** manual_review: current value stays, a ticket holds both candidates. */
  | { kind: "review" }
  /** reject: the whole mutation fails. */
  | { kind: "reject"; winner: FieldClock };

export interface MergeRules {
  policy: ConflictPolicy;
  /** Sources ranked highest first (source_priority). */
  sourcePriority: readonly string[];
}

export function isConcurrent(current: FieldState, baseVersion: number): current is FieldState & { clock: FieldClock } {
  return current.clock !== undefined && current.clock.version > baseVersion;
}

export function decideField(
  rules: MergeRules,
  current: FieldState,
  incoming: { value: StoredValue | undefined; clock: FieldClock },
  baseVersion: number,
  equals: (a: StoredValue, b: StoredValue) => boolean,
): FieldDecision {
  const same =
    current.value === undefined || incoming.value === undefined
      ? current.value === incoming.value
      : equals(current.value, incoming.value);
  if (same) return { kind: "unchanged" };
  if (!isConcurrent(current, baseVersion)) return { kind: "apply" };
  const winner = current.clock;
  switch (rules.policy) {
    case "lww":
      return laterWins(incoming, current) ? { kind: "apply", policy: "lww" } : { kind: "superseded", policy: "lww", winner };
    case "source_priority": {
      const byRank = compareRank(rules.sourcePriority, incoming.clock.source, winner.source);
      if (byRank > 0 || (byRank === 0 && laterWins(incoming, current))) return { kind: "apply", policy: "source_priority" };
      return { kind: "superseded", policy: "source_priority", winner };
    }
    case "keep_original":
      // Only a value that exists is "original"; a cleared field takes the next value.
      return current.value === undefined ? { kind: "apply", policy: "keep_original" } : { kind: "kept", winner };
    case "manual_review":
      return { kind: "review" };
    case "reject":
      return { kind: "reject", winner };
  }
}

/** >0 when `a` outranks `b`; sources not listed rank below every listed one. */
export function compareRank(priority: readonly string[], a: string, b: string): number {
  const rank = (s: string) => {
    const i = priority.indexOf(s);
    return i === -1 ? priority.length : i;
  };
  return rank(b) - rank(a);
}

/**
 * Last-writer-wins order: later HLC wins; equal HLCs are broken by source,
 * actor, device and finally the value itself, so every node, whatever order
 * the edits arrive in, picks the same winner.
 */
export function laterWins(
  a: { value: StoredValue | undefined; clock: FieldClock },
  b: { value: StoredValue | undefined; clock: FieldClock },
): boolean {
  if (a.clock.hlc !== b.clock.hlc) return a.clock.hlc > b.clock.hlc;
  const keys: [string, string][] = [
    [a.clock.source, b.clock.source],
    [a.clock.actor, b.clock.actor],
    [a.clock.device, b.clock.device],
    [JSON.stringify(a.value ?? null), JSON.stringify(b.value ?? null)],
  ];
  for (const [x, y] of keys) if (x !== y) return x > y;
  return false;
}
