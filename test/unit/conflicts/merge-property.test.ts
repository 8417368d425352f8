// Property tests of the merge: random histories of devices going offline,
// editing from stale bases and syncing in random order, replayed through the
// real applyMutation, checked against simple reference models.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { packHlc } from "../../../services/conflicts/hlc.js";
import { laterWins } from "../../../services/conflicts/merge.js";
import { applyMutation, type OpenTicket, type TicketCandidate } from "../../../services/records/apply-mutation.js";
import type { FieldClock, FieldOutcome, MutationInput, StoredRecord } from "../../../services/records/model.js";
import { parseSchemaSet } from "../../../services/schema/load.js";
import type { StoredValue } from "../../../services/schema/types.js";

const SOURCES = ["erp", "crm-desktop", "sales-app"] as const;
const schema = parseSchemaSet({
  sources: [...SOURCES],
  collections: {
    customers: {
      source_priority: ["erp", "crm-desktop", "sales-app"],
      fields: {
        name: { type: "string", policy: "lww" },
        credit: { type: "string", policy: "source_priority" },
        contract: { type: "string", policy: "keep_original" },
        status: { type: "string", policy: "manual_review" },
        code: { type: "string", policy: "reject" },
      },
    },
  },
}).collections.get("customers")!;
const FIELDS = ["name", "credit", "contract", "status", "code"] as const;

/** The server side of the simulation: one record, its tickets and its history. */
class Server {
  record: StoredRecord | null = null;
  tickets = new Map<string, OpenTicket>();
  history: { set: Record<string, StoredValue>; cleared: string[]; decisions: FieldOutcome[] }[] = [];
  private ticketSeq = 0;

  apply(m: MutationInput, hlc: bigint, actor: string): FieldOutcome[] | "rejected" {
    let out;
    try {
      out = applyMutation(this.record, m, {
        tenant: "t",
        actor,
        schema,
        id: "r1",
        hlc,
        now: new Date(0),
        openTickets: this.tickets,
        newTicketId: () => `t${++this.ticketSeq}`,
      });
    } catch {
      return "rejected";
    }
    if (out.change) {
      this.record = out.change.record;
      this.history.push({ set: out.change.set, cleared: out.change.cleared, decisions: out.change.decisions });
      for (const edit of out.change.tickets) {
        const open = this.tickets.get(edit.field);
        this.tickets.set(edit.field, {
          id: edit.ticketId,
          field: edit.field,
          fieldVersion: edit.fieldVersion,
          candidates: [...(open?.candidates ?? []), ...edit.candidates],
        });
      }
    }
    return out.result.fields;
  }
}

interface Edit {
  device: number;
  fields: { field: (typeof FIELDS)[number]; clear: boolean }[];
  /** How long ago, in ms of simulated time, the edit was made on the device. */
  offlineMs: number;
}

type Step = { kind: "edit"; edit: Edit } | { kind: "sync"; device: number } | { kind: "pull"; device: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    kind: fc.constant("edit" as const),
    edit: fc.record({
      device: fc.integer({ min: 0, max: 2 }),
      fields: fc.uniqueArray(fc.record({ field: fc.constantFrom(...FIELDS), clear: fc.boolean() }), {
        minLength: 1,
        maxLength: 3,
        selector: (f) => f.field,
      }),
      offlineMs: fc.integer({ min: 0, max: 5000 }),
    }),
  }),
  fc.record({ kind: fc.constant("sync" as const), device: fc.integer({ min: 0, max: 2 }) }),
  fc.record({ kind: fc.constant("pull" as const), device: fc.integer({ min: 0, max: 2 }) }),
);

interface Ack {
  field: string;
  value: StoredValue | null;
  outcome: FieldOutcome;
}

