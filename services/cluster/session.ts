// A node's session with etcd: one lease that carries its membership entry and
// its election candidacy, renewed by this module (not the etcd3 library's
// automatic keepalive) so the node knows, conservatively, until when etcd
// could still consider the lease alive:
//
//   valid until = (time the renewal request was sent) + the TTL etcd granted
//
// etcd counts the TTL from when it received the request, which is later, so
// the node's view never outlives etcd's. A leader acts only while its lease is
// valid by this measure: when etcd is unreachable it stops in time, and a node
// frozen past its lease (SIGSTOP, GC pause) finds its validity gone on resume
// before any timer of its own runs a duty.
//
// A lost lease (etcd says it expired) is replaced by a new one; listeners
// re-register on it. While etcd is unreachable the node keeps retrying; when
// etcd comes back with the lease still alive (etcd renews every lease's TTL
// when it restarts), nothing else needs to happen.
import { performance } from "node:perf_hooks";
import { EtcdLeaseInvalidError, type Etcd3, type Lease } from "etcd3";
import type { Logger } from "../platform/logger.js";

export type SessionState = "connecting" | "connected" | "degraded" | "closed";

export interface SessionSnapshot {
  state: SessionState;
  /** The current lease (decimal etcd lease id), or null before the first grant. */
  leaseId: string | null;
  /** Bumped for every new lease. */
  generation: number;
}

/** Monotonic milliseconds: unaffected by wall-clock steps, and it keeps counting while the process is stopped. */
export const monotonicNow = (): number => performance.now();

/** The renewal cadence: a third of the TTL, like etcd's own clients. */
export function renewIntervalMs(ttlSeconds: number): number {
  return Math.max(200, Math.floor((ttlSeconds * 1000) / 3));
}

export class Session {
  readonly #client: Etcd3;
  readonly #ttlSeconds: number;
  readonly #log: Logger;
  readonly #listeners = new Set<(s: SessionSnapshot) => void>();
  #lease: Lease | null = null;
  #leaseId: string | null = null;
  #generation = 0;
  #state: SessionState = "connecting";
  #validUntil = 0;
  #timer: NodeJS.Timeout | null = null;
  #wake: (() => void) | null = null;
  #loop: Promise<void> | null = null;

  constructor(client: Etcd3, ttlSeconds: number, log: Logger) {
    this.#client = client;
    this.#ttlSeconds = ttlSeconds;
    this.#log = log;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  snapshot(): SessionSnapshot {
    return { state: this.#state, leaseId: this.#leaseId, generation: this.#generation };
  }

  /** Milliseconds the lease is certainly still alive in etcd (0 when not). */
  validForMs(): number {
    if (this.#state === "closed" || this.#leaseId === null) return 0;
    return Math.max(0, this.#validUntil - monotonicNow());
  }

  get ttlSeconds(): number {
    return this.#ttlSeconds;
  }

  /** Called on every state, lease or generation change. Returns an unsubscribe function. */
  onChange(listener: (s: SessionSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Revokes the lease, so the node's keys vanish at once (a clean handover, no TTL wait). */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    const lease = this.#lease;
    this.#set("closed");
    this.#wake?.();
    if (this.#timer) clearTimeout(this.#timer);
    await this.#loop;
    if (lease) {
      await lease.revoke({ deadline: Date.now() + 2000 }).catch((e: unknown) => this.#log.warn({ err: e }, "could not revoke the session lease; it expires by itself"));
    }
  }

  /** A method, not a field read, so TypeScript does not narrow it across awaits. */
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  #set(state: SessionState): void {
    if (this.#state === "closed" || this.#state === state) return;
    const was = this.#state;
    this.#state = state;
    if (state === "degraded") this.#log.warn({ was }, "etcd unreachable: coordination degraded (serving with the last good config, no leader duties)");
    else if (state === "connected" && was === "degraded") this.#log.info("etcd reachable again: coordination restored");
    this.#emit();
  }

  #emit(): void {
    const s = this.snapshot();
    for (const l of [...this.#listeners]) {
      try {
        l(s);
      } catch (e) {
        this.#log.warn({ err: e }, "session listener failed");
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(resolve, ms);
    });
  }

  async #run(): Promise<void> {
    const interval = renewIntervalMs(this.#ttlSeconds);
    // Retry quickly while degraded: the lease may still be alive and worth saving.
    const retry = Math.max(100, Math.floor(interval / 3));
    while (this.#state !== "closed") {
      const ok = this.#lease ? await this.#renew(interval) : await this.#grant(interval);
      if (this.#isClosed()) return;
      await this.#sleep(ok ? interval : retry);
    }
  }

  async #grant(timeoutMs: number): Promise<boolean> {
    const sentAt = monotonicNow();
    const lease = this.#client.lease(this.#ttlSeconds, { autoKeepAlive: false, deadline: Date.now() + Math.max(timeoutMs, 1000) });
    lease.on("lost", () => undefined); // grant failures are handled below
    try {
      const id = await lease.grant();
      if (this.#isClosed()) {
        await lease.revoke().catch(() => undefined);
        return false;
      }
      this.#lease = lease;
      this.#leaseId = id;
      this.#validUntil = sentAt + this.#ttlSeconds * 1000;
      this.#generation++;
      this.#log.info({ lease: id, ttlSeconds: this.#ttlSeconds }, "etcd session lease granted");
      this.#state = "connected";
      this.#emit();
      return true;
    } catch (e) {
      this.#log.debug({ err: e }, "etcd lease grant failed");
      this.#set("degraded");
      return false;
    }
  }

  async #renew(timeoutMs: number): Promise<boolean> {
    const lease = this.#lease!;
    const sentAt = monotonicNow();
    try {
      const res = await lease.keepaliveOnce({ deadline: Date.now() + Math.max(timeoutMs, 500) });
      const ttl = Number(res.TTL);
      if (lease !== this.#lease) return false;
      this.#validUntil = sentAt + ttl * 1000;
      this.#set("connected");
      return true;
    } catch (e) {
      if (lease !== this.#lease) return false;
      if (e instanceof EtcdLeaseInvalidError) {
        // etcd dropped the lease (it expired while we could not renew it, or
        // while this process was frozen): our keys are gone; start over.
        this.#log.warn({ lease: this.#leaseId }, "etcd session lease expired; registering again with a new one");
        this.#lease = null;
        this.#leaseId = null;
        this.#validUntil = 0;
        this.#emit();
        return this.#grant(timeoutMs);
      }
      this.#log.debug({ err: e }, "etcd lease renewal failed");
      this.#set("degraded");
      return false;
    }
  }
}
