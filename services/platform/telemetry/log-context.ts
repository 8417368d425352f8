// Trace ids on log lines: a pino mixin that adds the active span's ids (the
// field names OpenTelemetry's pino instrumentation uses), so a log line found
// in Loki or Elasticsearch leads to its trace and back.
import { context, isSpanContextValid, trace } from "@opentelemetry/api";

// A fresh object every time: pino merges the line's own fields into it.
export function traceLogFields(): Record<string, string> {
  const sc = trace.getSpanContext(context.active());
  if (!sc || !isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId, trace_flags: `0${sc.traceFlags.toString(16)}` };
}
