// The hook the change-stream service calls around each message it sends: a
// span per delivered message (child of the Subscribe call's span) and the
// delivered-events counter. Usage inside a streaming handler:
//
//   const d = startStreamDelivery({ events: batch.length, lastCommitTime });
//   yield message;        // resumes once the transport has taken it
//   d.end();
//
// Stream lag and open streams are gauges: see registerStreamLag and
// registerOpenStreams in gauges.ts.
import { SpanStatusCode } from "@opentelemetry/api";
import { instruments } from "./instruments.js";
import { SPAN_STREAM_DELIVERY } from "./names.js";

export interface StreamDelivery {
  /** Events (changes, heartbeats, scope changes) in this message. */
  events: number;
  /** Commit time of the newest change in the message, if it carries changes. */
  lastCommitTime?: Date;
  /** The cursor the message ends at. */
  cursor?: string;
}

export interface DeliveryScope {
  /** The message was handed to the transport; `error` when sending failed. */
  end(error?: unknown): void;
}

export function startStreamDelivery(d: StreamDelivery, now = Date.now()): DeliveryScope {
  const m = instruments();
  const span = m.tracing
    ? m.tracer.startSpan(SPAN_STREAM_DELIVERY, {
        attributes: {
          "deltamesh.stream.events": d.events,
          ...(d.cursor ? { "deltamesh.stream.cursor": d.cursor } : {}),
          ...(d.lastCommitTime ? { "deltamesh.stream.lag_ms": Math.max(0, now - d.lastCommitTime.getTime()) } : {}),
        },
      })
    : undefined;
  let done = false;
  return {
    end(error?: unknown) {
      if (done) return;
      done = true;
      if (error === undefined) m.streamEvents.add(d.events);
      else {
        span?.recordException(error instanceof Error ? error : String(error));
        span?.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      }
      span?.end();
    },
  };
}
