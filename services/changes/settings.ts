// Stream settings: the `streams` section of the config document. Validated
// with the rest of the document (services/config/source.ts buildSnapshot),
// so a bad value refuses the whole document instead of half-applying it.
// Values are read when a stream or the tailer needs them, so a reload
// applies to what starts (or waits) next.
import { invalidArgument, type FieldViolation } from "../platform/errors.js";

export interface StreamSettings {
  /** Idle streams get a heartbeat this often unless the request asks otherwise. */
  heartbeatIntervalMs: number;
  /** A live subscriber holding more unsent events or bytes than this is ended with RESOURCE_EXHAUSTED. */
  maxBufferedEvents: number;
  maxBufferedBytes: number;
  /** The tailer reads the log at least this often, even without a notification. */
  pollIntervalMs: number;
  /** After a notification the tailer waits this long, so one read (and one message per subscriber) carries more changes. */
  batchDelayMs: number;
  /** Recent changes the hub keeps in memory for subscribers that are slightly behind, at most this many... */
  recentChanges: number;
  /** ...and at most this many characters of their JSON (large notes or JSON fields would otherwise make a count unbounded in bytes). */
  recentBytes: number;
  /** Most bytes of events in one stream message. */
  maxMessageBytes: number;
  /** Most streams open on a node at once, and per caller (tenant and subject); more are refused with RESOURCE_EXHAUSTED. */
  maxStreams: number;
  maxStreamsPerCaller: number;
}

export const DEFAULT_STREAM_SETTINGS: Readonly<StreamSettings> = Object.freeze({
  heartbeatIntervalMs: 10_000,
  maxBufferedEvents: 20_000,
  maxBufferedBytes: 16 * 1024 * 1024,
  pollIntervalMs: 1_000,
  batchDelayMs: 5,
  recentChanges: 1_024,
  recentBytes: 16 * 1024 * 1024,
  maxMessageBytes: 256 * 1024,
  // Each open stream costs a few KB idle and up to its buffer bounds behind:
  // the caps keep one runaway client (or a reconnect storm) from taking the
  // node's memory from everyone else.
  maxStreams: 20_000,
  maxStreamsPerCaller: 2_000,
});

/** Bounds of every key: config name, settings name, min, max. */
const KEYS: readonly [string, keyof StreamSettings, number, number][] = [
  ["heartbeat_interval_ms", "heartbeatIntervalMs", 100, 300_000],
  ["max_buffered_events", "maxBufferedEvents", 10, 10_000_000],
  ["max_buffered_bytes", "maxBufferedBytes", 64 * 1024, 1024 * 1024 * 1024],
  ["poll_interval_ms", "pollIntervalMs", 10, 60_000],
  ["batch_delay_ms", "batchDelayMs", 0, 1_000],
  ["recent_changes", "recentChanges", 0, 1_000_000],
  ["recent_bytes", "recentBytes", 0, 1024 * 1024 * 1024],
  ["max_message_bytes", "maxMessageBytes", 16 * 1024, 4 * 1024 * 1024],
  ["max_streams", "maxStreams", 1, 1_000_000],
  ["max_streams_per_caller", "maxStreamsPerCaller", 1, 1_000_000],
];

/** Heartbeat intervals a request may ask for. */
export const HEARTBEAT_BOUNDS = { min: 100, max: 300_000 } as const;

/**
 * The `streams` section (absent: defaults).
 * @throws DomainError invalid_argument INVALID_CONFIG listing every bad key.
 */
export function parseStreamSettings(section: unknown): StreamSettings {
  if (section === undefined || section === null) return { ...DEFAULT_STREAM_SETTINGS };
  const violations: FieldViolation[] = [];
  const out: StreamSettings = { ...DEFAULT_STREAM_SETTINGS };
  if (typeof section !== "object" || Array.isArray(section)) {
    violations.push({ field: "streams", description: "expected a mapping of stream settings", reason: "INVALID_CONFIG" });
  } else {
    const known = new Set(KEYS.map(([k]) => k));
    for (const key of Object.keys(section)) {
      if (!known.has(key)) {
        violations.push({ field: `streams.${key}`, description: `unknown key; known: ${[...known].join(", ")}`, reason: "UNKNOWN_KEY" });
      }
    }
    for (const [key, name, min, max] of KEYS) {
      const v = (section as Record<string, unknown>)[key];
      if (v === undefined) continue;
      if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
        violations.push({ field: `streams.${key}`, description: `expected an integer from ${min} to ${max}`, reason: "OUT_OF_RANGE" });
      } else out[name] = v;
    }
  }
  if (violations.length > 0) {
    throw invalidArgument(`invalid streams section: ${violations.map((v) => `${v.field}: ${v.description}`).join("; ")}`, violations, "INVALID_CONFIG");
  }
  return out;
}
