// A call's credential watch: aborted with the call, or at the token's expiry
// with TOKEN_EXPIRED; never for a principal without an expiry.
import { afterEach, describe, expect, it, vi } from "vitest";
import { watchCredential } from "../../../services/platform/auth/expiry.js";
import type { Principal } from "../../../services/platform/principal.js";

const principal = (expiresAtMs?: number): Principal => ({ subject: "s", tenant: "default", roles: [], attributes: {}, ...(expiresAtMs !== undefined ? { expiresAtMs } : {}) });

afterEach(() => {
  vi.useRealTimers();
});

describe("watchCredential", () => {
  it("aborts at the expiry and says the token expired", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const call = new AbortController();
    const w = watchCredential(principal(1_000_000 + 5_000), call.signal);
    vi.advanceTimersByTime(4_999);
    expect(w.signal.aborted).toBe(false);
    expect(w.expired()).toBeNull();
    vi.advanceTimersByTime(1);
    expect(w.signal.aborted).toBe(true);
    expect(w.expired()).toMatchObject({ kind: "unauthenticated", reason: "TOKEN_EXPIRED" });
    w.dispose();
  });

  it("re-arms for expiries beyond what one timer can wait", () => {
    vi.useFakeTimers({ now: 0 });
    const far = 2 ** 31 + 10_000;
    const w = watchCredential(principal(far), new AbortController().signal);
    vi.advanceTimersByTime(2 ** 31 - 1);
    expect(w.signal.aborted).toBe(false);
    vi.advanceTimersByTime(10_001);
    expect(w.expired()?.reason).toBe("TOKEN_EXPIRED");
  });

  it("follows the call's own end, which is not an expiry", () => {
    vi.useFakeTimers({ now: 0 });
    const call = new AbortController();
    const w = watchCredential(principal(60_000), call.signal);
    call.abort(new Error("client gone"));
    expect(w.signal.aborted).toBe(true);
    expect(w.expired()).toBeNull();
    w.dispose();
    vi.advanceTimersByTime(120_000);
    expect(w.expired()).toBeNull();
  });

  it("never expires a principal without an expiry, and is expired at once past it", () => {
    vi.useFakeTimers({ now: 10_000 });
    const endless = watchCredential(principal(), new AbortController().signal);
    vi.advanceTimersByTime(10 ** 9);
    expect(endless.signal.aborted).toBe(false);
    const late = watchCredential(principal(9_000), new AbortController().signal);
    expect(late.expired()?.reason).toBe("TOKEN_EXPIRED");
  });
});
