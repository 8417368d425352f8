// ConflictService handlers: the review queue. A resolution is an ordinary
// mutation through the write pipeline (so it is a normal change in history
// and streams) that also closes its ticket, in one transaction.
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate, type Duration } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ConflictCandidateSchema,
  ConflictResolutionSchema,
  ConflictService,
  ConflictTicketSchema,
  DismissConflictTicketResponseSchema,
  GetConflictTicketResponseSchema,
  ListConflictTicketsResponseSchema,
  ResolveConflictTicketResponseSchema,
  TicketStatus,
  type ConflictTicket as ConflictTicketPb,
} from "../../gen/deltamesh/v1/conflicts_pb.js";
import type { AccessControl, CallAccess } from "../access/control.js";
import type { FieldRules } from "../access/engine.js";
import { shownValue } from "../access/project.js";
import type { RecordView } from "../access/view.js";
import type { ConfigSource } from "../config/source.js";
import { DomainError, invalidArgument, notFound, type FieldViolation } from "../platform/errors.js";
import { pageSize, positions, scanPage, type PageTokens } from "../platform/page-token.js";
import { checkName, encodeClock, encodeResult, encodeShown } from "../records/convert.js";
import type { MutationInput, StoredRecord } from "../records/model.js";
import type { WritePipeline } from "../records/write-pipeline.js";
import type { CollectionSchema, StoredValue } from "../schema/types.js";
import { decodeValue, encodeValue, storableText } from "../schema/values.js";
import { recordKeyString, type RecordStore } from "../store/record-store.js";
import type { ConflictTicket, TicketStatus as StoreStatus } from "../store/ticket-sql.js";

export interface ConflictServiceDeps {
  store: RecordStore;
  pipeline: WritePipeline;
  config: ConfigSource;
  access: AccessControl;
  pageTokens: PageTokens;
}

/** How one caller sees a ticket's field: through the read view of its record. */
interface TicketSight {
  view: RecordView;
  rules: FieldRules;
}

const STATUS_TO_PB: Record<StoreStatus, TicketStatus> = {
  open: TicketStatus.OPEN,
  resolved: TicketStatus.RESOLVED,
  dismissed: TicketStatus.DISMISSED,
};

const STATUS_FROM_PB: Partial<Record<TicketStatus, StoreStatus>> = {
  [TicketStatus.OPEN]: "open",
  [TicketStatus.RESOLVED]: "resolved",
  [TicketStatus.DISMISSED]: "dismissed",
};

/**
 * With `sight`, candidate values are shown as the caller's view shows the
 * field; `unmaskedSensitive` says a sensitive candidate value was shown in
 * clear (the caller audits it).
 */
export function encodeTicket(schema: CollectionSchema | undefined, t: ConflictTicket, sight?: TicketSight): { ticket: ConflictTicketPb; unmaskedSensitive: boolean } {
  const field = schema?.fields.get(t.field);
  let unmaskedSensitive = false;
  const shown = (value: StoredValue) => {
    if (!sight) return { value, masked: false };
    const v = shownValue(sight.view, sight.rules, t.field, value);
    if (v?.unmaskedSensitive) unmaskedSensitive = true;
    return v;
  };
  const ticket = create(ConflictTicketSchema, {
    id: t.id,
    collection: t.collection,
    recordId: t.recordId,
    field: t.field,
    status: STATUS_TO_PB[t.status],
    fieldVersion: BigInt(t.fieldVersion),
    candidates: t.candidates.map((c) => {
      const v = c.cleared || !field ? null : shown(c.value);
      return create(ConflictCandidateSchema, {
        value: v === null ? undefined : encodeShown(field!, v.value, v.masked),
        cleared: c.cleared,
        clock: encodeClock(c.clock),
        clientMutationId: c.clientMutationId,
        masked: v?.masked ?? false,
      });
    }),
    resolution: t.resolution
      ? create(ConflictResolutionSchema, {
          resolvedBy: t.resolution.by,
          resolveTime: timestampFromDate(new Date(t.resolution.at)),
          candidateIndex: t.resolution.candidate,
          version: BigInt(t.resolution.version ?? 0),
        })
      : undefined,
    createTime: timestampFromDate(t.createTime),
    updateTime: timestampFromDate(t.updateTime),
  });
  return { ticket, unmaskedSensitive };
}

