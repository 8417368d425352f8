// Registration of the gauges other areas feed: they hand over a function that
// reads their current state, and the SDK reads it at each collection (a
// Prometheus scrape, an OTLP export). Nothing is recorded on their hot paths.
// Registering works before or after the SDK starts; each call returns an
// unregister function (call it when the owner stops).
import type { Meter, ObservableResult } from "@opentelemetry/api";
import {
  METRIC_CONFIG_INFO,
  METRIC_LEADER,
  METRIC_RECORD_CACHE_BATCHES,
  METRIC_RECORD_CACHE_RECORDS,
  METRIC_STREAMS_OPEN,
  METRIC_STREAM_LAG,
} from "./names.js";

type Unregister = () => void;

const configRevisions = new Set<() => string>();
const openStreams = new Set<() => number>();
const streamLags = new Set<() => number | undefined>();
const leaders = new Set<() => boolean>();
const recordCaches = new Set<() => RecordCacheStats>();

/** What a record store says of the records it keeps (RecordStore.recordCacheStats). */
export interface RecordCacheStats {
  records: number;
  unlockedBatches: number;
  retriedUnderLock: number;
}

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

/** `deltamesh.record_cache.records` and `deltamesh.record_cache.batches{outcome}`. Several registrations add up. */
export function registerRecordCache(read: () => RecordCacheStats): Unregister {
  return add(recordCaches, read);
}

/** A failing reader must not break the collection of every other metric. */
function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/**
 * The SDK keeps reporting the last value of every attribute set a gauge ever
 * observed (cumulative temporality has no staleness), so a gauge never just
 * stops: a replaced config revision is reported 0, and a gauge whose owners all
 * unregistered reports 0 rather than its last value.
 */
export function bindGauges(meter: Meter): void {
  const shownRevisions = new Set<string>();
  meter
    .createObservableGauge(METRIC_CONFIG_INFO, { description: "1 for the config revision the node runs (label revision), 0 for earlier ones" })
    .addCallback((r: ObservableResult) => {
      const current = new Set<string>();
      for (const read of configRevisions) {
        const revision = safely(read);
        if (revision !== undefined) current.add(revision);
      }
      for (const revision of current) {
        shownRevisions.add(revision);
        r.observe(1, { revision });
      }
      for (const revision of shownRevisions) if (!current.has(revision)) r.observe(0, { revision });
    });
  const observeOnceRegistered = (name: string, description: string, unit: string | undefined, read: () => number) => {
    let shown = false;
    meter.createObservableGauge(name, { description, ...(unit ? { unit } : {}) }).addCallback((r) => {
      const value = read();
      if (Number.isNaN(value)) {
        if (shown) r.observe(0);
        return;
      }
      shown = true;
      r.observe(value);
    });
  };
  observeOnceRegistered(METRIC_STREAMS_OPEN, "Open change streams", "{stream}", () => {
    if (openStreams.size === 0) return NaN;
    let total = 0;
    for (const read of openStreams) total += safely(read) ?? 0;
    return total;
  });
  observeOnceRegistered(METRIC_STREAM_LAG, "Now minus commit time of the last delivered change, most-behind subscriber", "s", () => {
    let worst = NaN;
    for (const read of streamLags) {
      const lag = safely(read);
      if (lag !== undefined && Number.isFinite(lag)) worst = Number.isNaN(worst) ? lag : Math.max(worst, lag);
    }
    return worst;
  });
  const cacheTotals = (): RecordCacheStats | undefined => {
    if (recordCaches.size === 0) return undefined;
    const total = { records: 0, unlockedBatches: 0, retriedUnderLock: 0 };
    for (const read of recordCaches) {
      const s = safely(read);
      if (!s) continue;
      total.records += s.records;
      total.unlockedBatches += s.unlockedBatches;
      total.retriedUnderLock += s.retriedUnderLock;
    }
    return total;
  };
  observeOnceRegistered(METRIC_RECORD_CACHE_RECORDS, "Records the node keeps after writing them", "{record}", () => cacheTotals()?.records ?? NaN);
  meter
    .createObservableCounter(METRIC_RECORD_CACHE_BATCHES, { description: "Write batches merged from kept records; stale: retried under lock", unit: "{batch}" })
    .addCallback((r) => {
      const total = cacheTotals();
      if (!total) return;
      r.observe(total.unlockedBatches, { outcome: "unlocked" });
      r.observe(total.retriedUnderLock, { outcome: "stale" });
    });
  observeOnceRegistered(METRIC_LEADER, "1 while this node is the cluster leader", undefined, () => {
    if (leaders.size === 0) return NaN;
    let leading = false;
    for (const read of leaders) leading ||= safely(read) === true;
    return leading ? 1 : 0;
  });
}
