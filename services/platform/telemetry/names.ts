// The names deltamesh's metrics and spans are published under. Dashboards,
// alerts and tests use these; renaming one is a breaking change for operators.
// Prometheus sees them with dots as underscores and counters suffixed
// `_total` (e.g. `deltamesh_write_mutations_total`).

/** Counter of mutations through the write pipeline; attribute `outcome`: applied | replayed | rejected. */
export const METRIC_WRITE_MUTATIONS = "deltamesh.write.mutations";
/** Histogram of mutations per group-commit batch (one transaction). */
export const METRIC_WRITE_BATCH_SIZE = "deltamesh.write.batch.size";
/** Histogram of batch transaction time in seconds; attribute `outcome`: ok | error. */
export const METRIC_WRITE_BATCH_DURATION = "deltamesh.write.batch.duration";
/** Counter of concurrent field edits decided by a policy; attributes `policy`, `outcome` (the field's outcome). */
export const METRIC_CONFLICTS = "deltamesh.conflicts";
/** Gauge: 1 for the config revision the node runs, 0 for revisions it ran before; attribute `revision`. */
export const METRIC_CONFIG_INFO = "deltamesh.config.info";
/** Gauge of open change streams (subscribers) on the node. */
export const METRIC_STREAMS_OPEN = "deltamesh.streams.open";
/** Gauge in seconds: now minus the commit time of the last change delivered, for the most-behind subscriber. */
export const METRIC_STREAM_LAG = "deltamesh.stream.lag";
/** Counter of change events delivered to subscribers. */
export const METRIC_STREAM_EVENTS = "deltamesh.stream.events";
/** Gauge: 1 while this node is the cluster leader, else 0. */
export const METRIC_LEADER = "deltamesh.cluster.leader";
/** Gauge of the records the node keeps after writing them (services/store/record-cache.ts). */
export const METRIC_RECORD_CACHE_RECORDS = "deltamesh.record_cache.records";
/**
 * Counter of write batches that merged from kept records instead of reading
 * them; attribute `outcome`: unlocked (every such batch) | stale (of those,
 * the ones a record had changed under, retried under lock).
 */
export const METRIC_RECORD_CACHE_BATCHES = "deltamesh.record_cache.batches";
/** Stable RPC semantic conventions: server call duration in seconds. */
export const METRIC_RPC_SERVER_DURATION = "rpc.server.call.duration";

/** Span around one group-commit transaction. */
export const SPAN_WRITE_BATCH = "deltamesh.write.batch";
/** Span around one message (a batch of events) delivered on a change stream. */
export const SPAN_STREAM_DELIVERY = "deltamesh.stream.deliver";

/** Instrumentation scope of everything deltamesh records itself. */
export const SCOPE = "deltamesh";
