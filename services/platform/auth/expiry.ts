// Calls that outlive their credential. A token is checked when a call
// starts; a stream opened with it could otherwise go on showing data long
// after the token (and the grants in it) expired. The stream is ended at the
// token's expiry with UNAUTHENTICATED, and the client reconnects with a fresh
// token and resumes from the last cursor it received.
import type { Principal } from "../principal.js";
import { unauthenticated } from "./jwt.js";
import type { DomainError } from "../errors.js";

/** Longest delay setTimeout takes; later expiries are re-armed in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface CredentialWatch {
  /** Aborted when the call's own signal is, or when the credential expires. */
  readonly signal: AbortSignal;
  /** The error to end the call with if the credential expired (null: it did not). */
  expired(): DomainError | null;
  dispose(): void;
}

export function watchCredential(principal: Principal, callSignal: AbortSignal, now: () => number = Date.now): CredentialWatch {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let didExpire = false;
  const onCallEnd = () => controller.abort(callSignal.reason);
  const expire = () => {
    didExpire = true;
    controller.abort(expiredError());
  };
  const arm = (at: number) => {
    const left = at - now();
    if (left <= 0) return expire();
    timer = setTimeout(() => arm(at), Math.min(left, MAX_TIMER_MS));
  };
  if (callSignal.aborted) onCallEnd();
  else callSignal.addEventListener("abort", onCallEnd, { once: true });
  if (principal.expiresAtMs !== undefined && !controller.signal.aborted) arm(principal.expiresAtMs);
  return {
    signal: controller.signal,
    expired: () => (didExpire ? expiredError() : null),
    dispose() {
      clearTimeout(timer);
      callSignal.removeEventListener("abort", onCallEnd);
    },
  };
}

const expiredError = () =>
  unauthenticated("TOKEN_EXPIRED", "the bearer token of this stream has expired: reconnect with a fresh token and resume from the last cursor received");
