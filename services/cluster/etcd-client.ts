// The one etcd client of a node, tuned for coordination: every unary call has
// a deadline, a failed endpoint is retried after 1 s (not the library's 5 s),
// and watches reconnect within a second, so a node notices a restarted etcd
// quickly. Also the translation of etcd failures into DomainErrors, so no raw
// etcd error reaches a client.
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from "cockatiel";
import { Etcd3, isRecoverableError } from "etcd3";
import { DomainError, isDomainError } from "../platform/errors.js";

export interface EtcdSettings {
  endpoints: string[];
  /** Key prefix of this deployment, ending in "/". */
  prefix: string;
  /** Session lease TTL in seconds: how long a dead node stays member and leader. */
  leaseTtlSeconds: number;
}

/** Deadline of a unary etcd call. */
export const ETCD_CALL_TIMEOUT_MS = 2000;

export function createEtcdClient(settings: EtcdSettings): Etcd3 {
  return new Etcd3({
    hosts: settings.endpoints,
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS }),
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 1 }),
      // The client takes a backoff state (not a factory) and calls next() on it.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }).next(),
    },
  });
}

/** Any etcd failure as a DomainError a client may see (the original stays as `cause` for the log). */
export function etcdUnavailable(e: unknown, what = "the cluster store (etcd)"): DomainError {
  if (isDomainError(e)) return e;
  return new DomainError("unavailable", `${what} is unreachable; retry later`, { reason: "ETCD_UNAVAILABLE", cause: e });
}

/** Key layout under the prefix. */
export const KEYS = {
  /** The whole config document (YAML text). */
  config: "config/document",
  /** One entry per live node, under its session lease. */
  members: "members/",
  /** Election candidates, one per session lease; the lowest create revision leads. */
  election: "election/leader/",
} as const;
