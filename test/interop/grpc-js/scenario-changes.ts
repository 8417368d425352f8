// The changes interop scenario through proto-loader clients; the same steps
// as test/interop/python/scenario_changes.py, observed in the same shape.
// `client` writes and subscribes as the tenant's administrator; `masked`
// calls as a principal who sees phones masked.
import { randomInt } from "node:crypto";
import { CHANGES_INPUT, type ChangesObserved, type ObservedEvent, type WriteOutcome } from "../changes-observed.js";
import type { Plain, ProtoLoaderClient, ServerStream } from "./client.js";
import { byId, byKey, CHANGES, COLLECTION, enumValue, mutation, plainEvent, plainRecord, RECORDS, string, writeOutcome } from "./messages.js";

/** A Subscribe call whose events are read on demand. */
class EventStream {
  readonly events: ObservedEvent[] = [];
  private readonly call: ServerStream;

  constructor(client: ProtoLoaderClient, request: Plain) {
    this.call = client.serverStream(CHANGES, "Subscribe", request);
  }

  /** Reads messages until `done` holds for the events read so far. */
  async readUntil(done: (events: ObservedEvent[]) => boolean): Promise<void> {
    while (!done(this.events)) this.events.push(...(((await this.call.next()).events ?? []) as Plain[]).map(plainEvent));
  }

  cancel(): void {
    this.call.cancel();
  }
}

/** True once an upsert of each written record's version arrived. */
const upsertsOf = (written: WriteOutcome[]) => (events: ObservedEvent[]) =>
  written.every((w) => events.some((e) => e.kind === "upsert" && e.id === w.id && e.version === w.version));

export async function runChangesScenario(client: ProtoLoaderClient, masked: ProtoLoaderClient, prefix: string): Promise<ChangesObserved> {
  const writeRecords = client.unary(RECORDS, "WriteRecords");
  const write = async (...mutations: Plain[]): Promise<WriteOutcome[]> => ((await writeRecords({ mutations })).results as Plain[]).map(writeOutcome);
  // Unique to the run: the department the streams filter on, and the phones (identity keys).
  const nonce = randomInt(100_000_000);
  const department = `${prefix}-dept-${nonce}`;
  const phones = [0, 1, 2].map((i) => `+86138${String((nonce + i) % 100_000_000).padStart(8, "0")}`);
  const streams: EventStream[] = [];
  const subscribe = (who: ProtoLoaderClient, start: Plain, heartbeatMs = 0): EventStream => {
    const s = new EventStream(who, {
      collections: [{ collection: COLLECTION, filters: [{ field: "department", value: string(department) }] }],
      ...start,
      heartbeat_interval_ms: heartbeatMs,
    });
    streams.push(s);
    return s;
  };

  try {
    // 1. From now: the first message (a heartbeat) says where the stream
    // stands; then two records are written and their upserts read.
    const first = subscribe(client, { from_now: {} });
    await first.readUntil((events) => events.length > 0);
    const written = await write(
      ...CHANGES_INPUT.names.map((name, i) =>
        mutation(byKey("phone", string(phones[i]!)), { name: string(name), region: enumValue(CHANGES_INPUT.region), department: string(department) }),
      ),
    );
    await first.readUntil(upsertsOf(written));
    const remembered = first.events.at(-1)!.cursor;
    first.cancel();

    // 2. While disconnected, the first record changes; a stream resumed
    // after the remembered cursor (with short heartbeats, which are skipped)
    // must bring that change next.
    const [missed] = await write(mutation(byId(written[0]!.id), { notes: string(CHANGES_INPUT.missedNotes) }));
    const resumed = subscribe(client, { after_cursor: remembered }, 250);
    await resumed.readUntil((events) => events.some((e) => e.kind !== "heartbeat"));

    // 3. As the principal who sees phones masked: a read, and a snapshot stream.
    const maskedGet = await masked.unary(RECORDS, "GetRecord")({ ref: byId(written[0]!.id) });
    const maskedStream = subscribe(masked, { snapshot: {} });
    await maskedStream.readUntil((events) => events.some((e) => e.kind === "snapshot_end"));

    // A live phone change: it ends what the resumed stream is read for, and
    // reaches the masked stream as an upsert.
    const [marker] = await write(mutation(byId(written[1]!.id), { phone: string(phones[2]!) }));
    await resumed.readUntil(upsertsOf([marker!]));
    await maskedStream.readUntil(upsertsOf([marker!]));

    const record = maskedGet.record as Plain;
    return {
      department,
      phones,
      written,
      first: first.events,
      remembered_cursor: remembered,
      missed: missed!,
      resumed: resumed.events,
      marker: marker!,
      masked_get: { record: plainRecord(record), masked_fields: (record.masked_fields ?? []) as string[] },
      masked_stream: maskedStream.events,
    };
  } finally {
    for (const s of streams) s.cancel();
  }
}
