// Telemetry as tests observe it: the real SDK setup (startTelemetry) with an
// in-memory span exporter, a metric reader collected on demand, and the real
// Prometheus endpoint on a free loopback port; plus a parser of the
// Prometheus text format.
import { MetricReader, type DataPoint, type MetricData } from "@opentelemetry/sdk-metrics";
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from "@opentelemetry/sdk-trace";
import { startTelemetry, type Telemetry } from "../../services/platform/telemetry/sdk.js";

/** A reader that collects only when asked. */
class OnDemandReader extends MetricReader {
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export interface TestTelemetry {
  telemetry: Telemetry;
  /** Finished spans so far (after the exports in flight: resource detection makes them asynchronous). */
  spans(): Promise<ReadableSpan[]>;
  /** Every metric by name, as the SDK aggregated it now. */
  metrics(): Promise<Map<string, MetricData>>;
  /** The Prometheus endpoint's text (null port: started without it). */
  scrape(): Promise<string>;
  shutdown(): Promise<void>;
}

export async function startTestTelemetry(opts: { prometheus?: boolean } = {}): Promise<TestTelemetry> {
  const exporter = new InMemorySpanExporter();
  const processor = new SimpleSpanProcessor({ exporter });
  const reader = new OnDemandReader();
  const telemetry = await startTelemetry({
    instanceId: "test-node",
    metricsPort: opts.prometheus ? 0 : -1,
    metricsHost: "127.0.0.1",
    otlp: false,
    spanProcessors: [processor],
    metricReaders: [reader],
  });
  return {
    telemetry,
    async spans() {
      await processor.forceFlush();
      return exporter.getFinishedSpans();
    },
    async metrics() {
      const { resourceMetrics } = await reader.collect();
      const out = new Map<string, MetricData>();
      for (const sm of resourceMetrics.scopeMetrics) for (const m of sm.metrics) out.set(m.descriptor.name, m);
      return out;
    },
    async scrape() {
      if (telemetry.metricsPort === null) throw new Error("started without the Prometheus endpoint");
      const res = await fetch(`http://127.0.0.1:${telemetry.metricsPort}/metrics`);
      if (!res.ok) throw new Error(`scrape answered ${res.status}`);
      return res.text();
    },
    shutdown: () => telemetry.shutdown(),
  };
}

/** Sum of a counter's (or gauge's) points whose attributes include `attrs`. */
export function sumOf(metric: MetricData | undefined, attrs: Record<string, string> = {}): number {
  if (!metric) return 0;
  let total = 0;
  for (const p of metric.dataPoints as DataPoint<unknown>[]) {
    if (!Object.entries(attrs).every(([k, v]) => p.attributes[k] === v)) continue;
    const v = p.value;
    total += typeof v === "number" ? v : ((v as { count?: number }).count ?? 0);
  }
  return total;
}

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text exposition format (sample lines; comments skipped). */
export function parsePrometheus(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** Sum of the samples named `name` whose labels include `labels`. */
export function promValue(samples: readonly PromSample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}
