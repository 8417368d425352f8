// ConflictService handlers: the review queue. A resolution is an ordinary
// mutation through the write pipeline (so it is a normal change in history
// and streams) that also closes its ticket, in one transaction.
import { create } from "@bufbuild/protobuf";
import { durationMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
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
import type { ConfigSource } from "../config/source.js";
import { DomainError, invalidArgument, notFound } from "../platform/errors.js";
import { decodePageToken, encodePageToken, pageSize } from "../platform/page-token.js";
import { principalOf } from "../platform/principal.js";
import { encodeClock, encodeResult } from "../records/convert.js";
import type { MutationInput } from "../records/model.js";
import type { WritePipeline } from "../records/write-pipeline.js";
import type { CollectionSchema, StoredValue } from "../schema/types.js";
import { decodeValue, encodeValue } from "../schema/values.js";
import type { RecordStore } from "../store/record-store.js";
import type { ConflictTicket, TicketStatus as StoreStatus } from "../store/ticket-sql.js";

export interface ConflictServiceDeps {
  store: RecordStore;
  pipeline: WritePipeline;
  config: ConfigSource;
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

export function encodeTicket(schema: CollectionSchema | undefined, t: ConflictTicket): ConflictTicketPb {
  const field = schema?.fields.get(t.field);
  return create(ConflictTicketSchema, {
    id: t.id,
    collection: t.collection,
    recordId: t.recordId,
    field: t.field,
    status: STATUS_TO_PB[t.status],
    fieldVersion: BigInt(t.fieldVersion),
    candidates: t.candidates.map((c) =>
      create(ConflictCandidateSchema, {
        value: c.cleared || !field ? undefined : encodeValue(field, c.value),
        cleared: c.cleared,
        clock: encodeClock(c.clock),
        clientMutationId: c.clientMutationId,
      }),
    ),
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

export function createConflictService(deps: ConflictServiceDeps): ServiceImpl<typeof ConflictService> {
  const schemaOf = (collection: string) => deps.config.current().schemas.collections.get(collection);

  async function load(tenant: string, id: string): Promise<ConflictTicket> {
    if (!id) throw invalidArgument("ticket_id is required", [{ field: "ticket_id", description: "name a ticket", reason: "REQUIRED" }]);
    const ticket = await deps.store.getTicket(tenant, id);
    if (!ticket) throw notFound("conflict_ticket", id, `conflict ticket ${JSON.stringify(id)} does not exist`, "TICKET_NOT_FOUND");
    return ticket;
  }

  return {
    async listConflictTickets(req, ctx) {
      const { tenant } = principalOf(ctx);
      const limit = pageSize(req.pageSize);
      const status = STATUS_FROM_PB[req.status];
      const minAgeMs = req.minAge ? durationMs(req.minAge) : 0;
      if (minAgeMs < 0) throw invalidArgument("min_age must not be negative", [{ field: "min_age", description: "must be >= 0", reason: "OUT_OF_RANGE" }]);
      const query = { c: req.collection, r: req.recordId, f: req.field, s: status ?? "", a: minAgeMs };
      const after = decodePageToken(req.pageToken, query);
      const [time, id] = after ? (JSON.parse(after) as [string, string]) : [];
      const tickets = await deps.store.listTickets({
        tenant,
        collection: req.collection || undefined,
        recordId: req.recordId || undefined,
        field: req.field || undefined,
        status,
        createdBefore: minAgeMs > 0 ? new Date(Date.now() - minAgeMs) : undefined,
        after: time && id ? { time: new Date(time), id } : undefined,
        limit: limit + 1,
      });
      const page = tickets.slice(0, limit);
      const last = page[page.length - 1];
      return create(ListConflictTicketsResponseSchema, {
        tickets: page.map((t) => encodeTicket(schemaOf(t.collection), t)),
        nextPageToken: tickets.length > limit && last ? encodePageToken(query, JSON.stringify([last.createTime.toISOString(), last.id])) : "",
      });
    },

    async getConflictTicket(req, ctx) {
      const ticket = await load(principalOf(ctx).tenant, req.ticketId);
      return create(GetConflictTicketResponseSchema, { ticket: encodeTicket(schemaOf(ticket.collection), ticket) });
    },

    async resolveConflictTicket(req, ctx) {
      const principal = principalOf(ctx);
      const ticket = await load(principal.tenant, req.ticketId);
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
        results = await deps.pipeline.write({ tenant: principal.tenant, actor: principal.subject, mutations: [mutation] });
      } catch (e) {
        // Closed by someone else between our read and the write: name the first resolution.
        if (e instanceof DomainError && e.reason === "TICKET_CLOSED") {
          const now = await load(principal.tenant, ticket.id);
          if (now.status !== "open") throw alreadyClosed(now);
        }
        throw e;
      }
      const after = await load(principal.tenant, ticket.id);
      return create(ResolveConflictTicketResponseSchema, { ticket: encodeTicket(schema, after), result: encodeResult(results[0]!) });
    },

    async dismissConflictTicket(req, ctx) {
      const principal = principalOf(ctx);
      const ticket = await load(principal.tenant, req.ticketId);
      if (!(await deps.store.dismissTicket(principal.tenant, ticket.id, principal.subject))) {
        throw alreadyClosed(await load(principal.tenant, ticket.id));
      }
      const after = await load(principal.tenant, ticket.id);
      return create(DismissConflictTicketResponseSchema, { ticket: encodeTicket(schemaOf(after.collection), after) });
    },
  };
}
