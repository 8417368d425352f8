// The `retention` section of the config document: how long the leader keeps
// the change log, open conflict tickets, idempotency results and its own duty
// records, and how often it runs those duties. Pure: validated with the rest
// of the document in buildSnapshot, so a bad value is refused before it is
// stored and never half-applied.
import type { FieldViolation } from "../../platform/errors.js";

export interface RetentionSettings {
  /** Delete changes committed longer ago than this; null keeps the log forever. */
  changeLogMs: number | null;
  /** Dismiss open conflict tickets older than this; null never expires them. */
  conflictTicketsMs: number | null;
  /** Forget idempotency results (client_mutation_id) older than this; null keeps them. */
  idempotencyMs: number | null;
  /** Delete duty records older than this; null keeps them. */
  dutyRunsMs: number | null;
  /** Pause between two rounds of duties. */
  intervalMs: number;
  /** Rows per duty transaction (each batch is its own short fenced transaction). */
  batchSize: number;
}

const DAY = 86_400_000;

export const DEFAULT_RETENTION: Readonly<RetentionSettings> = Object.freeze({
  changeLogMs: 7 * DAY,
  conflictTicketsMs: 30 * DAY,
  idempotencyMs: 7 * DAY,
  dutyRunsMs: 30 * DAY,
  intervalMs: 60_000,
  batchSize: 1000,
});

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: DAY };

/** "500ms", "30s", "15m", "12h", "7d" → milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNITS[m[2]!]!;
}

type Key = "change_log" | "conflict_tickets" | "idempotency" | "duty_runs" | "interval" | "batch_size";
const WINDOWS: readonly [Key, keyof RetentionSettings][] = [
  ["change_log", "changeLogMs"],
  ["conflict_tickets", "conflictTicketsMs"],
  ["idempotency", "idempotencyMs"],
  ["duty_runs", "dutyRunsMs"],
];
const KEYS: readonly string[] = [...WINDOWS.map(([k]) => k), "interval", "batch_size"];

/**
 * Reads the section (absent: all defaults). Windows are durations or `off`;
 * `interval` at least 100ms; `batch_size` 1–100000.
 * Returns the settings, or the violations (paths like `retention.change_log`).
 */
export function parseRetention(section: unknown): { settings: RetentionSettings; violations: FieldViolation[] } {
  const settings: RetentionSettings = { ...DEFAULT_RETENTION };
  const violations: FieldViolation[] = [];
  if (section === undefined || section === null) return { settings, violations };
  const bad = (key: string, description: string, reason = "INVALID_RETENTION"): void => {
    violations.push({ field: key ? `retention.${key}` : "retention", description, reason });
  };
  if (typeof section !== "object" || Array.isArray(section)) {
    bad("", "expected a mapping");
    return { settings, violations };
  }
  const doc = section as Record<string, unknown>;
  for (const key of Object.keys(doc)) {
    if (!KEYS.includes(key)) bad(key, `unknown key (expected one of ${KEYS.join(", ")})`, "UNKNOWN_KEY");
  }
  for (const [key, prop] of WINDOWS) {
    const v = doc[key];
    if (v === undefined) continue;
    if (v === "off" || v === false) {
      (settings[prop] as number | null) = null;
      continue;
    }
    const ms = typeof v === "string" ? parseDuration(v) : undefined;
    if (ms === undefined || ms <= 0) bad(key, `expected a duration such as 7d, 12h, 30m, 45s, 500ms, or off; got ${JSON.stringify(v)}`);
    else (settings[prop] as number | null) = ms;
  }
  if (doc.interval !== undefined) {
    const ms = typeof doc.interval === "string" ? parseDuration(doc.interval) : undefined;
    if (ms === undefined || ms < 100) bad("interval", `expected a duration of at least 100ms; got ${JSON.stringify(doc.interval)}`);
    else settings.intervalMs = ms;
  }
  if (doc.batch_size !== undefined) {
    const n = doc.batch_size;
    if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 100_000) bad("batch_size", `expected an integer 1-100000; got ${JSON.stringify(n)}`);
    else settings.batchSize = n;
  }
  return { settings, violations };
}
