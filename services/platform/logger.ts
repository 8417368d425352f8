// Structured logs (JSON lines on stderr, so stdout stays free for CLI output).
import pino, { type Logger } from "pino";

export type { Logger };

export function createLogger(level = "info", bindings: Record<string, string> = {}): Logger {
  return pino({ level, base: { ...bindings } }, pino.destination(2));
}
