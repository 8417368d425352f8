// Leader election on etcd, the algorithm of etcd's own concurrency package:
// every node puts a candidate key under the election prefix, bound to its
// session lease; the candidate whose key has the lowest create revision leads.
// When the leader's lease ends (it stopped, died, or was frozen past its TTL)
// etcd deletes its key and the next candidate leads. A new candidate key is
// always created at a higher revision than every existing one, so each new
// leader's create revision, its term, is higher than every earlier leader's:
// it is the fencing token of the leader's database writes.
//
// Built on the etcd3 client's lease, put, range and watch calls (not its
// Election class) so the candidate key shares the node's session lease, whose
// validity the node tracks itself (./session.ts), and the term is explicit.
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import type { Logger } from "../platform/logger.js";
import { coalesced } from "./coalesce.js";
import { KEYS } from "./etcd-client.js";
import { renewIntervalMs, type Session } from "./session.js";

export interface LeaderView {
  nodeId: string;
  /** The create revision of the leader's candidate key. */
  term: bigint;
  /** The candidate key (relative to the election prefix): the leader's lease id. */
  key: string;
}

export interface Candidate {
  key: string;
  nodeId: string;
  createRevision: bigint;
}

/** The leader among candidates: the lowest create revision. Pure. */
export function electedLeader(candidates: readonly Candidate[]): LeaderView | null {
  let best: Candidate | null = null;
  for (const c of candidates) if (!best || c.createRevision < best.createRevision) best = c;
  return best ? { nodeId: best.nodeId, term: best.createRevision, key: best.key } : null;
}

export function candidateOf(kv: IKeyValue, prefix: string): Candidate {
  const key = kv.key.toString();
  return { key: key.startsWith(prefix) ? key.slice(prefix.length) : key, nodeId: kv.value.toString(), createRevision: BigInt(kv.create_revision) };
}

export class LeaderElection {
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #nodeId: string;
  readonly #session: Session;
  readonly #log: Logger;
  readonly #listeners = new Set<() => void>();
  #leader: LeaderView | null = null;
  #campaigned: string | null = null;
  #watcher: Watcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #refresh: () => Promise<void>;
  #unsubscribe: (() => void) | null = null;

  constructor(client: Etcd3, prefix: string, nodeId: string, session: Session, log: Logger) {
    this.#client = client;
    this.#prefix = prefix + KEYS.election;
    this.#nodeId = nodeId;
    this.#session = session;
    this.#log = log;
    this.#refresh = coalesced(
      () => (this.#closed ? Promise.resolve() : this.#refreshOnce()),
      (e) => this.#log.debug({ err: e }, "election check failed"),
    );
  }

  start(): void {
    this.#unsubscribe = this.#session.onChange(() => void this.refresh());
    const watcher = this.#client.watch().prefix(this.#prefix).watcher();
    watcher.on("put", () => void this.refresh());
    watcher.on("delete", () => void this.refresh());
    // After a reconnect events may have been missed: look again.
    watcher.on("connected", () => void this.refresh());
    watcher.on("error", (e) => this.#log.warn({ err: e }, "election watch failed; relying on periodic checks"));
    this.#watcher = watcher;
    // A fallback for anything a watch could miss.
    this.#timer = setInterval(() => void this.refresh(), renewIntervalMs(this.#session.ttlSeconds));
    this.#timer.unref();
    void this.refresh();
  }

  /** The last observed leader (null: none, or not known yet). */
  leader(): LeaderView | null {
    return this.#leader;
  }

  /** This node's term, if the last observation made it the leader and its lease is still valid. */
  myTerm(): bigint | null {
    const lease = this.#session.snapshot().leaseId;
    const l = this.#leader;
    if (!l || lease === null || l.key !== lease || this.#session.validForMs() <= 0) return null;
    return l.term;
  }

  /** Called when the observed leader changes. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Campaigns on the current lease if not yet done, then re-reads who leads. Never rejects. */
  refresh(): Promise<void> {
    return this.#refresh();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    if (this.#timer) clearInterval(this.#timer);
    await this.#refresh();
    await this.#watcher?.cancel().catch(() => undefined);
  }

  async #refreshOnce(): Promise<void> {
    const lease = this.#session.snapshot().leaseId;
    if (lease !== null && this.#campaigned !== lease) {
      // Candidate key = the lease id: unique per session, gone with it.
      await this.#client.put(this.#prefix + lease).value(this.#nodeId).lease(lease).exec();
      this.#campaigned = lease;
      this.#log.info({ lease }, "campaigning for leader");
    }
    const res = await this.#client.getAll().prefix(this.#prefix).sort("Create", "Ascend").limit(1).exec();
    const first = res.kvs[0];
    const next = first ? electedLeader([candidateOf(first, this.#prefix)]) : null;
    const prev = this.#leader;
    if (prev?.key === next?.key && prev?.term === next?.term && prev?.nodeId === next?.nodeId) return;
    this.#leader = next;
    this.#log.info({ leader: next?.nodeId ?? null, term: next?.term.toString() ?? null, self: next?.key === lease }, "leader observed");
    for (const l of [...this.#listeners]) l();
  }
}
