// The gauges other areas register: read at collection time, combined across
// registrations, removable, and a failing reader breaks nothing else. (The
// SDK keeps every attribute set it ever saw: what ends is reported 0.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  registerConfigRevision,
  registerLeaderStatus,
  registerOpenStreams,
  registerStreamLag,
} from "../../../services/platform/telemetry/gauges.js";
import { METRIC_CONFIG_INFO, METRIC_LEADER, METRIC_STREAMS_OPEN, METRIC_STREAM_LAG } from "../../../services/platform/telemetry/names.js";
import { startTestTelemetry, sumOf, type TestTelemetry } from "../../support/telemetry.js";

// Registered before the SDK starts: must still be reported.
let revision = "r1";
const unregisterRevision = registerConfigRevision(() => revision);

let t: TestTelemetry;
beforeAll(async () => {
  t = await startTestTelemetry();
});
afterAll(() => t.shutdown());

describe("registered gauges", () => {
  it("report the current config revision as a label", async () => {
    let m = await t.metrics();
    expect(m.get(METRIC_CONFIG_INFO)!.dataPoints.map((p) => [p.attributes.revision, p.value])).toEqual([["r1", 1]]);
    revision = "r2";
    m = await t.metrics();
    const byRevision = Object.fromEntries(m.get(METRIC_CONFIG_INFO)!.dataPoints.map((p) => [p.attributes.revision, p.value]));
    expect(byRevision).toEqual({ r1: 0, r2: 1 });
  });

  it("are absent until someone registers them", async () => {
    const m = await t.metrics();
    for (const name of [METRIC_STREAMS_OPEN, METRIC_STREAM_LAG, METRIC_LEADER]) expect(m.get(name)?.dataPoints ?? []).toEqual([]);
  });

  it("combine registrations: open streams add up, the worst lag wins, any leader leads", async () => {
    const off = [
      registerOpenStreams(() => 3),
      registerOpenStreams(() => 4),
      registerStreamLag(() => 0.25),
      registerStreamLag(() => 2.5),
      registerStreamLag(() => undefined),
      registerLeaderStatus(() => false),
    ];
    let m = await t.metrics();
    expect(sumOf(m.get(METRIC_STREAMS_OPEN))).toBe(7);
    expect(sumOf(m.get(METRIC_STREAM_LAG))).toBe(2.5);
    expect(sumOf(m.get(METRIC_LEADER))).toBe(0);
    off.push(registerLeaderStatus(() => true));
    m = await t.metrics();
    expect(sumOf(m.get(METRIC_LEADER))).toBe(1);
    for (const f of off) f();
    m = await t.metrics();
    expect(sumOf(m.get(METRIC_STREAMS_OPEN))).toBe(0);
    expect(sumOf(m.get(METRIC_STREAM_LAG))).toBe(0);
    expect(sumOf(m.get(METRIC_LEADER))).toBe(0);
  });

  it("survive a reader that throws", async () => {
    const off = [
      registerOpenStreams(() => {
        throw new Error("hub not ready");
      }),
      registerOpenStreams(() => 2),
    ];
    const m = await t.metrics();
    expect(sumOf(m.get(METRIC_STREAMS_OPEN))).toBe(2);
    expect(sumOf(m.get(METRIC_CONFIG_INFO), { revision: "r2" })).toBe(1);
    for (const f of off) f();
  });

  it("report 0 once unregistered", async () => {
    unregisterRevision();
    const m = await t.metrics();
    expect(sumOf(m.get(METRIC_CONFIG_INFO))).toBe(0);
  });
});
