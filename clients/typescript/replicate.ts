// A local copy of one collection, kept up to date from ChangeService:
//
//   const replica = replicate("customers", { clients: [nodeA, nodeB] });
//   await replica.ready;                 // snapshot loaded
//   replica.records.get(id);             // always current, in change-log order
//   await replica.verify();              // digest check, repairs what differs
//   await replica.close();
//
// It starts with a snapshot, then follows the stream. After any disconnect it
// resumes from its last cursor, on the next client in the list (another node);
// when the server answers CURSOR_EXPIRED it loads a fresh snapshot. `clients`
// are anything with the ChangeService methods: a Connect client or the
// project's grpc-js client (services/platform/transport/grpc-client.ts).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  ChangeEvent,
  GetDigestBucketRequestSchema,
  GetDigestBucketResponse,
  GetDigestRequestSchema,
  GetDigestResponse,
  SubscribeRequestSchema,
  SubscribeResponse,
} from "../../gen/deltamesh/v1/changes_pb.js";
import type { FieldFilterSchema } from "../../gen/deltamesh/v1/records_pb.js";
import type { FieldClock, Record as RecordPb, Value } from "../../gen/deltamesh/v1/types_pb.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { decodeCursor } from "../../services/changes/cursor.js";
import { bucketOf, DigestBuilder, differingBuckets, type Bucket } from "../../services/changes/digest.js";

/** The ChangeService methods the replica calls. */
export interface ChangeClient {
  subscribe(req: MessageInitShape<typeof SubscribeRequestSchema>, opts?: { signal?: AbortSignal }): AsyncIterable<SubscribeResponse>;
  getDigest(req: MessageInitShape<typeof GetDigestRequestSchema>): Promise<GetDigestResponse>;
  getDigestBucket(req: MessageInitShape<typeof GetDigestBucketRequestSchema>): Promise<GetDigestBucketResponse>;
}

export interface ReplicaRecord {
  id: string;
  version: bigint;
  fields: Record<string, Value>;
  clocks: Record<string, FieldClock>;
}

export interface ReplicateOptions {
  /** Tried in turn: after a failure the replica resumes on the next one. */
  clients: ChangeClient | ChangeClient[];
  /** Only records matching these (the same as Subscribe's filters). */
  filters?: MessageInitShape<typeof FieldFilterSchema>[];
  /** Only these fields (empty: all). */
  fields?: string[];
  /** Resume from a saved cursor instead of starting with a snapshot. */
  cursor?: string;
  /** Heartbeat interval asked of the server (default 1000 ms). */
  heartbeatIntervalMs?: number;
  /** Reconnect backoff bounds (default 50 ms to 2 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Each applied event, after it changed the copy. */
  onEvent?: (event: ChangeEvent) => void;
  /** Each stream failure (the replica reconnects by itself). */
  onError?: (error: ConnectError) => void;
}

export interface VerifyResult {
  /** The change-log position the check was made at. */
  cursor: string;
  bucketCount: number;
  /** Buckets whose hash differed from the server's. */
  mismatched: number[];
  /** Records replaced or removed while repairing them. */
  repairedRecords: number;
}

export interface ReplicaStats {
  events: number;
  reconnects: number;
  snapshots: number;
  /** Upserts for records the copy did not hold (would mean a lost event; expected 0). */
  unknownRecordUpserts: number;
  /** Events for versions the copy already had (skipped; only after a repair). */
  staleEvents: number;
}

const seqOf = (cursor: string): bigint => decodeCursor(cursor).seq;

export class Replica {
  /** The copy, by record id. */
  records = new Map<string, ReplicaRecord>();
  /** The position of the copy: resume after it. Empty until the first snapshot completes. */
  cursor: string;
  readonly stats: ReplicaStats = { events: 0, reconnects: 0, snapshots: 0, unknownRecordUpserts: 0, staleEvents: 0 };
  /** Resolves once the copy is usable (snapshot loaded or resumed). */
  readonly ready: Promise<void>;

  private readonly clients: ChangeClient[];
  private clientIndex = 0;
  private closed = false;
  private abort = new AbortController();
  private readonly loop: Promise<void>;
  private resolveReady!: () => void;
  private incoming: Map<string, ReplicaRecord> | null = null;
  /** While verifying, received events wait here instead of being applied. */
  private held: ChangeEvent[] | null = null;
  /** Repaired buckets and the position their records were fetched at. */
  private repaired: { bucketCount: number; at: Map<number, bigint> } | null = null;
  private waiters = new Set<() => void>();

