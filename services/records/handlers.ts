// RecordService handlers: translate protobuf <-> domain and call the store
// and the write pipeline. No SQL here.
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import {
  BatchGetRecordsResponseSchema,
  DeleteRecordResponseSchema,
  GetRecordHistoryResponseSchema,
  GetRecordResponseSchema,
  ListRecordsResponseSchema,
  RecordService,
  type FieldFilter,
  WriteRecordsResponseSchema,
} from "../../gen/deltamesh/v1/records_pb.js";
import { MutationSchema, ValueSchema, type RecordRef } from "../../gen/deltamesh/v1/types_pb.js";
import type { AccessControl, CallAccess } from "../access/control.js";
import type { AccessDenial } from "../access/write-guard.js";
import { shownChange, shownRecord } from "../access/project.js";
import type { ConfigSource } from "../config/source.js";
import { asSingleItem, DomainError, invalidArgument, isDomainError, type FieldViolation } from "../platform/errors.js";
import { pageSize, positions, scanPage, type PageTokens } from "../platform/page-token.js";
import type { CollectionSchema, SchemaSet, StoredValue } from "../schema/types.js";
import { decodeValue } from "../schema/values.js";
import { identityKeyString, type RecordStore } from "../store/record-store.js";
import { collectionOf, decodeFilters, decodeMutations, decodeRef, encodeChange, encodeRecord, encodeResult, type ResolvedRef } from "./convert.js";
import { exportRecords } from "./export.js";
import type { MutationInput, MutationResult, StoredRecord } from "./model.js";
import type { WritePipeline } from "./write-pipeline.js";
import { encodeWriteRecordsResponse } from "./fast-encode.js";
import { preEncoded } from "../platform/transport/pre-encoded.js";

export interface RecordServiceDeps {
  store: RecordStore;
  pipeline: WritePipeline;
  config: ConfigSource;
  access: AccessControl;
  pageTokens: PageTokens;
}

/** Most mutations in one WriteRecords call, refs in one BatchGetRecords call. */
export const MAX_BATCH = 1000;

