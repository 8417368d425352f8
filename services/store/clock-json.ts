// Field clocks as stored in jsonb: short keys, and the HLC as text because it
// exceeds 2^53 and would lose precision as a JSON number.
import type { FieldClock } from "../records/model.js";

export interface ClockJson {
  v: number;
  h: string;
  s: string;
  a: string;
  d: string;
}

export function clockToJson(c: FieldClock): ClockJson {
  return { v: c.version, h: c.hlc.toString(), s: c.source, a: c.actor, d: c.device };
}

export function clockFromJson(c: ClockJson): FieldClock {
  return { version: c.v, hlc: BigInt(c.h), source: c.s, actor: c.a, device: c.d };
}

export function clocksToJson(clocks: Record<string, FieldClock>): Record<string, ClockJson> {
  return Object.fromEntries(Object.entries(clocks).map(([k, v]) => [k, clockToJson(v)]));
}

/**
 * JSON.stringify(clocksToJson(clocks)) without the intermediate objects: the
 * write path serializes every field's clock of every record it writes.
 */
export function clocksJsonText(clocks: Record<string, FieldClock>): string {
  let out = "";
  for (const [name, c] of Object.entries(clocks)) {
    out += `${out === "" ? "{" : ","}${JSON.stringify(name)}:{"v":${JSON.stringify(c.version)},"h":"${c.hlc}","s":${JSON.stringify(c.source)},"a":${JSON.stringify(c.actor)},"d":${JSON.stringify(c.device)}}`;
  }
  return out === "" ? "{}" : `${out}}`;
}

export function clocksFromJson(clocks: Record<string, ClockJson>): Record<string, FieldClock> {
  return Object.fromEntries(Object.entries(clocks).map(([k, v]) => [k, clockFromJson(v)]));
}

/** The clocks part of a change's stored delta: full clocks, or one shared HLC (`h`) for the fields named in `k`. */
export interface DeltaClocksJson {
  h?: string | null;
  k?: string[] | null;
  clocks?: Record<string, ClockJson> | null;
}

/** A change's field clocks; a shared HLC takes the rest of its clock from the change row. */
export function deltaClocksFromJson(
  d: DeltaClocksJson,
  change: { newVersion: number; source: string; actor: string; device: string },
): Record<string, FieldClock> {
  if (d.clocks) return clocksFromJson(d.clocks);
  if (d.h === undefined || d.h === null || !d.k) return {};
  const clock: FieldClock = { version: change.newVersion, hlc: BigInt(d.h), source: change.source, actor: change.actor, device: change.device };
  // One object shared by the fields (encoders write it once: services/changes/fast-encode.ts).
  const clocks: Record<string, FieldClock> = {};
  for (const name of d.k) clocks[name] = clock;
  return clocks;
}
