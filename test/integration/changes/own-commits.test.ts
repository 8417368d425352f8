// A node hands its own commits to its streams at once, without waiting for the
// commit notification, its tailer's batch delay and a read. When another
// node's change sits unread before one of them, the tailer reads at once
// (every lower seq is committed already) instead of after its batch delay,
// and the stream still gets both in log order, each once.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { scratchDir, testDatabaseUrl } from "../../support/env.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { byId, enm, str } from "../../support/rpc.js";
import { openStream, recordEvents, type OpenStream } from "../../support/streams.js";

/** The streaming node's tailer waits this long after a notification before reading (the setting's maximum). */
const BATCH_DELAY_MS = 1_000;

let streaming: TestNode;
let other: TestNode;
const streams: OpenStream[] = [];
beforeAll(async () => {
  const config = path.join(await scratchDir("own-commits"), "config.yaml");
  const example = await readFile(DEFAULT_CONFIG_PATH, "utf8");
  await writeFile(config, `${example}\nstreams:\n  batch_delay_ms: ${BATCH_DELAY_MS}\n  poll_interval_ms: 60000\n`);
  const databaseUrl = await testDatabaseUrl();
  streaming = await startTestNode({ databaseUrl, configFile: config });
  other = await startTestNode({ databaseUrl });
});
afterAll(async () => {
  for (const s of streams) s.close();
  await other?.stop();
  await streaming?.stop();
});

const customer = (id: string) => ({ ref: byId(id), set: { name: str(`Customer ${id}`), region: enm("east_china") }, source: "crm" });

describe("a node's own commits on its streams", () => {
  it("reach its stream at once, even behind another node's unread change, in log order", async () => {
    const s = openStream(streaming.grpcJs(ChangeService), { collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
    streams.push(s);
    await s.until((e) => e.length >= 1, 10_000, "first heartbeat");

    // Alone: no notification or batch delay in the way.
    let started = performance.now();
    await streaming.grpcJs(RecordService).writeRecords({ mutations: [customer("own-1")] });
    await s.until((e) => recordEvents(e).length >= 1, 10_000, "own-1");
    expect(performance.now() - started).toBeLessThan(BATCH_DELAY_MS / 2);

    // Behind another node's change, which the streaming node's tailer would read only after its batch delay.
    started = performance.now();
    await other.grpcJs(RecordService).writeRecords({ mutations: [customer("theirs-1")] });
    await streaming.grpcJs(RecordService).writeRecords({ mutations: [customer("own-2")] });
    await s.until((e) => recordEvents(e).length >= 3, 10_000, "theirs-1 and own-2");
    expect(performance.now() - started).toBeLessThan(BATCH_DELAY_MS / 2);

    await new Promise((r) => setTimeout(r, BATCH_DELAY_MS + 200)); // the tailer's own read after its delay
    expect(recordEvents(s.events)).toEqual(["upsert own-1@1", "upsert theirs-1@1", "upsert own-2@1"]);
  });
});
