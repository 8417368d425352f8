// The tracer and the synchronous instruments recorded on hot paths (RPCs,
// write batches, stream delivery). Code records through `instruments()` at
// call time, so it never matters whether the SDK started before or after a
// module was loaded: until `bindInstruments` runs they are no-ops. (A tracer
// kept from module load would also stay a no-op after an SDK restart: the API
// replaces its proxy provider when disabled.)
import { createNoopMeter, trace, type Counter, type Histogram, type Meter, type Tracer } from "@opentelemetry/api";
import {
  METRIC_CONFLICTS,
  METRIC_RPC_SERVER_DURATION,
  METRIC_STREAM_EVENTS,
  METRIC_WRITE_BATCH_DURATION,
  METRIC_WRITE_BATCH_SIZE,
  METRIC_WRITE_MUTATIONS,
  SCOPE,
} from "./names.js";

export interface Instruments {
  /** Whether spans go anywhere: when not, hot paths skip span and context work entirely. */
  tracing: boolean;
  tracer: Tracer;
  rpcDuration: Histogram;
  writeMutations: Counter;
  batchSize: Histogram;
  batchDuration: Histogram;
  conflicts: Counter;
  streamEvents: Counter;
}

/** Seconds: 1 ms to 10 s (the SDK's default buckets assume milliseconds). */
const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Mutations per batch: powers of two up to twice the default batch limit (512). */
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

function create(meter: Meter, tracing: boolean, version?: string): Instruments {
  return {
    tracing,
    tracer: trace.getTracer(SCOPE, version),
    rpcDuration: meter.createHistogram(METRIC_RPC_SERVER_DURATION, {
      description: "Duration of incoming RPCs",
      unit: "s",
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    }),
    writeMutations: meter.createCounter(METRIC_WRITE_MUTATIONS, {
      description: "Mutations through the write pipeline, by outcome",
      unit: "{mutation}",
    }),
    batchSize: meter.createHistogram(METRIC_WRITE_BATCH_SIZE, {
      description: "Mutations per group-commit batch",
      unit: "{mutation}",
      advice: { explicitBucketBoundaries: BATCH_BUCKETS },
    }),
    batchDuration: meter.createHistogram(METRIC_WRITE_BATCH_DURATION, {
      description: "Duration of group-commit transactions",
      unit: "s",
      advice: { explicitBucketBoundaries: SECONDS_BUCKETS },
    }),
    conflicts: meter.createCounter(METRIC_CONFLICTS, {
      description: "Concurrent field edits decided by a conflict policy",
      unit: "{field}",
    }),
    streamEvents: meter.createCounter(METRIC_STREAM_EVENTS, {
      description: "Change events delivered to stream subscribers",
      unit: "{event}",
    }),
  };
}

let current: Instruments = create(createNoopMeter(), false);

export function instruments(): Instruments {
  return current;
}

/** Record into `meter` (and spans, when `tracing`) from now on; the SDK calls this when it starts. */
export function bindInstruments(meter: Meter, tracing: boolean, version?: string): void {
  current = create(meter, tracing, version);
}

export function unbindInstruments(): void {
  current = create(createNoopMeter(), false);
}
