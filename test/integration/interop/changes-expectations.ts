// The expectations of the changes interop scenario (change streaming with
// resume, masked reads), shared by every client stack that runs it (Python
// grpcio, grpc-js with proto-loader).
import { expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { CHANGES_INPUT, type ChangesObserved, type ObservedEvent } from "../../interop/changes-observed.js";
import type { Identity, TestNode } from "../../support/node.js";
import { byKey, str } from "../../support/rpc.js";
import type { ScenarioRun } from "./records-expectations.js";

export interface ChangesRun extends ScenarioRun {
  /** The node the scenario ran against, and the tenant it wrote in. */
  node: () => TestNode;
  tenant: string;
}

/**
 * The principal who sees phones masked (config/example.yaml): an east-China
 * sales rep on the phone app. Its token goes to the scenario along with the
 * administrator's.
 */
export const maskedPrincipal = (tenant: string, subject: string): Identity => ({
  tenant,
  subject,
  roles: ["sales"],
  attributes: { regions: ["east_china"], device_class: "mobile" },
});

/** The phone mask of a Chinese mobile number in E.164: "+8613812345678" -> "+86 138****5678". */
function maskedPhone(e164: string): string {
  const m = /^\+86(\d{3})\d{4}(\d{4})$/.exec(e164);
  if (!m) throw new Error(`not a Chinese mobile number in E.164: ${e164}`);
  return `+86 ${m[1]}****${m[2]}`;
}

/** The events that concern records: heartbeats are skipped. */
const recordEvents = (events: ObservedEvent[]) => events.filter((e) => e.kind !== "heartbeat");
/** An event without its cursor (snapshot records carry none to compare). */
const uncursored = ({ cursor: _cursor, ...rest }: ObservedEvent) => rest;
const byId = (a: { id?: string }, b: { id?: string }) => (a.id! < b.id! ? -1 : 1);

/** Registers the scenario's tests; `observed` is read when they run (after beforeAll). */
export function changesScenarioTests(observed: () => ChangesObserved, run: ChangesRun): void {
  it("ran with a department and phone numbers of its own", () => {
    const { department, phones } = observed();
    expect(department.startsWith(`${run.prefix}-`)).toBe(true);
    expect(phones).toHaveLength(3);
    expect(new Set(phones).size).toBe(3);
    for (const p of phones) expect(p).toMatch(/^\+86138\d{8}$/);
  });

  it("subscribes from now: a first heartbeat with a cursor, then an upsert per record written, at its write's cursor", () => {
    const { first, written, department, phones, remembered_cursor } = observed();
    expect(first[0]).toMatchObject({ kind: "heartbeat", cursor: expect.stringMatching(/.+/) });
    expect(written.map((w) => w.version)).toEqual([1, 1]);
    expect(recordEvents(first)).toEqual(
      written.map((w, i) => ({
        kind: "upsert",
        cursor: w.cursor,
        id: w.id,
        version: 1,
        created: true,
        set: { department, name: CHANGES_INPUT.names[i], phone: phones[i], region: CHANGES_INPUT.region },
        masked_fields: [],
      })),
    );
    expect(remembered_cursor).toBe(first.at(-1)!.cursor);
  });

  it("resumes after the remembered cursor with exactly the change missed while disconnected, nothing lost or repeated", () => {
    const { first, written, missed, resumed, marker, phones } = observed();
    const before = recordEvents(first).find((e) => e.id === written[0]!.id)!;
    expect(missed).toMatchObject({ id: written[0]!.id, version: before.version! + 1 });
    // The short heartbeats interleave; the record events are the missed change
    // next, then the change written after reconnecting, and nothing else.
    expect(resumed.some((e) => e.kind === "heartbeat")).toBe(true);
    expect(recordEvents(resumed)).toEqual([
      { kind: "upsert", cursor: missed.cursor, id: missed.id, version: missed.version, created: false, set: { notes: CHANGES_INPUT.missedNotes }, masked_fields: [] },
      { kind: "upsert", cursor: marker.cursor, id: written[1]!.id, version: 2, created: false, set: { phone: phones[2] }, masked_fields: [] },
    ]);
  });

  it("reads a record as a sales rep on the phone app: the phone masked and named in masked_fields", () => {
    const { masked_get, written, department, phones } = observed();
    expect(masked_get.record).toEqual({
      id: written[0]!.id,
      version: 2,
      deleted: false,
      fields: { department, name: CHANGES_INPUT.names[0], notes: CHANGES_INPUT.missedNotes, phone: maskedPhone(phones[0]!), region: CHANGES_INPUT.region },
    });
    expect(masked_get.masked_fields).toContain("phone");
  });

  it("streams to that sales rep with the phone masked, in snapshot records and upserts", () => {
    const { masked_stream, written, marker, department, phones } = observed();
    const events = recordEvents(masked_stream);
    expect(events.map((e) => e.kind)).toEqual(["snapshot_record", "snapshot_record", "snapshot_end", "upsert"]);
    const snapshot = events.slice(0, 2).map(uncursored).sort(byId);
    const region = CHANGES_INPUT.region;
    expect(snapshot).toEqual(
      [
        {
          kind: "snapshot_record",
          id: written[0]!.id,
          version: 2,
          fields: { department, name: CHANGES_INPUT.names[0], notes: CHANGES_INPUT.missedNotes, phone: maskedPhone(phones[0]!), region },
          masked_fields: ["phone"],
        },
        {
          kind: "snapshot_record",
          id: written[1]!.id,
          version: 1,
          fields: { department, name: CHANGES_INPUT.names[1], phone: maskedPhone(phones[1]!), region },
          masked_fields: ["phone"],
        },
      ].sort(byId),
    );
    expect(events[2]).toMatchObject({ kind: "snapshot_end", record_count: 2 });
    expect(events[3]).toEqual({
      kind: "upsert",
      cursor: marker.cursor,
      id: written[1]!.id,
      version: 2,
      created: false,
      set: { phone: maskedPhone(phones[2]!) },
      masked_fields: ["phone"],
    });
  });

  it("wrote what a TypeScript client finds by the new identity keys", async () => {
    const { written, phones } = observed();
    const ts = run.node().connect(RecordService, { tenant: run.tenant });
    const ids = await Promise.all([phones[0]!, phones[2]!].map(async (p) => (await ts.getRecord({ ref: byKey("phone", str(p)) })).record?.id));
    expect(ids).toEqual([written[0]!.id, written[1]!.id]);
  });
}