  constructor(
    readonly collection: string,
    private readonly opts: ReplicateOptions,
  ) {
    this.clients = Array.isArray(opts.clients) ? opts.clients : [opts.clients];
    if (this.clients.length === 0) throw new Error("replicate needs at least one client");
    this.cursor = opts.cursor ?? "";
    this.ready = new Promise((resolve) => (this.resolveReady = resolve));
    if (this.cursor) this.resolveReady();
    this.loop = this.run();
  }

  /** Resolves once the copy has reached `cursor` (or a later position). */
  async waitForCursor(cursor: string, timeoutMs = 30_000): Promise<void> {
    const target = seqOf(cursor);
    await this.waitFor(() => this.cursor !== "" && seqOf(this.cursor) >= target, timeoutMs, `cursor ${cursor}`);
  }

  /**
   * Compares the copy with the server's digest at one log position and, with
   * `repair` (default), re-fetches only the buckets that differ.
   */
  async verify(opts: { bucketCount?: number; repair?: boolean; timeoutMs?: number } = {}): Promise<VerifyResult> {
    const bucketCount = opts.bucketCount ?? 64;
    const timeoutMs = opts.timeoutMs ?? 30_000;
    await this.ready;
    this.held = [];
    try {
      const digest = await this.call((c) => c.getDigest({ collection: this.collection, filters: this.opts.filters ?? [], bucketCount, minCursor: this.cursor }));
      await this.applyHeldUpTo(seqOf(digest.cursor), timeoutMs);
      const mismatched = differingBuckets(this.digest(bucketCount), digest.buckets.map((b): Bucket => ({ index: b.index, count: Number(b.recordCount), hash: b.hash })));
      let repairedRecords = 0;
      if (opts.repair ?? true) {
        this.repaired = { bucketCount, at: new Map() };
        for (const bucket of mismatched) {
          const res = await this.call((c) =>
            c.getDigestBucket({ collection: this.collection, filters: this.opts.filters ?? [], fields: this.opts.fields ?? [], bucketCount, bucket, minCursor: this.cursor }),
          );
          const at = seqOf(res.cursor);
          // The bucket's records are as of `at`: its events up to there are already in them.
          this.repaired.at.set(bucket, at);
          await this.applyHeldUpTo(at, timeoutMs);
          for (const [id] of this.records) {
            if (bucketOf(id, bucketCount) === bucket) {
              this.records.delete(id);
              repairedRecords++;
            }
          }
          for (const r of res.records) {
            this.records.set(r.id, fromRecord(r));
            repairedRecords++;
          }
        }
      }
      return { cursor: digest.cursor, bucketCount, mismatched, repairedRecords };
    } finally {
      const held = this.held;
      this.held = null;
      for (const ev of held) this.apply(ev);
      this.repaired = null;
    }
  }

