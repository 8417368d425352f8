import { timestampDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { CoordinationState } from "../../../gen/deltamesh/v1/cluster_pb.js";
import { guessFormat, nodeStatus } from "../../../services/cluster/handlers.js";
import { defaultAddress, leadershipMargin } from "../../../services/cluster/node.js";
import { renewIntervalMs } from "../../../services/cluster/session.js";

describe("cluster handlers' translation", () => {
  it("maps a member to NodeStatus, unknown stream figures left absent", () => {
    const s = nodeStatus({
      id: "n1",
      address: "h:1",
      services: ["S"],
      version: "1",
      startTime: "2026-01-01T00:00:00.000Z",
      configRevision: "9",
      configTime: "2026-01-01T00:00:00.500Z",
      leader: false,
      leaderSince: null,
      coordination: "degraded",
      streamSubscribers: null,
      streamLag: null,
      reportTime: "2026-01-01T00:00:01.000Z",
    });
    expect(s).toMatchObject({ nodeId: "n1", configRevision: "9", coordination: CoordinationState.DEGRADED, streamSubscribers: undefined, streamLag: undefined, leaderSince: undefined });
    expect(timestampDate(s.startTime as never).toISOString()).toBe("2026-01-01T00:00:00.000Z");
  });

  it("maps known stream figures", () => {
    const s = nodeStatus({
      id: "n1", address: "h:1", services: [], version: "1", startTime: "2026-01-01T00:00:00.000Z", configRevision: "9", configTime: "2026-01-01T00:00:00.500Z", leader: true,
      leaderSince: "2026-01-01T00:00:02.000Z", coordination: "connected", streamSubscribers: 3, streamLag: "42", reportTime: "2026-01-01T00:00:03.000Z",
    });
    expect(s).toMatchObject({ leader: true, streamSubscribers: 3, streamLag: 42n, coordination: CoordinationState.CONNECTED });
  });

  it("reads a document as JSON only when it is JSON; a YAML flow mapping (also starting with {) is YAML", () => {
    expect(guessFormat('  {"collections": {}}')).toBe("json");
    expect(guessFormat("collections: {}")).toBe("yaml");
    expect(guessFormat("# comment\n{a: 1}")).toBe("yaml");
    expect(guessFormat("{collections: {a: {fields: {x: {type: string}}}}}")).toBe("yaml");
  });
});

describe("coordination timing", () => {
  it("renews the lease three times per TTL, never faster than every 200 ms", () => {
    expect(renewIntervalMs(10)).toBe(3333);
    expect(renewIntervalMs(2)).toBe(666);
    expect(renewIntervalMs(0.3)).toBe(200);
  });

  it("keeps a safety margin of a tenth of the TTL, at most a second", () => {
    expect(leadershipMargin(2)).toBe(200);
    expect(leadershipMargin(60)).toBe(1000);
  });

  it("advertises the host name for a wildcard listen address", () => {
    expect(defaultAddress("127.0.0.1", 5)).toBe("127.0.0.1:5");
    expect(defaultAddress("0.0.0.0", 5)).not.toMatch(/^0\.0\.0\.0/);
    expect(defaultAddress("::1", 5)).toBe("[::1]:5");
  });
});