function run(steps: Step[]) {
  const server = new Server();
  const devices = SOURCES.map(() => ({ base: 0, queue: [] as { m: MutationInput; hlc: bigint }[] }));
  const acks: Ack[] = [];
  let now = 10_000;
  let valueSeq = 0;
  for (const step of steps) {
    now += 10;
    const d = devices[step.kind === "edit" ? step.edit.device : step.device]!;
    const device = step.kind === "edit" ? step.edit.device : step.device;
    if (step.kind === "edit") {
      const set: Record<string, StoredValue> = {};
      const clear: string[] = [];
      for (const f of step.edit.fields) {
        // `name` may never be cleared on create (it is the first value), so only clear others.
        if (f.clear) clear.push(f.field);
        else set[f.field] = `v${++valueSeq}`;
      }
      const m: MutationInput = {
        collection: "customers",
        target: { id: "r1" },
        set,
        clear,
        baseVersion: d.base,
        clientMutationId: "",
        source: SOURCES[device]!,
        device: `dev${device}`,
        delete: false,
      };
      d.queue.push({ m, hlc: packHlc(now - step.edit.offlineMs) });
    } else if (step.kind === "sync") {
      for (const { m, hlc } of d.queue.splice(0)) {
        const outcome = server.apply(m, hlc, `user${device}`);
        if (outcome === "rejected") continue;
        for (const o of outcome) acks.push({ field: o.field, value: o.field in m.set ? m.set[o.field]! : null, outcome: o });
      }
      d.base = server.record?.version ?? 0;
    } else {
      d.base = server.record?.version ?? 0;
    }
  }
  return { server, acks };
}

describe("merge properties", () => {
  it("no acknowledged field write is lost: it is current, in history (applied or decided), or in a review ticket", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 60 }), (steps) => {
        const { server, acks } = run(steps);
        const everSet = new Set(server.history.flatMap((h) => Object.values(h.set)));
        const decided = server.history.flatMap((h) => h.decisions);
        const ticketed: TicketCandidate[] = [...server.tickets.values()].flatMap((t) => t.candidates);
        for (const ack of acks) {
          const { status } = ack.outcome;
          if (ack.value === null) continue; // clears carry no typed value
          switch (status) {
            case "applied":
              expect(everSet.has(ack.value)).toBe(true);
              break;
            case "unchanged":
              expect(everSet.has(ack.value)).toBe(true);
              break;
            case "superseded":
            case "kept":
              expect(ack.outcome.winner).toBeDefined();
              expect(decided.some((o) => o.field === ack.field && o.status === status && o.proposed === ack.value)).toBe(true);
              break;
            case "queued_for_review":
              expect(ticketed.some((c) => c.value === ack.value)).toBe(true);
              expect(decided.some((o) => o.ticketId === ack.outcome.ticketId && o.proposed === ack.value)).toBe(true);
              break;
          }
        }
        // The record's current values all came from acknowledged writes.
        for (const [field, value] of Object.entries(server.record?.fields ?? {})) {
          expect(acks.some((a) => a.field === field && a.value === value)).toBe(true);
        }
      }),
      { numRuns: 400 },
    );
  });

  it("blind last-writer-wins edits converge to the latest edit whatever the sync order (reference model)", () => {
    const edit = fc.record({ device: fc.integer({ min: 0, max: 2 }), at: fc.integer({ min: 0, max: 1000 }) });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 30 }), fc.func(fc.integer()), (edits, order) => {
        const server = new Server();
        const writes = edits.map((e, i) => ({
          value: `v${i}` as StoredValue,
          clock: { version: 0, hlc: packHlc(e.at), source: SOURCES[e.device]!, actor: `user${e.device}`, device: `dev${e.device}` } as FieldClock,
        }));
        const shuffled = [...writes].sort((a, b) => order(a.value) - order(b.value));
        for (const w of shuffled) {
          server.apply(
            { collection: "customers", target: { id: "r1" }, set: { name: w.value }, clear: [], baseVersion: 0, clientMutationId: "", source: w.clock.source, device: w.clock.device, delete: false },
            w.clock.hlc,
            w.clock.actor,
          );
        }
        const model = writes.reduce((best, w) => (laterWins(w, best) ? w : best));
        expect(server.record!.fields.name).toBe(model.value);
      }),
      { numRuns: 300 },
    );
  });

  it("an edit based on the current version always applies, whatever the policy", () => {
    fc.assert(
      fc.property(fc.constantFrom(...FIELDS), fc.integer({ min: 0, max: 10_000 }), (field, at) => {
        const server = new Server();
        const base = { collection: "customers", target: { id: "r1" }, clear: [], clientMutationId: "", source: "sales-app", device: "d", delete: false };
        server.apply({ ...base, set: { [field]: "first" }, baseVersion: 0 }, packHlc(20_000), "a");
        const out = server.apply({ ...base, set: { [field]: "second" }, baseVersion: server.record!.version }, packHlc(at), "b");
        expect(out).not.toBe("rejected");
        expect(server.record!.fields[field]).toBe("second");
      }),
    );
  });
});
