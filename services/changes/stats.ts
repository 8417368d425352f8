// Stream statistics other modules read (ClusterService.GetStatus, metrics):
// a small interface so they need nothing else from services/changes.

export interface StreamStats {
  /** Open Subscribe streams on this node. */
  subscribers: number;
  /** Of which attached to the live hub. */
  liveSubscribers: number;
  /** Of which reading history (catch-up, snapshot, view swap). */
  catchingUp: number;
  /** Distinct views among live subscribers (live events are encoded once per view). */
  views: number;
  /** The last change this node's tailer has read. */
  tailerSeq: bigint;
  tailerCursor: string;
  /** Commit time of that change (null: none read since start). */
  tailerCommitTime: Date | null;
  /** Committed changes the tailer has yet to read, as of its latest read. */
  tailerBehind: bigint;
  /**
   * Largest subscriber lag: now minus the commit time of the last change a
   * subscriber has been brought up to, for subscribers that still have
   * changes to receive; 0 when every subscriber is caught up.
   */
  maxLagMs: number;
}

export interface StreamStatsSource {
  streamStats(): StreamStats;
}
