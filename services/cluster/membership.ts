// Membership: each node keeps one entry under `members/<node id>`, bound to
// its session lease, so a node that dies disappears within the lease TTL and
// one that stops cleanly disappears at once (it revokes its lease). The entry
// also carries the node's own live figures (config revision, leadership,
// stream stats), republished when they change and every few seconds, so any
// node can answer ClusterService.GetStatus for the whole cluster.
import type { Etcd3 } from "etcd3";
import type { Logger } from "../platform/logger.js";
import { coalesced } from "./coalesce.js";
import { KEYS } from "./etcd-client.js";
import type { Session } from "./session.js";

export type Coordination = "standalone" | "connected" | "degraded";

/** A node as it describes itself. Times are RFC 3339; bigints are decimal text (JSON has no bigint). */
export interface MemberInfo {
  id: string;
  address: string;
  services: string[];
  version: string;
  startTime: string;
  configRevision: string;
  /** When the node swapped in that config. */
  configTime: string;
  leader: boolean;
  leaderSince: string | null;
  coordination: Coordination;
  streamSubscribers: number | null;
  streamLag: string | null;
  reportTime: string;
}

export function encodeMember(m: MemberInfo): string {
  return JSON.stringify(m);
}

const isStr = (v: unknown): v is string => typeof v === "string";

/** Parses an entry; null when it is not one (another version's shape, or garbage). Pure. */
export function decodeMember(text: string): MemberInfo | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  if (!isStr(o.id) || !isStr(o.address) || !Array.isArray(o.services) || !o.services.every(isStr)) return null;
  if (!isStr(o.version) || !isStr(o.startTime) || !isStr(o.configRevision) || !isStr(o.reportTime)) return null;
  const configTime = isStr(o.configTime) ? o.configTime : o.startTime;
  const coordination = o.coordination === "standalone" || o.coordination === "degraded" ? o.coordination : "connected";
  return {
    id: o.id,
    address: o.address,
    services: o.services,
    version: o.version,
    startTime: o.startTime,
    configRevision: o.configRevision,
    configTime,
    leader: o.leader === true,
    leaderSince: isStr(o.leaderSince) ? o.leaderSince : null,
    coordination,
    streamSubscribers: typeof o.streamSubscribers === "number" ? o.streamSubscribers : null,
    streamLag: isStr(o.streamLag) ? o.streamLag : null,
    reportTime: o.reportTime,
  };
}

/** How often an entry is republished even when nothing changed (its report time shows it is fresh). */
export const MEMBER_REFRESH_MS = 5000;

export class Membership {
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #session: Session;
  readonly #self: () => MemberInfo;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  readonly #publish: () => Promise<void>;
  #unsubscribe: (() => void) | null = null;

  constructor(client: Etcd3, prefix: string, session: Session, self: () => MemberInfo, log: Logger) {
    this.#client = client;
    this.#prefix = prefix + KEYS.members;
    this.#session = session;
    this.#self = self;
    this.#log = log;
    this.#publish = coalesced(
      async () => {
        const lease = this.#session.snapshot().leaseId;
        if (lease === null || this.#closed) return;
        const me = this.#self();
        await this.#client.put(this.#prefix + me.id).value(encodeMember(me)).lease(lease).exec();
      },
      (e) => this.#log.debug({ err: e }, "membership publish failed"),
    );
  }

  start(): void {
    let generation = -1;
    this.#unsubscribe = this.#session.onChange((s) => {
      if (s.generation !== generation && s.leaseId !== null) {
        generation = s.generation;
        void this.publish();
      }
    });
    this.#timer = setInterval(() => void this.publish(), MEMBER_REFRESH_MS);
    this.#timer.unref();
    void this.publish();
  }

  /** Writes this node's entry now (coalesced); never rejects. */
  publish(): Promise<void> {
    return this.#publish();
  }

  /** Every registered node, by id. @throws the etcd error when unreachable. */
  async list(): Promise<MemberInfo[]> {
    const all = await this.#client.getAll().prefix(this.#prefix).strings();
    return Object.values(all)
      .map(decodeMember)
      .filter((m): m is MemberInfo => m !== null)
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    if (this.#timer) clearInterval(this.#timer);
    await this.#publish();
  }
}
