// The seam through which the change-streaming service reports its figures to
// the cluster status (GetStatus `stream_subscribers` / `stream_lag` per node).
// Until a provider is set, both are reported as unknown.

export interface StreamStats {
  /** Open Subscribe streams on this node. */
  subscribers: number;
  /** Committed changes this node's tailer has not yet delivered to its hub. */
  lag: bigint;
}

export interface StreamStatsProvider {
  /** The node's current figures, or null when not known (yet). */
  streamStats(): StreamStats | null;
}

export const UNKNOWN_STREAM_STATS: StreamStatsProvider = { streamStats: () => null };
