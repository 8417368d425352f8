// Registration of the gauges other areas feed: they hand over a function that
// reads their current state, and the SDK reads it at each collection (a
// Prometheus scrape, an OTLP export). Nothing is recorded on their hot paths.
// Registering works before or after the SDK starts; each call returns an
// unregister function (call it when the owner stops).
import type { Meter, ObservableResult } from "@opentelemetry/api";
import { METRIC_CONFIG_INFO, METRIC_LEADER, METRIC_STREAMS_OPEN, METRIC_STREAM_LAG } from "./names.js";

type Unregister = () => void;

const configRevisions = new Set<() => string>();
const openStreams = new Set<() => number>();
const streamLags = new Set<() => number | undefined>();
const leaders = new Set<() => boolean>();

function add<T>(set: Set<T>, read: T): Unregister {
  set.add(read);
  return () => set.delete(read);
}

/** `deltamesh.config.info{revision}` = 1 for the config revision the node runs. */
export function registerConfigRevision(read: () => string): Unregister {
  return add(configRevisions, read);
}

/** `deltamesh.streams.open`: open change streams (subscribers) on this node. Several registrations add up. */
export function registerOpenStreams(read: () => number): Unregister {
  return add(openStreams, read);
}

/**
 * `deltamesh.stream.lag` in seconds: now minus the commit time of the last
 * change delivered, for the most-behind subscriber; 0 when every subscriber
 * has everything committed (an idle stream is not behind); undefined when
 * there are no subscribers. Several registrations: the largest wins.
 */
export function registerStreamLag(read: () => number | undefined): Unregister {
  return add(streamLags, read);
}

/** `deltamesh.cluster.leader`: 1 while `read()` says this node leads, else 0. */
export function registerLeaderStatus(read: () => boolean): Unregister {
  return add(leaders, read);
}

/** A failing reader must not break the collection of every other metric. */
function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** Creates the observable gauges on `meter` (the SDK calls this once when it starts). */
export function bindGauges(meter: Meter): void {
  meter
    .createObservableGauge(METRIC_CONFIG_INFO, { description: "Config revision the node runs (value 1, label revision)" })
    .addCallback((r: ObservableResult) => {
      const seen = new Set<string>();
      for (const read of configRevisions) {
        const revision = safely(read);
        if (revision !== undefined && !seen.has(revision)) {
          seen.add(revision);
          r.observe(1, { revision });
        }
      }
    });
  meter
    .createObservableGauge(METRIC_STREAMS_OPEN, { description: "Open change streams", unit: "{stream}" })
    .addCallback((r) => {
      if (openStreams.size === 0) return;
      let total = 0;
      for (const read of openStreams) total += safely(read) ?? 0;
      r.observe(total);
    });
  meter
    .createObservableGauge(METRIC_STREAM_LAG, {
      description: "Now minus commit time of the last delivered change, most-behind subscriber",
      unit: "s",
    })
    .addCallback((r) => {
      let worst: number | undefined;
      for (const read of streamLags) {
        const lag = safely(read);
        if (lag !== undefined && Number.isFinite(lag)) worst = Math.max(worst ?? 0, lag);
      }
      if (worst !== undefined) r.observe(worst);
    });
  meter
    .createObservableGauge(METRIC_LEADER, { description: "1 while this node is the cluster leader" })
    .addCallback((r) => {
      if (leaders.size === 0) return;
      let leading = false;
      for (const read of leaders) leading ||= safely(read) === true;
      r.observe(leading ? 1 : 0);
    });
}
