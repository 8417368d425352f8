// Structured logs (JSON lines on stderr, so stdout stays free for CLI output),
// carrying the active trace's ids when there is one.
import pino, { type DestinationStream, type Logger } from "pino";
import { traceLogFields } from "./telemetry/log-context.js";

export type { Logger };

export function createLogger(level = "info", bindings: Record<string, string> = {}, destination: DestinationStream = pino.destination(2)): Logger {
  return pino({ level, base: { ...bindings }, mixin: traceLogFields }, destination);
}
