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
  WriteRecordsResponseSchema,
} from "../../gen/deltamesh/v1/records_pb.js";
import { MutationSchema, type RecordRef } from "../../gen/deltamesh/v1/types_pb.js";
import type { ConfigSource } from "../config/source.js";
import { DomainError, invalidArgument, type FieldViolation } from "../platform/errors.js";
import { decodePageToken, encodePageToken, pageSize } from "../platform/page-token.js";
import { principalOf } from "../platform/principal.js";
import type { SchemaSet } from "../schema/types.js";
import { identityKeyString, type RecordStore } from "../store/record-store.js";
import { collectionOf, decodeFilters, decodeMutations, decodeRef, encodeChange, encodeRecord, encodeResult, type ResolvedRef } from "./convert.js";
import type { StoredRecord } from "./model.js";
import type { WritePipeline } from "./write-pipeline.js";

export interface RecordServiceDeps {
  store: RecordStore;
  pipeline: WritePipeline;
  config: ConfigSource;
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

  function resolve(ref: RecordRef | undefined, path: string): ResolvedRef {
    const violations: FieldViolation[] = [];
    const resolved = decodeRef(schemas(), ref, path, violations);
    if (!resolved) throw invalidArgument(`${path} is invalid: ${violations.map((v) => v.description).join("; ")}`, violations);
    return resolved;
  }

  function recordNotFound(ref: ResolvedRef): DomainError {
    const name = "id" in ref.target ? ref.target.id : `${ref.target.identity.field}=${JSON.stringify(ref.target.identity.value)}`;
    return new DomainError("not_found", `${ref.collection.name} record ${name} does not exist`, {
      reason: "RECORD_NOT_FOUND",
      resource: { type: "record", name: `${ref.collection.name}/${"id" in ref.target ? ref.target.id : ""}` },
      metadata: { collection: ref.collection.name },
    });
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
      const { tenant } = principalOf(ctx);
      const ref = resolve(req.ref, "ref");
      const record = await find(tenant, ref);
      if (!record || (record.deleted && !req.includeDeleted)) throw recordNotFound(ref);
      return create(GetRecordResponseSchema, { record: encodeRecord(ref.collection, record) });
    },

    async batchGetRecords(req, ctx) {
      const { tenant } = principalOf(ctx);
      checkBatch(req.refs.length, "refs");
      const refs = req.refs.map((r, i) => resolve(r, `refs[${i}]`));
      const found = await Promise.all(refs.map((r) => find(tenant, r)));
      const response = create(BatchGetRecordsResponseSchema);
      found.forEach((record, i) => {
        if (record && (!record.deleted || req.includeDeleted)) response.records.push(encodeRecord(refs[i]!.collection, record));
        else response.missing.push(req.refs[i]!);
      });
      return response;
    },

    async listRecords(req, ctx) {
      const { tenant } = principalOf(ctx);
      const set = schemas();
      const collection = collectionOf(set, req.collection);
      const limit = pageSize(req.pageSize);
      const violations: FieldViolation[] = [];
      const equals = decodeFilters(set, collection, req.filters, "filters", violations);
      if (violations.length > 0) throw invalidArgument("invalid filters", violations);
      const query = { collection: collection.name, equals, deleted: req.includeDeleted };
      const afterId = decodePageToken(req.pageToken, query);
      const rows = await deps.store.list({ tenant, collection: collection.name, equals, afterId, limit: limit + 1, includeDeleted: req.includeDeleted });
      const page = rows.slice(0, limit);
      return create(ListRecordsResponseSchema, {
        records: page.map((r) => encodeRecord(collection, r)),
        nextPageToken: rows.length > limit ? encodePageToken(query, page[page.length - 1]!.id) : "",
      });
    },

    async writeRecords(req, ctx) {
      const principal = principalOf(ctx);
      checkBatch(req.mutations.length, "mutations");
      const mutations = decodeMutations(schemas(), req.mutations);
      const results = await deps.pipeline.write({ tenant: principal.tenant, actor: principal.subject, mutations });
      return create(WriteRecordsResponseSchema, { results: results.map(encodeResult) });
    },

    async deleteRecord(req, ctx) {
      const principal = principalOf(ctx);
      const mutation = create(MutationSchema, {
        ref: req.ref,
        delete: true,
        expectedVersion: req.expectedVersion,
        clientMutationId: req.clientMutationId,
        source: req.source,
        device: req.device,
      });
      const [input] = decodeMutations(schemas(), [mutation]);
      const [result] = await deps.pipeline.write({ tenant: principal.tenant, actor: principal.subject, mutations: [input!] });
      return create(DeleteRecordResponseSchema, { result: encodeResult(result!) });
    },

    async getRecordHistory(req, ctx) {
      const { tenant } = principalOf(ctx);
      const ref = resolve(req.ref, "ref");
      const record = await find(tenant, ref);
      if (!record) throw recordNotFound(ref);
      const limit = pageSize(req.pageSize);
      const query = { collection: ref.collection.name, id: record.id };
      const after = decodePageToken(req.pageToken, query);
      const changes = await deps.store.history({ tenant, collection: ref.collection.name, id: record.id, afterSeq: after ? BigInt(after) : 0n, limit: limit + 1 });
      const page = changes.slice(0, limit);
      return create(GetRecordHistoryResponseSchema, {
        changes: page.map((c) => encodeChange(ref.collection, c, deps.store.cursorOf(c.seq))),
        nextPageToken: changes.length > limit ? encodePageToken(query, page[page.length - 1]!.seq.toString()) : "",
      });
    },
  };
}
