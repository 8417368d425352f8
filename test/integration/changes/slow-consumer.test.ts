// A consumer that stops reading while a lot is written: the server's memory
// stays bounded (its node runs with a JavaScript heap capped well below what
// the stuck consumer would have to hold, and survives), a fast subscriber on
// the same node is unaffected, and the slow one is ended with
// RESOURCE_EXHAUSTED carrying its last cursor, from which it resumes cleanly.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChangeService, type ChangeEvent } from "../../../gen/deltamesh/v1/changes_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { grpcJsClientAs } from "../../support/node.js";
import { scratchDir, testDatabaseUrl } from "../../support/env.js";
import { startServerProcess, type ServerProcess } from "../../support/processes/deltamesh.js";
import { logTail } from "../../support/retention.js";
import { appendChanges, type ChangeRow } from "../../../services/store/sequencing.js";
import { decodeCursor } from "../../../services/changes/cursor.js";
import { eventRecord, openStream } from "../../support/streams.js";

const cursorSeq = (c: string) => decodeCursor(c).seq;

const BUFFER_BYTES = 8 * 1024 * 1024;
const NOTE = "备注".repeat(4000); // 24 KB of UTF-8 per change
const RECORDS = 1250;
/** Changes per appending transaction (3 MB). */
const BATCH = 125;
const ROUNDS = 3;
/** The streaming node's heap cap: below the ~90 MB of events the stuck consumer would otherwise hold. */
const HEAP_MB = 64;

let a: ServerProcess;
let db: pg.Pool;
let databaseUrl: string;
const closers: (() => void)[] = [];
beforeAll(async () => {
  const dir = await scratchDir("slow");
  const config = path.join(dir, "config.yaml");
  const example = await readFile(DEFAULT_CONFIG_PATH, "utf8");
  await writeFile(config, `${example}\nstreams:\n  max_buffered_bytes: ${BUFFER_BYTES}\n  recent_changes: 256\n`);
  databaseUrl = await testDatabaseUrl();
  a = await startServerProcess({ databaseUrl, args: ["--config", config], env: { NODE_OPTIONS: `--max-old-space-size=${HEAP_MB}` }, onLog: (l) => console.error("[server]", l.slice(0, 3000)) });
  db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
});
afterAll(async () => {
  for (const c of closers) c();
  await Promise.all([a?.stop(), db?.end()]);
});

const mb = (n: number) => Math.round(n / 1024 / 1024);

/**
 * One round of changes, appended to the log the way the write path appends
 * them (sequenced, with image and prior), but without the cost of merging:
 * this test is about what streaming them costs the server.
 */
async function appendRound(round: number, appended: () => Promise<void>): Promise<void> {
  for (let i = 0; i < RECORDS; i += BATCH) {
    const client = await db.connect();
    try {
      await client.query("BEGIN");
      const rows: ChangeRow[] = Array.from({ length: BATCH }, (_, j) => ({
        tenant: "default",
        collection: "customers",
        recordId: `slow-${i + j}`,
        oldVersion: round - 1,
        newVersion: round,
        delta: { set: { notes: `${round} ${NOTE}` }, cleared: [], clocks: {}, decisions: [] },
        created: round === 1,
        deleted: false,
        actor: "test",
        source: "test",
        device: "test",
        clientMutationId: "",
        image: { name: `C ${i + j}`, region: "east_china" },
        prior: {},
      }));
      await appendChanges(client, rows, "commit-lock");
      await client.query("COMMIT");
    } finally {
      client.release();
    }
    await appended();
  }
}

describe("a slow consumer", () => {
  it("costs the server bounded memory, is ended with RESOURCE_EXHAUSTED and its cursor, and resumes cleanly", async () => {
    const streams = grpcJsClientAs(ChangeService, a.grpcAddress);
    closers.push(() => streams.close());
    const fast = openStream(streams, { collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
    closers.push(() => fast.close());

    // The slow consumer reads its first message, then stops reading.
    const slow = streams.subscribe({ collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } })[Symbol.asyncIterator]();
    const first = await slow.next();
    const slowEvents: ChangeEvent[] = [...first.value!.events];
    await fast.until((e) => e.length > 0);

    const rss: number[] = [await a.rssBytes()];
    // Paced so the fast subscriber (in this busy test process) keeps up; the slow one reads nothing.
    const fastCaughtUp = async () => {
      const tail = await logTail(databaseUrl);
      await fast.until((e) => e.some((x) => x.cursor !== "" && cursorSeq(x.cursor) === tail), 60_000, "fast subscriber at the tail");
    };
    for (let round = 1; round <= ROUNDS; round++) {
      await appendRound(round, fastCaughtUp);
      rss.push(await a.rssBytes());
    }
    const streamed = ROUNDS * RECORDS * Buffer.byteLength(NOTE);
    console.info(`streaming node RSS by round (MB): ${rss.map(mb).join(" -> ")}; ${mb(streamed)} MB of notes streamed; heap cap ${HEAP_MB} MB`);
    expect(streamed).toBeGreaterThan(HEAP_MB * 1024 * 1024);
    expect(a.process.exitCode).toBeNull();
    // And it does not follow what is written: rounds 2 and 3 stream as much as round 1 and add (almost) nothing.
    expect(rss[ROUNDS]! - rss[1]!).toBeLessThan(32 * 1024 * 1024);
    expect(fast.error).toBeNull();

    // The slow consumer reads again: what was already in flight, then the end.
    let error: ConnectError | null = null;
    try {
      for (let r = await slow.next(); !r.done; r = await slow.next()) slowEvents.push(...r.value.events);
    } catch (e) {
      error = ConnectError.from(e);
    }
    expect(error?.code).toBe(Code.ResourceExhausted);
    const info = error!.findDetails(ErrorInfoSchema)[0]!;
    expect(info.reason).toBe("SUBSCRIBER_TOO_SLOW");
    const lastReceived = [...slowEvents].reverse().find((e) => e.cursor !== "")!.cursor;
    expect(info.metadata.cursor).toBe(lastReceived);
    // It was cut off long before receiving what was written.
    expect(slowEvents.length).toBeLessThan(RECORDS);

    const resumed = openStream(streams, { collections: [{ collection: "customers" }], start: { case: "afterCursor", value: info.metadata.cursor! } });
    closers.push(() => resumed.close());
    const tail = await logTail(databaseUrl);
    await resumed.until((e) => e.some((x) => x.cursor !== "" && cursorSeq(x.cursor) === tail), 60_000, "resumed stream catching up");
    const seen = new Map<string, number>();
    for (const e of [...slowEvents, ...resumed.events]) {
      const r = eventRecord(e);
      if (r) seen.set(`${r.id}@${r.version}`, (seen.get(`${r.id}@${r.version}`) ?? 0) + 1);
    }
    expect(seen.size).toBe(ROUNDS * RECORDS);
    expect([...seen.values()].every((count) => count === 1)).toBe(true);
  }, 180_000);
});
