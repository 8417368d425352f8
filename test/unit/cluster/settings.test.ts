import { describe, expect, it } from "vitest";
import { DEFAULT_RETENTION, parseDuration, parseRetention } from "../../../services/cluster/duties/settings.js";
import { buildSnapshot } from "../../../services/config/source.js";
import { DomainError } from "../../../services/platform/errors.js";

const schema = { collections: { a: { fields: { b: { type: "int" } } } } };

describe("parseDuration", () => {
  it.each([
    ["500ms", 500],
    ["30s", 30_000],
    ["15m", 900_000],
    ["12h", 43_200_000],
    ["7d", 604_800_000],
    [" 2s ", 2000],
  ])("%s is %d ms", (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(["", "7", "7w", "1.5h", "-1s", "1h30m", "d"])("refuses %j", (text) => expect(parseDuration(text)).toBeUndefined());
});

describe("parseRetention", () => {
  it("defaults everything when the section is absent", () => {
    expect(parseRetention(undefined)).toEqual({ settings: DEFAULT_RETENTION, violations: [] });
    expect(DEFAULT_RETENTION.changeLogMs).toBe(7 * 86_400_000);
  });

  it("reads windows, off, interval and batch size", () => {
    const { settings, violations } = parseRetention({ change_log: "3d", conflict_tickets: "off", idempotency: "12h", interval: "250ms", batch_size: 10 });
    expect(violations).toEqual([]);
    expect(settings).toEqual({ ...DEFAULT_RETENTION, changeLogMs: 3 * 86_400_000, conflictTicketsMs: null, idempotencyMs: 43_200_000, intervalMs: 250, batchSize: 10 });
  });

  it("reports every problem with its path", () => {
    const { violations } = parseRetention({ change_log: "7 days", interval: "10ms", batch_size: 0, days: 7 });
    expect(violations.map((v) => v.field).sort()).toEqual(["retention.batch_size", "retention.change_log", "retention.days", "retention.interval"]);
    expect(violations.find((v) => v.field === "retention.days")?.reason).toBe("UNKNOWN_KEY");
  });

  it("refuses a section that is not a mapping", () => {
    expect(parseRetention(["7d"]).violations).toEqual([expect.objectContaining({ field: "retention" })]);
  });
});

describe("buildSnapshot with a retention section", () => {
  it("carries the parsed settings", () => {
    expect(buildSnapshot({ ...schema, retention: { change_log: "1h" } }, "r").retention.changeLogMs).toBe(3_600_000);
  });

  it("refuses a bad retention section as a whole config error", () => {
    expect(() => buildSnapshot({ ...schema, retention: { change_log: "soon" } }, "r")).toThrow(DomainError);
    try {
      buildSnapshot({ ...schema, retention: { change_log: "soon" } }, "r");
    } catch (e) {
      expect((e as DomainError).kind).toBe("invalid_argument");
      expect((e as DomainError).violations[0]?.field).toBe("retention.change_log");
    }
  });

  it("reports schema and retention problems together, in one pass", () => {
    try {
      buildSnapshot({ collections: { a: { fields: { b: { type: "strng" } } } }, retention: { interval: "1ms" } }, "r");
      expect.unreachable();
    } catch (e) {
      const fields = (e as DomainError).violations.map((v) => v.field);
      expect(fields).toContain("collections.a.fields.b.type");
      expect(fields).toContain("retention.interval");
      expect((e as DomainError).reason).toBe("INVALID_SCHEMA");
    }
  });
});
