// What a client observes running the changes interop scenario (change
// streaming with resume, masked reads), in one shape whatever its language:
// the Python scenario prints it as JSON, the grpc-js scenario returns it, and
// one set of expectations checks both.
import type { PlainRecord } from "./records-observed.js";

/** What the scenario writes (test/interop/python/scenario_changes.py writes the same literals). */
export const CHANGES_INPUT = {
  names: ["Zhang Wei", "Wang Fang"],
  region: "east_china",
  /** The notes set by the update written while the client is disconnected. */
  missedNotes: "called back while the client was offline",
} as const;

/** One ChangeEvent as plain data; which members are set depends on `kind` (the oneof case). */
export interface ObservedEvent {
  kind: "upsert" | "delete" | "enter_scope" | "leave_scope" | "heartbeat" | "snapshot_record" | "snapshot_end";
  cursor: string;
  /** upsert, delete, enter_scope, leave_scope, snapshot_record */
  id?: string;
  version?: number;
  /** upsert */
  created?: boolean;
  /** upsert: the fields the change set */
  set?: Record<string, unknown>;
  /** enter_scope, snapshot_record: every field of the record the subscriber sees */
  fields?: Record<string, unknown>;
  /** upsert (RecordUpsert.masked_fields), enter_scope and snapshot_record (Record.masked_fields) */
  masked_fields?: string[];
  /** snapshot_end */
  record_count?: number;
}

/** One applied mutation's result. */
export interface WriteOutcome {
  id: string;
  version: number;
  cursor: string;
}

export interface ChangesObserved {
  /** The department filter, unique to the run. */
  department: string;
  /** The run's phone numbers (E.164, as written): the two records', then the second record's new number. */
  phones: string[];
  /** The two records created while the first stream was open. */
  written: WriteOutcome[];
  /** Every event of the first stream (from_now, as the administrator) until both upserts arrived. */
  first: ObservedEvent[];
  /** The cursor remembered from the first stream before disconnecting. */
  remembered_cursor: string;
  /** The update of the first record written while disconnected. */
  missed: WriteOutcome;
  /** Every event of the stream resumed after `remembered_cursor`, until `marker` arrived. */
  resumed: ObservedEvent[];
  /** The second record's phone change, written once the resumed stream was open. */
  marker: WriteOutcome;
  /** GetRecord of the first record as the principal who sees phones masked. */
  masked_get: { record: PlainRecord; masked_fields: string[] };
  /** Every event of a snapshot stream opened as that principal, until `marker` arrived. */
  masked_stream: ObservedEvent[];
}