function alreadyClosed(t: ConflictTicket): DomainError {
  const r = t.resolution;
  const how =
    t.status === "dismissed"
      ? `dismissed by ${r?.by ?? "?"} at ${r?.at ?? "?"}`
      : `resolved by ${r?.by ?? "?"} at ${r?.at ?? "?"} (candidate ${r?.candidate ?? "?"}, record version ${r?.version ?? "?"})`;
  return new DomainError("failed_precondition", `conflict ticket ${t.id} was already ${how}`, {
    reason: t.status === "dismissed" ? "TICKET_DISMISSED" : "TICKET_ALREADY_RESOLVED",
    metadata: {
      ticket_id: t.id,
      status: t.status,
      resolved_by: r?.by ?? "",
      resolve_time: r?.at ?? "",
      ...(r?.version !== undefined ? { version: String(r.version) } : {}),
      ...(r?.candidate !== undefined ? { candidate_index: String(r.candidate) } : {}),
    },
  });
}

/** Largest |seconds| of a google.protobuf.Duration (about 10,000 years). */
const MAX_DURATION_SECONDS = 315_576_000_000n;
/** 0001-01-01T00:00:00Z, the earliest time a ticket filter asks about (no ticket is older). */
const EARLIEST_MS = -62_135_596_800_000;

/** min_age in milliseconds (0 when unset): a Duration in the protobuf range, not negative. */
function minAgeMs(d: Duration | undefined): number {
  if (!d) return 0;
  const inRange = d.seconds >= -MAX_DURATION_SECONDS && d.seconds <= MAX_DURATION_SECONDS && Math.abs(d.nanos) <= 999_999_999;
  if (!inRange || (d.seconds > 0n && d.nanos < 0) || (d.seconds < 0n && d.nanos > 0)) {
    throw invalidArgument("min_age is out of range", [
      { field: "min_age", description: `a Duration of at most ${MAX_DURATION_SECONDS} seconds (about 10,000 years), with nanos of the same sign below 1e9`, reason: "OUT_OF_RANGE" },
    ]);
  }
  const ms = durationMs(d);
  if (ms < 0) throw invalidArgument("min_age must not be negative", [{ field: "min_age", description: "must be >= 0", reason: "OUT_OF_RANGE" }]);
  return ms;
}

/** Refuses a ticket id or filter PostgreSQL cannot hold as text (a NUL character, an unpaired surrogate): no ticket has one. */
function checkText(value: string, field: string): void {
  if (!storableText(value)) {
    throw invalidArgument(`${field} contains a NUL character or an unpaired surrogate`, [
      { field, description: "must not contain NUL (U+0000) characters or unpaired surrogates", reason: "INVALID_CHARACTER" },
    ]);
  }
}