export function createRecordService(deps: RecordServiceDeps): ServiceImpl<typeof RecordService> {
  const schemas = (): SchemaSet => deps.config.current().schemas;

  /** The record a ref names, or null; identity refs go through the key table. */
  async function find(tenant: string, ref: ResolvedRef): Promise<StoredRecord | null> {
    let id: string | undefined;
    if ("id" in ref.target) id = ref.target.id;
    else {
      const lookup = { tenant, collection: ref.collection.name, ...ref.target.identity };
      id = (await deps.store.resolveIdentities([lookup])).get(identityKeyString(lookup));
    }
    return id === undefined ? null : deps.store.get({ tenant, collection: ref.collection.name, id });
  }

  /** A valid ref the caller may use: it may read the collection, and the identity field it names. */
  function resolve(access: CallAccess, ref: RecordRef | undefined, path: string): ResolvedRef {
    const violations: FieldViolation[] = [];
    const resolved = decodeRef(schemas(), ref, path, violations);
    if (!resolved) throw invalidArgument(`${path} is invalid: ${violations.map((v) => v.description).join("; ")}`, violations);
    access.readable(resolved.collection);
    if ("identity" in resolved.target) access.requireReadableField(resolved.collection, resolved.target.identity.field, `${path}.identity.field`);
    return resolved;
  }

  /**
   * The record a ref names if the caller may see it; one outside its scope,
   * or found by an identity field it hides from the caller, reads as missing
   * (and is audited).
   */
  async function findVisible(access: CallAccess, ref: ResolvedRef): Promise<StoredRecord | null> {
    const record = await find(access.principal.tenant, ref);
    if (!record) return null;
    const view = access.view(ref.collection);
    if (!view.inScope(record.fields)) {
      access.hidden(recordNotFound(ref), "read", ref.collection.name, record.id);
      return null;
    }
    const lookup = "identity" in ref.target ? [ref.target.identity.field] : [];
    if (!view.reveals(record.fields, lookup)) {
      access.hidden(recordNotFound(ref), "read", ref.collection.name, record.id, lookup);
      return null;
    }
    return record;
  }

  /** Records as the caller's view shows them; sensitive fields read in clear are audited. */
  function encodeVisible(access: CallAccess, schema: CollectionSchema, records: readonly StoredRecord[]) {
    const view = access.view(schema);
    const unmasked = new Set<string>();
    const ids: string[] = [];
    const out = records.map((r) => {
      const shown = shownRecord(view, view.rulesFor(r.fields)!, r);
      if (shown.unmaskedSensitive.length > 0) {
        ids.push(r.id);
        for (const f of shown.unmaskedSensitive) unmasked.add(f);
      }
      return encodeRecord(schema, shown.value, shown.masked);
    });
    access.readUnmasked(schema.name, ids, unmasked);
    return out;
  }

  function recordNotFound(ref: ResolvedRef): DomainError {
    // Also the answer for a record outside the caller's scope: keep it free of anything only an existing record has.
    const name = "id" in ref.target ? ref.target.id : `${ref.target.identity.field}=${JSON.stringify(ref.target.identity.value)}`;
    return new DomainError("not_found", `${ref.collection.name} record ${name} does not exist`, {
      reason: "RECORD_NOT_FOUND",
      resource: { type: "record", name: `${ref.collection.name}/${"id" in ref.target ? ref.target.id : ""}` },
      metadata: { collection: ref.collection.name },
    });
  }

  /** Writes through the pipeline with the caller's write guard; refusals are audited. */
  async function write(access: CallAccess, mutations: MutationInput[]): Promise<MutationResult[]> {
    const guard = access.writeGuard();
    mutations.forEach((m, i) => {
      if ("identity" in m.target) access.requireReadableField(schemas().collections.get(m.collection)!, m.target.identity.field, `mutations[${i}].ref.identity.field`);
      try {
        guard.precheck(m);
      } catch (e) {
        throw access.denied(e instanceof DomainError ? e.withPrefix(`mutations[${i}]`, { mutation_index: String(i) }) : e);
      }
    });
    const { tenant, subject } = access.principal;
    return deps.pipeline.write({ tenant, actor: subject, mutations, guard }).catch(async (e: unknown) => {
      throw access.denied(await withoutHiddenHolder(access, e));
    });
  }

  /**
   * IDENTITY_KEY_TAKEN names the record holding the key. When the caller may
   * not see that record (outside its scope, or hiding the key's field), the
   * same refusal without the holder's id anywhere, audited as a denial.
   */
  async function withoutHiddenHolder(access: CallAccess, e: unknown): Promise<unknown> {
    if (!(e instanceof DomainError) || e.reason !== "IDENTITY_KEY_TAKEN") return e;
    const { collection = "", field = "", holder_id: holder = "", ...metadata } = e.metadata;
    const schema = schemas().collections.get(collection);
    if (!schema || !field || !holder) return e;
    const record = await deps.store.get({ tenant: access.principal.tenant, collection, id: holder }).catch(() => undefined);
    // Not stored: a record this same request creates (nothing of it was written). Unreadable: hidden, as below.
    const view = access.view(schema);
    if (record === null || (record && view.reveals(record.fields, [field]))) return e;
    const inScope = record !== undefined && view.inScope(record.fields);
    return new DomainError("already_exists", `this ${field} is already taken by a record you cannot see`, {
      reason: e.reason,
      metadata: { ...metadata, collection, field },
      violations: e.violations.map((v) => ({ ...v, description: "held by a record you cannot see" })),
      cause: {
        accessDenied: { action: "read", reason: inScope ? "FIELD_NOT_READABLE" : "OUT_OF_SCOPE", collection, recordId: holder, fields: [field] },
      } satisfies AccessDenial,
    });
  }

  /** Equality filters, each on a field the caller may read. */
  function decodeListFilters(access: CallAccess, collection: CollectionSchema, filters: readonly FieldFilter[]): Record<string, StoredValue> {
    // Filtering on a field reveals its values: it must be readable.
    filters.forEach((f, i) => {
      if (collection.fields.has(f.field)) access.requireReadableField(collection, f.field, `filters[${i}].field`);
    });
    const violations: FieldViolation[] = [];
    const equals = decodeFilters(schemas(), collection, filters, "filters", violations);
    if (violations.length > 0) throw invalidArgument("invalid filters", violations);
    return equals;
  }

  function checkBatch(count: number, field: string): void {
    if (count === 0) throw invalidArgument(`${field} is empty`, [{ field, description: "send at least one", reason: "REQUIRED" }]);
    if (count > MAX_BATCH) {
      throw new DomainError("invalid_argument", `${field} holds ${count} items; at most ${MAX_BATCH} per call`, {
        reason: "BATCH_TOO_LARGE",
        violations: [{ field, description: `at most ${MAX_BATCH}`, reason: "BATCH_TOO_LARGE" }],
      });
    }
  }

  return {
    async getRecord(req, ctx: HandlerContext) {
      const access = deps.access.forCall(ctx);
      const ref = resolve(access, req.ref, "ref");
      const record = await findVisible(access, ref);
      if (!record || (record.deleted && !req.includeDeleted)) throw recordNotFound(ref);
      return create(GetRecordResponseSchema, { record: encodeVisible(access, ref.collection, [record])[0] });
    },

    async batchGetRecords(req, ctx) {
      const access = deps.access.forCall(ctx);
      checkBatch(req.refs.length, "refs");
      const refs = req.refs.map((r, i) => resolve(access, r, `refs[${i}]`));
      const found = await Promise.all(refs.map((r) => findVisible(access, r)));
      const response = create(BatchGetRecordsResponseSchema);
      found.forEach((record, i) => {
        if (record && (!record.deleted || req.includeDeleted)) response.records.push(encodeVisible(access, refs[i]!.collection, [record])[0]!);
        else response.missing.push(req.refs[i]!);
      });
      return response;
    },

    async listRecords(req, ctx) {
      const access = deps.access.forCall(ctx);
      const collection = collectionOf(schemas(), req.collection);
      const view = access.readable(collection);
      const limit = pageSize(req.pageSize);
      const equals = decodeListFilters(access, collection, req.filters);
      const filtered = Object.keys(equals);
      const query = { collection: collection.name, equals, deleted: req.includeDeleted };
      const { tenant } = access.principal;
      const page = await scanPage(
        (afterId, n) => deps.store.list({ tenant, collection: collection.name, equals, afterId, limit: n, includeDeleted: req.includeDeleted }),
        (r) => r.id,
        // A record hiding a filtered field must not match: that would confirm its value.
        (r) => view.reveals(r.fields, filtered),
        deps.pageTokens.decode(req.pageToken, query, positions.text) ?? "",
        limit,
      );
      return create(ListRecordsResponseSchema, {
        records: encodeVisible(access, collection, page.items),
        nextPageToken: page.next === null ? "" : deps.pageTokens.encode(query, page.next),
      });
    },

    async writeRecords(req, ctx) {
      const access = deps.access.forCall(ctx);
      checkBatch(req.mutations.length, "mutations");
      const mutations = decodeMutations(schemas(), req.mutations);
      const results = await write(access, mutations);
      return preEncoded(WriteRecordsResponseSchema, encodeWriteRecordsResponse(results));
    },

    async deleteRecord(req, ctx) {
      const access = deps.access.forCall(ctx);
      const mutation = create(MutationSchema, {
        ref: req.ref,
        delete: true,
        expectedVersion: req.expectedVersion,
        clientMutationId: req.clientMutationId,
        source: req.source,
        device: req.device,
      });
      try {
        const [input] = decodeMutations(schemas(), [mutation]);
        const [result] = await write(access, [input!]);
        return create(DeleteRecordResponseSchema, { result: encodeResult(result!) });
      } catch (e) {
        throw isDomainError(e) ? asSingleItem(e, "mutations[0]", "mutation_index") : e;
      }
    },

    async getRecordHistory(req, ctx) {
      const access = deps.access.forCall(ctx);
      const { tenant } = access.principal;
      const ref = resolve(access, req.ref, "ref");
      const record = await findVisible(access, ref);
      if (!record) throw recordNotFound(ref);
      const view = access.view(ref.collection);
      const rules = view.rulesFor(record.fields)!;
      const limit = pageSize(req.pageSize);
      const query = { collection: ref.collection.name, id: record.id };
      const afterSeq = deps.pageTokens.decode(req.pageToken, query, positions.seq()) ?? 0n;
      const changes = await deps.store.history({ tenant, collection: ref.collection.name, id: record.id, afterSeq, limit: limit + 1 });
      const page = changes.slice(0, limit).map((c) => ({ seq: c.seq, shown: shownChange(view, rules, c) }));
      access.readUnmasked(ref.collection.name, page.some((c) => c.shown.unmaskedSensitive.length > 0) ? [record.id] : [], page.flatMap((c) => c.shown.unmaskedSensitive));
      return create(GetRecordHistoryResponseSchema, {
        changes: page.map(({ seq, shown }) => encodeChange(ref.collection, shown.value, deps.store.cursorOf(seq), shown.masked)),
        nextPageToken: changes.length > limit ? deps.pageTokens.encode(query, page[page.length - 1]!.seq.toString()) : "",
      });
    },

    exportRecords(req, ctx) {
      const access = deps.access.forCall(ctx);
      const collection = collectionOf(schemas(), req.collection);
      const equals = decodeListFilters(access, collection, req.filters);
      return exportRecords(deps.store, access, collection, { equals, includeDeleted: req.includeDeleted });
    },
  };
}
