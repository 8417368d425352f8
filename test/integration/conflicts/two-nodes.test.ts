// Concurrent editors through two server processes sharing one database:
// clients on both nodes edit the same customers from stale bases (devices
// that were offline), with every per-field policy in play. Afterwards the
// record histories, decisions and review tickets are replayed against what
// each client was told: no acknowledged field write is lost. It is a value
// the history applied, or a decision in the history says which rule
// superseded or kept it, or it waits in a review ticket.
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConflictService, type ConflictTicket } from "../../../gen/deltamesh/v1/conflicts_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { FieldOutcome_Status, type Change, type Value } from "../../../gen/deltamesh/v1/types_pb.js";
import { testDatabaseUrl } from "../../support/env.js";
import { startServerProcess, type ServerProcess } from "../../support/processes/deltamesh.js";
import { byId, enm, str } from "../../support/rpc.js";

let nodes: ServerProcess[] = [];
beforeAll(async () => {
  const databaseUrl = await testDatabaseUrl();
  nodes = await Promise.all([startServerProcess({ databaseUrl }), startServerProcess({ databaseUrl })]);
}, 120_000);
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

/** String fields of customers, one per policy: lww (notes, department), manual_review (owner), keep_original (contract_no), reject (invoice_title). */
const FIELDS = ["notes", "department", "owner", "contract_no", "invoice_title"] as const;
const SOURCES = ["crm-desktop", "sales-app", "erp"] as const;
const CLIENTS = 6;
const EDITS = 30;
const RECORDS = Array.from({ length: 4 }, (_, i) => `two-nodes-${process.pid}-${i}`);

interface Ack {
  record: string;
  field: string;
  value: string;
  status: FieldOutcome_Status;
  ticketId: string;
}

const text = (v: Value | undefined): string | undefined => (v?.kind.case === "stringValue" ? v.kind.value : undefined);

/** A deterministic pseudo-random sequence per client (reproducible runs). */
function random(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

async function editor(c: number, acks: Ack[], refused: { n: number }): Promise<void> {
  const node = nodes[c % nodes.length]!;
  const records = node.client(RecordService);
  const rnd = random(c + 1);
  const base = new Map<string, bigint>();
  for (let i = 0; i < EDITS; i++) {
    const record = RECORDS[Math.floor(rnd() * RECORDS.length)]!;
    // Now and then the device comes online and reads the record; otherwise it edits from what it last saw.
    if (rnd() < 0.3) base.set(record, (await records.getRecord({ ref: byId(record) })).record!.version);
    const fields = FIELDS.filter(() => rnd() < 0.4);
    if (fields.length === 0) fields.push(FIELDS[i % FIELDS.length]!);
    const values = new Map(fields.map((f) => [f as string, `c${c}-e${i}-${f}`]));
    const set = Object.fromEntries([...values].map(([f, v]) => [f, str(v)]));
    try {
      const res = await records.writeRecords({
        mutations: [{ ref: byId(record), set, baseVersion: base.get(record) ?? 1n, source: SOURCES[c % SOURCES.length]!, device: `device-${c}` }],
      });
      const r = res.results[0]!;
      for (const o of r.fields) acks.push({ record, field: o.field, value: values.get(o.field)!, status: o.status, ticketId: o.ticketId });
      if (rnd() < 0.5) base.set(record, r.version); // half the time the device keeps its older base (it goes offline again)
    } catch (e) {
      // `reject` refuses the whole mutation: nothing was acknowledged.
      if (!(e instanceof ConnectError) || e.code !== Code.Aborted) throw e;
      refused.n++;
    }
  }
}

async function history(records: ReturnType<ServerProcess["client"]>, id: string): Promise<Change[]> {
  const out: Change[] = [];
  let pageToken = "";
  do {
    const page = await records.getRecordHistory({ ref: byId(id), pageSize: 200, pageToken });
    out.push(...page.changes);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

describe("concurrent editors on two nodes", () => {
  it("lose no acknowledged field write: each is applied in history, decided by a rule, or in a review ticket", async () => {
    const seed = nodes[0]!.client(RecordService);
    await seed.writeRecords({
      mutations: RECORDS.map((id) => ({ ref: byId(id), set: { name: str(id), region: enm("east_china") }, source: "erp" })),
    });
    const acks: Ack[] = [];
    const refused = { n: 0 };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => editor(c, acks, refused)));

    // Replay, reading through the other node.
    const reader = nodes[1]!.client(RecordService);
    const conflicts = nodes[1]!.client(ConflictService);
    const counts = new Map<FieldOutcome_Status, number>();
    for (const id of RECORDS) {
      const changes = await history(reader, id);
      const tickets: ConflictTicket[] = (await conflicts.listConflictTickets({ collection: "customers", recordId: id, pageSize: 1000 })).tickets;
      const current = (await reader.getRecord({ ref: byId(id) })).record!;
      // Every version from 1 to the current one is in the history: no change row was lost.
      const versions = [...new Set(changes.map((ch) => Number(ch.newVersion)))].sort((a, b) => a - b);
      expect(versions).toEqual(Array.from({ length: Number(current.version) }, (_, i) => i + 1));

      const applied = (field: string, value: string) => changes.some((ch) => text(ch.set[field]) === value);
      const decided = (field: string, value: string, status: FieldOutcome_Status) =>
        changes.some((ch) => ch.decisions.some((d) => d.field === field && d.status === status && text(d.proposed) === value));
      for (const ack of acks.filter((a) => a.record === id)) {
        counts.set(ack.status, (counts.get(ack.status) ?? 0) + 1);
        const what = `${id} ${ack.field}=${ack.value} (${FieldOutcome_Status[ack.status]})`;
        switch (ack.status) {
          case FieldOutcome_Status.APPLIED:
          case FieldOutcome_Status.UNCHANGED:
            expect(applied(ack.field, ack.value), what).toBe(true);
            break;
          case FieldOutcome_Status.SUPERSEDED:
          case FieldOutcome_Status.KEPT:
            expect(decided(ack.field, ack.value, ack.status), what).toBe(true);
            break;
          case FieldOutcome_Status.QUEUED_FOR_REVIEW: {
            const ticket = tickets.find((t) => t.id === ack.ticketId);
            expect(ticket?.candidates.some((cand) => text(cand.value) === ack.value), what).toBe(true);
            break;
          }
          default:
            throw new Error(`unexpected outcome for ${what}`);
        }
      }
      // What the record holds now came from acknowledged writes (or the seed).
      for (const f of FIELDS) {
        const now = text(current.fields[f]);
        if (now !== undefined) expect(acks.some((a) => a.record === id && a.field === f && a.value === now), `${id}.${f}=${now}`).toBe(true);
      }
    }
    const summary = [...counts].map(([s, n]) => `${FieldOutcome_Status[s]}: ${n}`).join(", ");
    console.log(`[conflicts] ${CLIENTS} clients on 2 nodes, ${acks.length} acknowledged field writes (${summary}); ${refused.n} mutations refused by the reject policy`);
    // The run exercised the rules, not only clean applies.
    expect(counts.get(FieldOutcome_Status.APPLIED) ?? 0).toBeGreaterThan(0);
    expect((counts.get(FieldOutcome_Status.QUEUED_FOR_REVIEW) ?? 0) + (counts.get(FieldOutcome_Status.KEPT) ?? 0) + (counts.get(FieldOutcome_Status.SUPERSEDED) ?? 0)).toBeGreaterThan(0);
  }, 120_000);
});
