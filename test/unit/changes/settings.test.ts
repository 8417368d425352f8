import { describe, expect, it } from "vitest";
import { DEFAULT_STREAM_SETTINGS, parseStreamSettings } from "../../../services/changes/settings.js";
import { buildSnapshot } from "../../../services/config/source.js";
import { DomainError } from "../../../services/platform/errors.js";

describe("stream settings", () => {
  it("default when absent, override per key", () => {
    expect(parseStreamSettings(undefined)).toEqual(DEFAULT_STREAM_SETTINGS);
    expect(parseStreamSettings({ heartbeat_interval_ms: 500 }).heartbeatIntervalMs).toBe(500);
    expect(parseStreamSettings({ max_streams: 5, max_streams_per_caller: 1 })).toMatchObject({ maxStreams: 5, maxStreamsPerCaller: 1 });
    expect(() => parseStreamSettings({ max_streams: 0 })).toThrow(/streams.max_streams: expected an integer from 1/);
  });

  it("refuse unknown keys and out-of-range values, listing each", () => {
    try {
      parseStreamSettings({ heartbeat_interval_ms: 5, max_buffered_events: "many", nope: 1 });
      throw new Error("expected a failure");
    } catch (e) {
      expect(e).toBeInstanceOf(DomainError);
      expect((e as DomainError).violations.map((v) => v.field).sort()).toEqual(["streams.heartbeat_interval_ms", "streams.max_buffered_events", "streams.nope"]);
    }
    expect(() => parseStreamSettings([1])).toThrow(DomainError);
  });

  it("a bad streams section refuses the whole config document", () => {
    const doc = { collections: { c: { fields: { a: { type: "string" } } } }, streams: { poll_interval_ms: 0 } };
    expect(() => buildSnapshot(doc, "r")).toThrow(/streams.poll_interval_ms/);
    expect(buildSnapshot({ ...doc, streams: { poll_interval_ms: 50 } }, "r").streams.pollIntervalMs).toBe(50);
  });
});
