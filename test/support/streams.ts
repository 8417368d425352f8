// Helpers for change-stream tests: an open Subscribe stream collected into an
// array that tests can wait on, and compact event views for assertions.
import { ConnectError } from "@connectrpc/connect";
import type { ChangeEvent, SubscribeRequest, SubscribeResponse } from "../../gen/deltamesh/v1/changes_pb.js";
import { toJson, type MessageInitShape } from "@bufbuild/protobuf";
import type { FieldFilterSchema } from "../../gen/deltamesh/v1/records_pb.js";
import { ValueSchema, type Value } from "../../gen/deltamesh/v1/types_pb.js";
import type { SubscribeRequestSchema } from "../../gen/deltamesh/v1/changes_pb.js";

export type SubscribeInit = MessageInitShape<typeof SubscribeRequestSchema>;

/** Anything with a server-streaming `subscribe` (grpc-js or Connect client). */
export interface Subscribable {
  subscribe(req: SubscribeInit, opts?: { signal?: AbortSignal; headers?: Record<string, string> }): AsyncIterable<SubscribeResponse>;
}

export interface OpenStream {
  /** Every event received so far, in order. */
  events: ChangeEvent[];
  /** Messages received (each a batch). */
  messages: number;
  /** Set when the stream ended with an error. */
  error: ConnectError | null;
  ended: boolean;
  /** Waits until `pred` holds for the events received (or fails after `timeoutMs`). */
  until(pred: (events: ChangeEvent[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Waits for the stream to end (with or without an error). */
  done(timeoutMs?: number): Promise<void>;
  close(): void;
}

/** Opens a stream and collects its events; `headers` go with the call (e.g. a traceparent). */
export function openStream(client: Subscribable, req: SubscribeInit, headers?: Record<string, string>): OpenStream {
  const abort = new AbortController();
  const waiters = new Set<() => void>();
  const notify = () => {
    for (const w of [...waiters]) w();
  };
  const s: OpenStream = {
    events: [],
    messages: 0,
    error: null,
    ended: false,
    until(pred, timeoutMs = 10_000, what = "condition") {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (pred(s.events)) {
            cleanup();
            resolve();
          } else if (s.ended) {
            cleanup();
            reject(new Error(`stream ended (${s.error?.message ?? "no error"}) before ${what}; ${s.events.length} events`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${what}; ${s.events.length} events: ${JSON.stringify(s.events.slice(-5).map(brief))}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    done(timeoutMs = 10_000) {
      return s.until(() => s.ended, timeoutMs, "end of stream").catch((e: unknown) => {
        if (!s.ended) throw e;
      });
    },
    close: () => abort.abort(),
  };
  void (async () => {
    try {
      for await (const m of client.subscribe(req, { signal: abort.signal, ...(headers ? { headers } : {}) })) {
        s.messages++;
        s.events.push(...m.events);
        notify();
      }
    } catch (e) {
      if (!abort.signal.aborted) s.error = ConnectError.from(e);
    } finally {
      s.ended = true;
      notify();
    }
  })();
  return s;
}

/** A compact, comparable description of an event. */
export function brief(e: ChangeEvent): string {
  switch (e.kind.case) {
    case "upsert":
      return `upsert ${e.kind.value.id}@${e.kind.value.version}`;
    case "delete":
      return `delete ${e.kind.value.id}@${e.kind.value.version}`;
    case "enterScope":
      return `enter ${e.kind.value.record!.id}@${e.kind.value.record!.version}`;
    case "leaveScope":
      return `leave ${e.kind.value.id}@${e.kind.value.version}`;
    case "heartbeat":
      return "heartbeat";
    case "snapshotRecord":
      return `snapshot ${e.kind.value.record!.id}@${e.kind.value.record!.version}`;
    case "snapshotEnd":
      return `snapshot_end ${e.kind.value.recordCount}`;
    default:
      return "?";
  }
}

/** Events that concern records (no heartbeats), briefly. */
export const recordEvents = (events: ChangeEvent[]) => events.filter((e) => e.kind.case !== "heartbeat").map(brief);

/** The record id and version an event is about (undefined for heartbeats and snapshot ends). */
export function eventRecord(e: ChangeEvent): { id: string; collection: string; version: bigint } | undefined {
  switch (e.kind.case) {
    case "upsert":
    case "delete":
    case "leaveScope":
      return { id: e.kind.value.id, collection: e.kind.value.collection, version: e.kind.value.version };
    case "enterScope":
    case "snapshotRecord":
      return { id: e.kind.value.record!.id, collection: e.kind.value.record!.collection, version: e.kind.value.record!.version };
    default:
      return undefined;
  }
}

export type { SubscribeRequest };

/** Records as comparable JSON: id -> {version, fields}. */
export type CopyJson = Record<string, { version: string; fields: Record<string, unknown> }>;

interface Listable {
  listRecords(req: { collection: string; pageSize: number; pageToken: string; filters?: MessageInitShape<typeof FieldFilterSchema>[] }): Promise<{
    records: { id: string; version: bigint; fields: Record<string, Value> }[];
    nextPageToken: string;
  }>;
}

const valuesJson = (fields: Record<string, Value>) =>
  Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => [k, toJson(ValueSchema, v)]));

/** Every (non-deleted) record of a collection as the server has it now. */
export async function serverCopy(client: Listable, collection: string, filters: MessageInitShape<typeof FieldFilterSchema>[] = []): Promise<CopyJson> {
  const out: CopyJson = {};
  let pageToken = "";
  do {
    const page = await client.listRecords({ collection, pageSize: 1000, pageToken, filters });
    for (const r of page.records) out[r.id] = { version: r.version.toString(), fields: valuesJson(r.fields) };
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

/** A replica's (or any id -> record map's) copy as comparable JSON. */
export function copyJson(records: Iterable<{ id: string; version: bigint; fields: Record<string, Value> }>): CopyJson {
  const out: CopyJson = {};
  for (const r of records) out[r.id] = { version: r.version.toString(), fields: valuesJson(r.fields) };
  return out;
}
