import { describe, expect, it } from "vitest";
import { decodeMember, encodeMember, type MemberInfo } from "../../../services/cluster/membership.js";

const member: MemberInfo = {
  id: "node-1",
  address: "10.0.0.5:50051",
  services: ["deltamesh.v1.RecordService"],
  version: "0.1.0",
  startTime: "2026-01-01T00:00:00.000Z",
  configRevision: "17",
  configTime: "2026-01-01T00:00:04.000Z",
  leader: true,
  leaderSince: "2026-01-01T00:00:05.000Z",
  coordination: "connected",
  streamSubscribers: null,
  streamLag: null,
  reportTime: "2026-01-01T00:00:06.000Z",
};

describe("membership entries", () => {
  it("round-trip", () => {
    expect(decodeMember(encodeMember(member))).toEqual(member);
    const withStreams = { ...member, streamSubscribers: 4, streamLag: "12" };
    expect(decodeMember(encodeMember(withStreams))).toEqual(withStreams);
  });

  it("are refused when not an entry", () => {
    expect(decodeMember("not json")).toBeNull();
    expect(decodeMember("[]")).toBeNull();
    expect(decodeMember(JSON.stringify({ ...member, id: 3 }))).toBeNull();
    expect(decodeMember(JSON.stringify({ ...member, services: [1] }))).toBeNull();
  });

  it("read missing optional figures as unknown", () => {
    const { leaderSince: _l, streamLag: _s, configTime: _c, ...rest } = member;
    expect(decodeMember(JSON.stringify(rest))).toMatchObject({ leaderSince: null, streamLag: null, leader: true, configTime: member.startTime });
  });
});
