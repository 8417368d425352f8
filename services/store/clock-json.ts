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

export function clocksFromJson(clocks: Record<string, ClockJson>): Record<string, FieldClock> {
  return Object.fromEntries(Object.entries(clocks).map(([k, v]) => [k, clockFromJson(v)]));
}