  /** The digest buckets of the copy. */
  digest(bucketCount: number): Bucket[] {
    const b = new DigestBuilder(bucketCount);
    for (const r of this.records.values()) b.add(r.id, r.version);
    return b.buckets;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    let backoff = this.opts.retryMinMs ?? 50;
    while (!this.closed) {
      const client = this.clients[this.clientIndex % this.clients.length]!;
      this.abort = new AbortController();
      let received = false;
      try {
        const start = this.cursor
          ? { case: "afterCursor" as const, value: this.cursor }
          : { case: "snapshot" as const, value: {} };
        if (!this.cursor) this.incoming = new Map();
        const stream = client.subscribe(
          {
            collections: [{ collection: this.collection, filters: this.opts.filters ?? [], fields: this.opts.fields ?? [] }],
            start,
            heartbeatIntervalMs: this.opts.heartbeatIntervalMs ?? 1000,
          },
          { signal: this.abort.signal },
        );
        for await (const msg of stream) {
          if (!received) {
            received = true;
            backoff = this.opts.retryMinMs ?? 50;
          }
          for (const ev of msg.events) this.receive(ev);
        }
        throw new ConnectError("the stream ended", Code.Unavailable);
      } catch (e) {
        if (this.closed) break;
        const err = ConnectError.from(e);
        this.opts.onError?.(err);
        this.stats.reconnects++;
        const reasons = err.findDetails(ErrorInfoSchema).map((i) => i.reason);
        if (reasons.includes("CURSOR_EXPIRED")) {
          this.cursor = ""; // the log no longer reaches back to us: start over from a snapshot
        } else if (err.code !== Code.ResourceExhausted && !reasons.includes("TOKEN_EXPIRED")) {
          // That node may be gone: try the next. (Too slow or an expired token
          // is not the node's fault: resume there, the client's credentials
          // supplying a fresh token.)
          this.clientIndex++;
        }
        this.incoming = null;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, this.opts.retryMaxMs ?? 2000);
      }
    }
  }

  private receive(ev: ChangeEvent): void {
    if (this.held && ev.kind.case !== "snapshotRecord" && ev.kind.case !== "snapshotEnd") this.held.push(ev);
    else this.apply(ev);
    for (const w of [...this.waiters]) w();
  }

  private apply(ev: ChangeEvent): void {
    this.stats.events++;
    const k = ev.kind;
    switch (k.case) {
      case "snapshotRecord":
        this.incoming?.set(k.value.record!.id, fromRecord(k.value.record!));
        return;
      case "snapshotEnd":
        if (this.incoming) this.records = this.incoming;
        this.incoming = null;
        this.stats.snapshots++;
        this.cursor = ev.cursor;
        this.resolveReady();
        this.opts.onEvent?.(ev);
        return;
      case "heartbeat":
        break;
      case "upsert": {
        const v = k.value;
        const r = this.records.get(v.id);
        if (this.isStale(v.id, v.version, r, ev.cursor)) break;
        if (!r && !v.created) this.stats.unknownRecordUpserts++;
        const next: ReplicaRecord = r ?? { id: v.id, version: 0n, fields: {}, clocks: {} };
        Object.assign(next.fields, v.set);
        Object.assign(next.clocks, v.clocks);
        for (const f of v.cleared) delete next.fields[f];
        next.version = v.version;
        this.records.set(v.id, next);
        break;
      }
      case "delete":
      case "leaveScope": {
        if (this.isStale(k.value.id, k.value.version, this.records.get(k.value.id), ev.cursor, true)) break;
        this.records.delete(k.value.id);
        break;
      }
      case "enterScope": {
        const rec = k.value.record!;
        if (this.isStale(rec.id, rec.version, this.records.get(rec.id), ev.cursor, true)) break;
        this.records.set(rec.id, fromRecord(rec));
        break;
      }
    }
    if (ev.cursor) this.cursor = ev.cursor;
    this.opts.onEvent?.(ev);
  }

  /** An event the copy already reflects: from a repaired bucket, or an older version. */
  private isStale(id: string, version: bigint, current: ReplicaRecord | undefined, cursor: string, sameVersionApplies = false): boolean {
    const repairedAt = this.repaired?.at.get(bucketOf(id, this.repaired.bucketCount));
    const stale =
      (repairedAt !== undefined && cursor !== "" && seqOf(cursor) <= repairedAt) ||
      (current !== undefined && (sameVersionApplies ? current.version > version : current.version >= version));
    if (stale) this.stats.staleEvents++;
    return stale;
  }

  /** Applies held events up to log position `at`; resolves once the copy stands exactly there. */
  private async applyHeldUpTo(at: bigint, timeoutMs: number): Promise<void> {
    const reached = () => {
      const held = this.held!;
      while (held.length > 0 && seqOf(held[0]!.cursor) <= at) this.apply(held.shift()!);
      // An event past `at` means every event up to `at` has arrived (the stream is in order).
      return (this.cursor !== "" && seqOf(this.cursor) >= at) || held.length > 0;
    };
    await this.waitFor(reached, timeoutMs, `position ${at}`);
  }

  private waitFor(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`replica of ${this.collection} did not reach ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  /** A unary call on the current client, moving on to the next ones if it fails as unavailable. */
  private async call<T>(fn: (c: ChangeClient) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await fn(this.clients[this.clientIndex % this.clients.length]!);
      } catch (e) {
        if (ConnectError.from(e).code !== Code.Unavailable || attempt >= this.clients.length) throw e;
        this.clientIndex++;
      }
    }
  }
}

function fromRecord(r: RecordPb): ReplicaRecord {
  return { id: r.id, version: r.version, fields: { ...r.fields }, clocks: { ...r.clocks } };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts replicating `collection`; see Replica. */
export function replicate(collection: string, opts: ReplicateOptions): Replica {
  return new Replica(collection, opts);
}