export function createConflictService(deps: ConflictServiceDeps): ServiceImpl<typeof ConflictService> {
  const schemaOf = (collection: string) => deps.config.current().schemas.collections.get(collection);

  async function load(tenant: string, id: string): Promise<ConflictTicket> {
    if (!id) throw invalidArgument("ticket_id is required", [{ field: "ticket_id", description: "name a ticket", reason: "REQUIRED" }]);
    checkText(id, "ticket_id");
    const ticket = await deps.store.getTicket(tenant, id);
    if (!ticket) throw ticketNotFound(id);
    return ticket;
  }

  function ticketNotFound(id: string): DomainError {
    return notFound("conflict_ticket", id, `conflict ticket ${JSON.stringify(id)} does not exist`, "TICKET_NOT_FOUND");
  }

  /**
   * How the caller sees a ticket: it needs resolve_conflicts on the record and
   * to read the ticket's field; null when it may not see the ticket at all.
   */
  function sightOf(access: CallAccess, t: ConflictTicket, record: StoredRecord | null | undefined): TicketSight | null {
    const schema = schemaOf(t.collection);
    if (!schema || !record || !access.grants(schema, "resolve_conflicts").admits(record.fields)) return null;
    const view = access.view(schema);
    const rules = view.rulesFor(record.fields);
    return rules?.visible.has(t.field) ? { view, rules } : null;
  }

  /** Tickets as the caller sees them; sensitive candidate values shown in clear are audited (per collection, naming the tickets' records). */
  function encodeVisible(access: CallAccess, tickets: readonly { t: ConflictTicket; sight: TicketSight }[]): ConflictTicketPb[] {
    const unmasked = new Map<string, { ids: string[]; fields: Set<string> }>();
    const out = tickets.map(({ t, sight }) => {
      const e = encodeTicket(schemaOf(t.collection), t, sight);
      if (e.unmaskedSensitive) {
        let u = unmasked.get(t.collection);
        if (!u) unmasked.set(t.collection, (u = { ids: [], fields: new Set() }));
        u.ids.push(t.recordId);
        u.fields.add(t.field);
      }
      return e.ticket;
    });
    for (const [collection, u] of unmasked) access.readUnmasked(collection, u.ids, u.fields);
    return out;
  }

  /** A ticket the caller may see; any other reads as missing (and is audited). */
  async function loadVisible(access: CallAccess, id: string): Promise<{ ticket: ConflictTicket; sight: TicketSight }> {
    access.require("resolve_conflicts");
    const ticket = await load(access.principal.tenant, id);
    const record = await deps.store.get({ tenant: ticket.tenant, collection: ticket.collection, id: ticket.recordId });
    const sight = sightOf(access, ticket, record);
    if (!sight) throw access.hidden(ticketNotFound(id), "resolve_conflicts", ticket.collection, ticket.recordId);
    return { ticket, sight };
  }

  return {
    async listConflictTickets(req, ctx) {
      const access = deps.access.forCall(ctx);
      access.require("resolve_conflicts");
      const { tenant } = access.principal;
      const limit = pageSize(req.pageSize);
      const status = STATUS_FROM_PB[req.status];
      const minAge = minAgeMs(req.minAge);
      checkText(req.collection, "collection");
      checkText(req.recordId, "record_id");
      checkText(req.field, "field");
      const query = { c: req.collection, r: req.recordId, f: req.field, s: status ?? "", a: minAge };
      const createdBefore = minAge > 0 ? new Date(Math.max(Date.now() - minAge, EARLIEST_MS)) : undefined;
      const page = await scanPage(
        async (after, n) => {
          const tickets = await deps.store.listTickets({
            tenant,
            collection: req.collection || undefined,
            recordId: req.recordId || undefined,
            field: req.field || undefined,
            status,
            createdBefore,
            after: after ? positions.timeAndId(after) : undefined,
            limit: n,
          });
          const records = await deps.store.getMany(tickets.map((t) => ({ tenant, collection: t.collection, id: t.recordId })));
          return tickets.map((t) => ({ t, sight: sightOf(access, t, records.get(recordKeyString({ tenant, collection: t.collection, id: t.recordId }))) }));
        },
        ({ t }) => JSON.stringify([t.createTime.toISOString(), t.id]),
        ({ sight }) => sight !== null,
        deps.pageTokens.decode(req.pageToken, query, (a) => (positions.timeAndId(a) ? a : undefined)) ?? "",
        limit,
      );
      return create(ListConflictTicketsResponseSchema, {
        tickets: encodeVisible(access, page.items.map(({ t, sight }) => ({ t, sight: sight! }))),
        nextPageToken: page.next === null ? "" : deps.pageTokens.encode(query, page.next),
      });
    },

    async getConflictTicket(req, ctx) {
      const access = deps.access.forCall(ctx);
      const { ticket, sight } = await loadVisible(access, req.ticketId);
      return create(GetConflictTicketResponseSchema, { ticket: encodeVisible(access, [{ t: ticket, sight }])[0] });
    },

    async resolveConflictTicket(req, ctx) {
      const access = deps.access.forCall(ctx);
      const principal = access.principal;
      const { ticket, sight } = await loadVisible(access, req.ticketId);
      if (ticket.status !== "open") throw alreadyClosed(ticket);
      const schema = schemaOf(ticket.collection);
      const field = schema?.fields.get(ticket.field);
      if (!schema || !field) {
        throw new DomainError("failed_precondition", `field ${ticket.collection}.${ticket.field} is no longer in the schema; dismiss the ticket`, {
          reason: "FIELD_NOT_IN_SCHEMA",
          metadata: { ticket_id: ticket.id },
        });
      }
      let chosen: { value: StoredValue; cleared: boolean };
      let candidate: number;
      switch (req.choice.case) {
        case "candidateIndex": {
          const c = ticket.candidates[req.choice.value];
          if (!c) {
            throw invalidArgument(`candidate_index ${req.choice.value} is out of range: the ticket has ${ticket.candidates.length} candidates`, [
              { field: "candidate_index", description: `0 to ${ticket.candidates.length - 1}`, reason: "OUT_OF_RANGE" },
            ]);
          }
          chosen = c;
          candidate = req.choice.value;
          break;
        }
        case "value": {
          const decoded = decodeValue(field, req.choice.value, { defaultPhoneRegion: deps.config.current().schemas.defaultPhoneRegion, path: "value" });
          if (!decoded.ok) throw invalidArgument(`value is invalid: ${decoded.violation.description}`, [decoded.violation]);
          chosen = { value: decoded.value, cleared: false };
          candidate = -1;
          break;
        }
        default:
          throw invalidArgument("choose a candidate_index or supply a value", [{ field: "choice", description: "set candidate_index or value", reason: "REQUIRED" }]);
      }
      const nameViolations: FieldViolation[] = [];
      checkName(req.clientMutationId, "client_mutation_id", nameViolations);
      checkName(req.source, "source", nameViolations);
      checkName(req.device, "device", nameViolations);
      if (nameViolations.length > 0) throw invalidArgument(`the resolution has invalid fields: ${nameViolations.map((v) => `${v.field}: ${v.description}`).join("; ")}`, nameViolations);
      const mutation: MutationInput = {
        collection: ticket.collection,
        target: { id: ticket.recordId },
        set: chosen.cleared ? {} : { [ticket.field]: chosen.value },
        clear: chosen.cleared ? [ticket.field] : [],
        baseVersion: 0,
        clientMutationId: req.clientMutationId,
        source: req.source,
        device: req.device,
        delete: false,
        resolvesTicket: { id: ticket.id, field: ticket.field, candidate },
      };
      let results;
      try {
        results = await deps.pipeline.write({ tenant: principal.tenant, actor: principal.subject, mutations: [mutation], guard: access.writeGuard("resolve_conflicts") });
      } catch (e) {
        access.denied(e);
        // Closed by someone else between our read and the write: name the first resolution.
        if (e instanceof DomainError && e.reason === "TICKET_CLOSED") {
          const now = await load(principal.tenant, ticket.id);
          if (now.status !== "open") throw alreadyClosed(now);
        }
        throw e;
      }
      const after = await load(principal.tenant, ticket.id);
      return create(ResolveConflictTicketResponseSchema, { ticket: encodeVisible(access, [{ t: after, sight }])[0], result: encodeResult(results[0]!) });
    },

    async dismissConflictTicket(req, ctx) {
      const access = deps.access.forCall(ctx);
      const principal = access.principal;
      const { ticket, sight } = await loadVisible(access, req.ticketId);
      if (!(await deps.store.dismissTicket(principal.tenant, ticket.id, principal.subject))) {
        throw alreadyClosed(await load(principal.tenant, ticket.id));
      }
      const after = await load(principal.tenant, ticket.id);
      return create(DismissConflictTicketResponseSchema, { ticket: encodeVisible(access, [{ t: after, sight }])[0] });
    },
  };
}
