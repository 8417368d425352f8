// Kill -9 the node a subscriber is attached to, mid-stream: the subscriber
// resumes on another node from its last cursor, and across both streams
// every change arrives exactly once, in order.
import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService, WriteRecordsRequestSchema } from "../../../gen/deltamesh/v1/records_pb.js";
import type { createGrpcJsClient } from "../../../services/platform/transport/grpc-client.js";
import { grpcJsClientAs } from "../../support/node.js";
import { testDatabaseUrl } from "../../support/env.js";
import { startServerProcess, type ServerProcess } from "../../support/processes/deltamesh.js";
import { byId, enm, int, str } from "../../support/rpc.js";
import { eventRecord, openStream, serverCopy, copyJson } from "../../support/streams.js";
import type { Value } from "../../../gen/deltamesh/v1/types_pb.js";

let a: ServerProcess;
let b: ServerProcess;
const closers: (() => void)[] = [];
beforeAll(async () => {
  const databaseUrl = await testDatabaseUrl();
  a = await startServerProcess({ databaseUrl });
  b = await startServerProcess({ databaseUrl });
});
afterAll(async () => {
  for (const c of closers) c();
  await Promise.all([a?.kill(), b?.stop()]);
});

function client<S extends Parameters<typeof createGrpcJsClient>[0]>(service: S, address: string) {
  const c = grpcJsClientAs(service, address);
  closers.push(() => c.close());
  return c;
}

describe("node failure", () => {
  it("a subscriber on a node killed with SIGKILL resumes on another node from its last cursor; nothing lost or repeated", async () => {
    const writer = client(RecordService, b.grpcAddress);
    const ids = Array.from({ length: 20 }, (_, i) => `k9-${i}`);
    const write = (round: number) =>
      writer.writeRecords(
        create(WriteRecordsRequestSchema, {
          mutations: ids.map((id) => ({ ref: byId(id), set: { name: str(`C ${id}`), region: enm("east_china"), visits: int(round) }, source: "pos" })),
        }),
      );
    await write(0);
    const first = openStream(client(ChangeService, a.grpcAddress), { collections: [{ collection: "customers" }], start: { case: "snapshot", value: {} } });
    await first.until((e) => e.some((x) => x.kind.case === "snapshotEnd"));

    // Writes keep coming through the surviving node; the subscriber's node dies midway.
    let round = 1;
    const writing = (async () => {
      for (; round <= 60; round++) await write(round);
    })();
    await first.until((e) => e.filter((x) => x.kind.case === "upsert").length >= ids.length * 10, 20_000, "events before the kill");
    await a.kill();
    await first.done();
    expect(first.error?.code).toBe(Code.Unavailable);
    const last = [...first.events].reverse().find((e) => e.cursor !== "")!.cursor;

    const second = openStream(client(ChangeService, b.grpcAddress), { collections: [{ collection: "customers" }], start: { case: "afterCursor", value: last } });
    await writing;
    const [end] = (await write(61)).results.slice(-1);
    await second.until((e) => e.some((x) => x.cursor === end!.cursor), 20_000, "the last write");
    second.close();

    // Exactly versions 1..62 of every record, once each, in order, across both streams.
    const versions = new Map<string, bigint[]>();
    const copy = new Map<string, { id: string; version: bigint; fields: Record<string, Value> }>();
    for (const e of [...first.events, ...second.events]) {
      const r = eventRecord(e);
      if (!r) continue;
      versions.set(r.id, [...(versions.get(r.id) ?? []), r.version]);
      if (e.kind.case === "snapshotRecord") copy.set(r.id, { id: r.id, version: r.version, fields: { ...e.kind.value.record!.fields } });
      if (e.kind.case === "upsert") {
        const held = copy.get(r.id)!;
        Object.assign(held.fields, e.kind.value.set);
        held.version = r.version;
      }
    }
    for (const id of ids) expect(versions.get(id)).toEqual(Array.from({ length: 62 }, (_, i) => BigInt(i + 1)));
    expect(second.events.filter((e) => e.kind.case === "upsert").length).toBeGreaterThan(0);
    expect(copyJson(copy.values())).toEqual(await serverCopy(writer, "customers"));
  });
});
