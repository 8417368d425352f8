// Page tokens are sealed: a client can neither read the position a token
// holds (it may be a row the client may not see) nor forge one, a token from
// one node opens on any node sharing the secret, and a position its RPC could
// not have issued is INVALID_PAGE_TOKEN, never passed on to the database.
import { describe, expect, it } from "vitest";
import { DomainError } from "../../../services/platform/errors.js";
import { PageTokens, positions, queryFingerprint } from "../../../services/platform/page-token.js";

const secret = new TextEncoder().encode("a cluster secret");
const tokens = new PageTokens(secret);
const query = { collection: "customers", equals: { region: "north_china" }, deleted: false };

/** The DomainError `f` throws. */
function thrown(f: () => unknown): DomainError {
  try {
    f();
  } catch (e) {
    if (e instanceof DomainError) return e;
    throw e;
  }
  throw new Error("expected a DomainError");
}

function expectRefused(f: () => unknown, reason = "INVALID_PAGE_TOKEN"): void {
  const e = thrown(f);
  expect(e.kind).toBe("invalid_argument");
  expect(e.violations).toEqual([expect.objectContaining({ field: "page_token", reason })]);
}

describe("PageTokens", () => {
  it("round-trips a position for the same query; no token is no position", () => {
    const t = tokens.encode(query, "zz-north-0-0599");
    expect(t).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(tokens.decode(t, query, positions.text)).toBe("zz-north-0-0599");
    expect(tokens.decode("", query, positions.text)).toBeUndefined();
    expect(tokens.decode(tokens.encode({ id: "c1" }, "42"), { id: "c1" }, positions.seq())).toBe(42n);
  });

  it("does not show the position or the query in its bytes, and differs each time", () => {
    const t = tokens.encode(query, "zz-north-0-0599");
    const bytes = Buffer.from(t, "base64url").toString("latin1");
    expect(bytes).not.toContain("north");
    expect(bytes).not.toContain(queryFingerprint(query));
    expect(bytes).not.toContain('"after"');
    expect(tokens.encode(query, "zz-north-0-0599")).not.toBe(t);
  });

  it("opens on another node sharing the secret, not under another secret", () => {
    const t = tokens.encode(query, "r-1");
    expect(new PageTokens(new TextEncoder().encode("a cluster secret")).decode(t, query, positions.text)).toBe("r-1");
    expectRefused(() => new PageTokens(new TextEncoder().encode("another secret")).decode(t, query, positions.text));
  });

  it("refuses any tampered byte, truncation, or the old unsealed form", () => {
    const raw = Buffer.from(tokens.encode(query, "r-1"), "base64url");
    for (let i = 0; i < raw.length; i++) {
      const bad = Buffer.from(raw);
      bad[i] = bad[i]! ^ 0x01;
      expectRefused(() => tokens.decode(bad.toString("base64url"), query, positions.text));
    }
    expectRefused(() => tokens.decode(raw.subarray(0, raw.length - 1).toString("base64url"), query, positions.text));
    const unsealed = Buffer.from(JSON.stringify({ q: queryFingerprint(query), after: "r-1" })).toString("base64url");
    expectRefused(() => tokens.decode(unsealed, query, positions.text));
    for (const junk of ["garbage", "!!!!", "a", "AQ"]) expectRefused(() => tokens.decode(junk, query, positions.text));
  });

  it("refuses a token of another query as PAGE_TOKEN_MISMATCH", () => {
    const t = tokens.encode(query, "r-1");
    expectRefused(() => tokens.decode(t, { ...query, deleted: true }, positions.text), "PAGE_TOKEN_MISMATCH");
  });

  it("refuses a sealed position its RPC could not have issued", () => {
    const seq = positions.seq();
    for (const after of ["abc", "1e30", "1000000000000000000000000000000", "9223372036854775808", "0", "-1", "01", " 1", ""]) {
      expectRefused(() => tokens.decode(tokens.encode(query, after), query, seq));
    }
    expect(tokens.decode(tokens.encode(query, "9223372036854775807"), query, seq)).toBe(9223372036854775807n);
    const safe = positions.seq(BigInt(Number.MAX_SAFE_INTEGER));
    expectRefused(() => tokens.decode(tokens.encode(query, "9007199254740992"), query, safe));
    expect(tokens.decode(tokens.encode(query, "9007199254740991"), query, safe)).toBe(9007199254740991n);
    for (const after of ["a\u0000b", ""]) expectRefused(() => tokens.decode(tokens.encode(query, after), query, positions.text));
  });
});

describe("positions.timeAndId", () => {
  it("reads a [time, id] pair as written by toISOString", () => {
    const time = new Date("2026-03-01T10:00:00.123Z");
    expect(positions.timeAndId(JSON.stringify([time.toISOString(), "t-1"]))).toEqual({ time, id: "t-1" });
  });

  it("refuses anything else", () => {
    for (const after of [
      "x",
      "{}",
      JSON.stringify(["nope", "id"]),
      JSON.stringify(["2026-03-01T10:00:00.123Z"]),
      JSON.stringify(["2026-03-01T10:00:00.123Z", 5]),
      JSON.stringify(["2026-03-01T10:00:00.123Z", "a\u0000"]),
      JSON.stringify(["2026-03-01", "id"]),
      JSON.stringify(["+275760-09-13T00:00:00.000Z", "id"]),
      JSON.stringify(["0000-01-01T00:00:00.000Z", "id"]),
    ]) {
      expect(positions.timeAndId(after), after).toBeUndefined();
    }
  });
});
