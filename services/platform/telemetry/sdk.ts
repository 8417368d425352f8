// Starts OpenTelemetry for this process (one deltamesh node): the Node SDK
// with the Prometheus scrape endpoint, OTLP export of spans and metrics when
// an OTLP endpoint is configured, and the `pg` instrumentation. Everything
// deltamesh records goes through @opentelemetry/api, so without this (tests,
// `deltamesh dev` without settings) recording is a no-op.
//
// OTLP is configured by the standard variables, read by the exporters
// themselves: OTEL_EXPORTER_OTLP_ENDPOINT (base URL; /v1/traces and
// /v1/metrics are appended), OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf, the
// default; http/json; grpc), OTEL_EXPORTER_OTLP_HEADERS, OTEL_METRIC_EXPORT_INTERVAL,
// OTEL_TRACES_SAMPLER(_ARG), OTEL_RESOURCE_ATTRIBUTES.
import { createRequire } from "node:module";
import { context, diag, DiagLogLevel, metrics, propagation, trace, type ContextManager } from "@opentelemetry/api";
import { OTLPMetricExporter as OtlpGrpcMetrics } from "@opentelemetry/exporter-metrics-otlp-grpc";
import { OTLPMetricExporter as OtlpJsonMetrics } from "@opentelemetry/exporter-metrics-otlp-http";
import { OTLPMetricExporter as OtlpProtoMetrics } from "@opentelemetry/exporter-metrics-otlp-proto";
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { OTLPTraceExporter as OtlpGrpcTraces } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as OtlpJsonTraces } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtoTraces } from "@opentelemetry/exporter-trace-otlp-proto";
import { PgInstrumentation } from "@opentelemetry/instrumentation-pg";
import { defaultResource, envDetector, hostDetector, resourceFromAttributes } from "@opentelemetry/resources";
import { PeriodicExportingMetricReader, type IMetricReader, type PushMetricExporter } from "@opentelemetry/sdk-metrics";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace";
import { ATTR_SERVICE_INSTANCE_ID, ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import { VERSION } from "../version.js";
import { bindGauges } from "./gauges.js";
import { bindInstruments, unbindInstruments } from "./instruments.js";
import { startMetricsServer, type RunningMetricsServer } from "./metrics-server.js";
import { SCOPE } from "./names.js";

export interface TelemetryLogger {
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
}

export interface TelemetryOptions {
  /** `service.instance.id` of everything exported (the node id). */
  instanceId: string;
  /** Prometheus endpoint port; 0 picks a free one, negative disables it. */
  metricsPort: number;
  /** Where the Prometheus endpoint listens. */
  metricsHost: string;
  /** Export spans and metrics over OTLP (configured by the OTEL_* variables). */
  otlp: boolean;
  /** Extra span processors (tests: an in-memory exporter). */
  spanProcessors?: SpanProcessor[];
  /** Extra metric readers. */
  metricReaders?: IMetricReader[];
  /** Where the SDK's own warnings go (failed exports...). */
  log?: TelemetryLogger;
}

export interface Telemetry {
  /** Whether spans are recorded (an OTLP endpoint or span processors); when not, logs carry no trace ids. */
  tracing: boolean;
  /** The Prometheus endpoint's port, null when disabled. */
  metricsPort: number | null;
  /** Flushes pending spans and metrics, stops the endpoint. Idempotent. */
  shutdown(): Promise<void>;
}

type Protocol = "http/protobuf" | "http/json" | "grpc";

function protocolFor(signal: "TRACES" | "METRICS"): Protocol {
  const p = process.env[`OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`] || process.env.OTEL_EXPORTER_OTLP_PROTOCOL || "http/protobuf";
  if (p === "http/protobuf" || p === "http/json" || p === "grpc") return p;
  throw new Error(`OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf, http/json or grpc, got ${JSON.stringify(p)}`);
}

function otlpSpanExporter(): SpanExporter {
  const p = protocolFor("TRACES");
  return p === "grpc" ? new OtlpGrpcTraces() : p === "http/json" ? new OtlpJsonTraces() : new OtlpProtoTraces();
}

function otlpMetricExporter(): PushMetricExporter {
  const p = protocolFor("METRICS");
  return p === "grpc" ? new OtlpGrpcMetrics() : p === "http/json" ? new OtlpJsonMetrics() : new OtlpProtoMetrics();
}

let active: Telemetry | null = null;

export async function startTelemetry(opts: TelemetryOptions): Promise<Telemetry> {
  if (active) throw new Error("telemetry is already started in this process");
  const log = opts.log;
  if (log) {
    diag.setLogger(
      {
        error: (msg, ...args) => log.warn({ args }, `opentelemetry: ${msg}`),
        warn: (msg, ...args) => log.warn({ args }, `opentelemetry: ${msg}`),
        info: () => undefined,
        debug: () => undefined,
        verbose: () => undefined,
      },
      DiagLogLevel.WARN,
    );
  }

  const readers: IMetricReader[] = [...(opts.metricReaders ?? [])];
  const prometheus = opts.metricsPort >= 0 ? new PrometheusExporter({ preventServerStart: true }) : null;
  if (prometheus) readers.push(prometheus);
  if (opts.otlp) {
    const interval = Number(process.env.OTEL_METRIC_EXPORT_INTERVAL) || 60_000;
    readers.push(new PeriodicExportingMetricReader({ exporter: otlpMetricExporter(), exportIntervalMillis: interval }));
  }
  const spanProcessors = [...(opts.spanProcessors ?? [])];
  if (opts.otlp) spanProcessors.push(new BatchSpanProcessor({ exporter: otlpSpanExporter() }));

  // Without a span consumer, no context manager and no propagator: with
  // AsyncLocalStorage enabled every promise in the process pays for context
  // tracking, which buys nothing when no span is recorded.
  const tracing = spanProcessors.length > 0;

  // Queries outside a recorded write batch (tailer polls, migrations, unsampled
  // calls) make no spans of their own. Only with tracing: the instrumentation
  // costs tens of µs per query even when it records nothing (measured: a
  // quarter of single-mutation write throughput), and its query metrics
  // duplicate the batch metrics.
  const pg = new PgInstrumentation({ requireParentSpan: true });
  const sdk = new NodeSDK({
    resource: defaultResource().merge(
      resourceFromAttributes({
        [ATTR_SERVICE_NAME]: "deltamesh",
        [ATTR_SERVICE_VERSION]: VERSION,
        [ATTR_SERVICE_INSTANCE_ID]: opts.instanceId,
      }),
    ),
    // Not the process detector: its command line would carry a --database-url password.
    resourceDetectors: [envDetector, hostDetector],
    metricReaders: readers,
    spanProcessors,
    instrumentations: tracing ? [pg] : [],
    // null = "do not register" (documented by the SDK; its typings lag behind).
    ...(tracing ? {} : { contextManager: null as unknown as ContextManager, textMapPropagator: null }),
  });
  sdk.start();
  // `pg` was loaded through ESM before the SDK started, which the require hook
  // never saw; requiring it now through the hook patches its shared Client
  // prototype in place, so every existing and future pool is instrumented.
  if (tracing) createRequire(import.meta.url)("pg");

  const meter = metrics.getMeter(SCOPE, VERSION);
  bindInstruments(meter, tracing, VERSION);
  bindGauges(meter);

  let server: RunningMetricsServer | null = null;
  try {
    if (prometheus) server = await startMetricsServer(prometheus, opts.metricsHost, opts.metricsPort);
  } catch (e) {
    await sdk.shutdown().catch(() => undefined);
    resetGlobals(pg);
    throw e;
  }

  let stopping: Promise<void> | null = null;
  const telemetry: Telemetry = {
    tracing,
    metricsPort: server?.port ?? null,
    shutdown() {
      stopping ??= (async () => {
        await server?.close();
        await sdk.shutdown().catch((e: unknown) => log?.warn({ err: e }, "telemetry shutdown: flushing failed"));
        resetGlobals(pg);
        active = null;
      })();
      return stopping;
    },
  };
  active = telemetry;
  log?.info({ metricsPort: telemetry.metricsPort, otlp: opts.otlp }, "telemetry started");
  return telemetry;
}

/** Back to the API's no-op state, so a later start (tests) registers afresh. */
function resetGlobals(pg: PgInstrumentation): void {
  pg.disable();
  unbindInstruments();
  trace.disable();
  metrics.disable();
  propagation.disable();
  context.disable();
  diag.disable();
}
