import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { SubscribeResponseSchema } from "../../../gen/deltamesh/v1/changes_pb.js";
import { countEvents, encodeEvent, encodeHeartbeat, joinEvents } from "../../../services/changes/encode.js";
import { parseSchemaSet } from "../../../services/schema/load.js";
import { clock } from "./fixtures.js";

const schemas = parseSchemaSet({ collections: { c: { fields: { name: { type: "string" }, n: { type: "int" } } } } });

describe("encode", () => {
  it("framed events joined in any number form one SubscribeResponse, long ones included", () => {
    const long = "x".repeat(70_000);
    const parts = [
      encodeEvent({ kind: "upsert", collection: "c", id: "1", version: 1, set: { name: long, n: 5 }, masked: [], cleared: [], clocks: { name: clock(1) }, created: true, commitTime: new Date(0) }, "cur1", schemas),
      encodeEvent({ kind: "delete", collection: "c", id: "2", version: 3, commitTime: new Date(0) }, "cur2", schemas),
      encodeHeartbeat("cur3", 1000),
    ];
    const msg = fromBinary(SubscribeResponseSchema, joinEvents(parts));
    expect(msg.events.map((e) => [e.cursor, e.kind.case])).toEqual([
      ["cur1", "upsert"],
      ["cur2", "delete"],
      ["cur3", "heartbeat"],
    ]);
    const up = msg.events[0]!.kind;
    if (up.case !== "upsert") throw new Error("unreachable");
    expect(up.value.set.name!.kind).toEqual({ case: "stringValue", value: long });
    expect(up.value.set.n!.kind).toEqual({ case: "intValue", value: 5n });
    expect(up.value.clocks.name!.version).toBe(1n);
  });

  it("counts the events of a message from its frame headers, long frames (multi-byte lengths) included", () => {
    const long = encodeEvent({ kind: "upsert", collection: "c", id: "1", version: 1, set: { name: "x".repeat(70_000) }, masked: [], cleared: [], clocks: {}, created: false, commitTime: new Date(0) }, "c1", schemas);
    const beat = encodeHeartbeat("c2", 1);
    expect(countEvents(new Uint8Array(0))).toBe(0);
    expect(countEvents(beat)).toBe(1);
    const joined = joinEvents([beat, long, beat, long]);
    expect(countEvents(joined)).toBe(fromBinary(SubscribeResponseSchema, joined).events.length);
    expect(countEvents(joined)).toBe(4);
  });
});
