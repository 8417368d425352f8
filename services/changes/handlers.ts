// ChangeService handlers: translate requests into views and starts, call
// ChangeStreams, and turn its results into responses. Stream messages leave
// as pre-encoded bytes (encoded once per view by the hub).
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { AccessControl, CallAccess } from "../access/control.js";
import { deviceClassOf } from "../access/engine.js";
import {
  ChangeService,
  GetDigestBucketResponseSchema,
  GetDigestResponseSchema,
  SubscribeResponseSchema,
  type CollectionQuery,
  type SubscribeRequest,
} from "../../gen/deltamesh/v1/changes_pb.js";
import type { FieldFilter } from "../../gen/deltamesh/v1/records_pb.js";
import type { ConfigSource } from "../config/source.js";
import { watchCredential } from "../platform/auth/expiry.js";
import { invalidArgument, type FieldViolation } from "../platform/errors.js";
import { preEncoded } from "../platform/transport/pre-encoded.js";
import { collectionOf, decodeFilters } from "../records/convert.js";
import type { SchemaSet } from "../schema/types.js";
import { DEFAULT_BUCKETS, MAX_BUCKETS } from "./digest.js";
import { countEvents, recordPb } from "./encode.js";
import { startStreamDelivery } from "../platform/telemetry/index.js";
import { HEARTBEAT_BOUNDS } from "./settings.js";
import type { ChangeStreams, StreamStart, SubscribeSpec } from "./streams.js";
import { AccessView, readableFields, unmaskedSensitiveFields } from "./access-view.js";
import type { CollectionFilter } from "./view.js";

export interface ChangeServiceDeps {
  streams: ChangeStreams;
  config: ConfigSource;
  access: AccessControl;
}

/** A query of one collection as requests carry it, with where it sits in the request (for error details). */
interface Query {
  collection: string;
  filters: readonly FieldFilter[];
  fields: readonly string[];
  path: string;
}

function collectionFilter(schemas: SchemaSet, q: { collection: string; filters: readonly FieldFilter[]; fields: readonly string[] }, path: string, violations: FieldViolation[]): CollectionFilter | null {
  const collection = collectionOf(schemas, q.collection, `${path}.collection`);
  const equals = decodeFilters(schemas, collection, q.filters, `${path}.filters`, violations);
  q.fields.forEach((f, i) => {
    if (!collection.fields.has(f)) {
      violations.push({ field: `${path}.fields[${i}]`, description: `${collection.name} has no field ${JSON.stringify(f)}`, reason: "UNKNOWN_FIELD" });
    }
  });
  return { collection: collection.name, equals, fields: q.fields.length > 0 ? [...q.fields] : null };
}

/** Validates a SubscribeRequest (every problem at once) into filters, start and heartbeat. */
export function decodeSubscribe(schemas: SchemaSet, req: SubscribeRequest): { filters: CollectionFilter[]; start: StreamStart; heartbeatMs?: number } {
  const violations: FieldViolation[] = [];
  if (req.collections.length === 0) violations.push({ field: "collections", description: "name at least one collection", reason: "REQUIRED" });
  const seen = new Set<string>();
  const filters: CollectionFilter[] = [];
  req.collections.forEach((q: CollectionQuery, i) => {
    if (seen.has(q.collection)) {
      violations.push({ field: `collections[${i}].collection`, description: `${q.collection} is listed twice`, reason: "DUPLICATE" });
      return;
    }
    seen.add(q.collection);
    const f = collectionFilter(schemas, q, `collections[${i}]`, violations);
    if (f) filters.push(f);
  });
  let start: StreamStart | null = null;
  switch (req.start.case) {
    case "afterCursor":
      start = { kind: "cursor", cursor: req.start.value };
      break;
    case "fromNow":
      start = { kind: "now" };
      break;
    case "snapshot":
      start = { kind: "snapshot" };
      break;
    default:
      violations.push({ field: "start", description: "set after_cursor, from_now or snapshot", reason: "REQUIRED" });
  }
  const hb = req.heartbeatIntervalMs;
  if (hb !== 0 && (hb < HEARTBEAT_BOUNDS.min || hb > HEARTBEAT_BOUNDS.max)) {
    violations.push({ field: "heartbeat_interval_ms", description: `0 (server default) or ${HEARTBEAT_BOUNDS.min} to ${HEARTBEAT_BOUNDS.max}`, reason: "OUT_OF_RANGE" });
  }
  if (violations.length > 0 || !start) {
    throw invalidArgument(`invalid subscription: ${violations.map((v) => `${v.field}: ${v.description}`).join("; ")}`, violations);
  }
  return { filters, start, ...(hb !== 0 ? { heartbeatMs: hb } : {}) };
}

function bucketCountOf(n: number, violations: FieldViolation[]): number {
  if (n === 0) return DEFAULT_BUCKETS;
  if (n > MAX_BUCKETS) violations.push({ field: "bucket_count", description: `at most ${MAX_BUCKETS}`, reason: "OUT_OF_RANGE" });
  return n;
}

export function createChangeService(deps: ChangeServiceDeps): ServiceImpl<typeof ChangeService> {
  const schemas = () => deps.config.current().schemas;

  /**
   * The caller's view of its queries: refuses a collection it may not read
   * at all, and filters or selected fields it may not read (a filter would
   * reveal the field's values); rows and fields are then narrowed by policy.
   */
  function viewOf(access: CallAccess, queries: readonly Query[], filters: readonly CollectionFilter[]): AccessView {
    const set = schemas();
    for (const q of queries) {
      const schema = collectionOf(set, q.collection);
      access.readable(schema);
      const readable = readableFields(access.policy, access.principal, schema);
      q.filters.forEach((f, i) => {
        if (!readable.has(f.field)) access.requireReadableField(schema, f.field, `${q.path}filters[${i}].field`);
      });
      q.fields.forEach((f, i) => {
        if (!readable.has(f)) access.requireReadableField(schema, f, `${q.path}fields[${i}]`);
      });
    }
    return AccessView.build(access.policy, set, { principal: access.principal, filters, hasher: access.hasher });
  }

  function digestView(ctx: HandlerContext, req: { collection: string; filters: readonly FieldFilter[]; fields?: readonly string[]; bucketCount: number }) {
    const violations: FieldViolation[] = [];
    const query: Query = { collection: req.collection, filters: req.filters, fields: req.fields ?? [], path: "" };
    const f = collectionFilter(schemas(), query, "", violations);
    const bucketCount = bucketCountOf(req.bucketCount, violations);
    if (violations.length > 0 || !f) throw invalidArgument(`invalid request: ${violations.map((v) => `${v.field}: ${v.description}`).join("; ")}`, violations);
    const access = deps.access.forCall(ctx);
    return { access, view: viewOf(access, [query], [f]), bucketCount };
  }

  return {
    async *subscribe(req, ctx) {
      const { filters, start, heartbeatMs } = decodeSubscribe(schemas(), req);
      const access = deps.access.forCall(ctx);
      const view = viewOf(
        access,
        req.collections.map((q, i) => ({ ...q, path: `collections[${i}].` })),
        filters,
      );
      // A stream may show sensitive fields in clear: audited once, when it opens.
      for (const f of filters) {
        const fields = unmaskedSensitiveFields(access.policy, access.principal, schemas().collections.get(f.collection)!, deviceClassOf(access.principal)).filter(
          (name) => f.fields === null || f.fields.includes(name),
        );
        if (fields.length > 0) access.record("read_unmasked", { collection: f.collection, fields: [...fields], details: { stream: "subscribe" } });
      }
      const spec: SubscribeSpec = {
        view,
        caller: `${access.principal.tenant}\u0000${access.principal.subject}`,
        current: (v) => (v instanceof AccessView ? v.rebuilt(deps.access.policy(), schemas()) : v),
        start,
        ...(heartbeatMs ? { heartbeatMs } : {}),
      };
      const credential = watchCredential(access.principal, ctx.signal);
      try {
        for await (const bytes of deps.streams.subscribe(spec, credential.signal)) {
          // The yield resumes once the transport has taken the message.
          const delivery = startStreamDelivery({ events: countEvents(bytes) });
          try {
            yield preEncoded(SubscribeResponseSchema, bytes);
          } catch (e) {
            delivery.end(e);
            throw e;
          } finally {
            delivery.end();
          }
        }
        const expired = credential.expired();
        if (expired) throw expired;
      } finally {
        credential.dispose();
      }
    },

    async getDigest(req, ctx) {
      const { view, bucketCount } = digestView(ctx, req);
      const d = await deps.streams.digest({ view, bucketCount, minCursor: req.minCursor });
      return create(GetDigestResponseSchema, {
        cursor: d.cursor,
        bucketCount,
        recordCount: BigInt(d.recordCount),
        buckets: d.buckets.map((b) => ({ index: b.index, recordCount: BigInt(b.count), hash: b.hash })),
      });
    },

    async getDigestBucket(req, ctx) {
      const { access, view, bucketCount } = digestView(ctx, req);
      if (req.bucket >= bucketCount) {
        throw invalidArgument(`bucket ${req.bucket} is out of range for ${bucketCount} buckets`, [
          { field: "bucket", description: `0 to ${bucketCount - 1}`, reason: "OUT_OF_RANGE" },
        ]);
      }
      const r = await deps.streams.digestBucket({ view, bucketCount, bucket: req.bucket, minCursor: req.minCursor });
      const s = schemas();
      // Records returned whole, like GetRecord's: sensitive fields shown in clear are audited.
      const unmasked = r.records.filter((rec) => (rec.unmaskedSensitive?.length ?? 0) > 0);
      access.readUnmasked(
        req.collection,
        unmasked.map((rec) => rec.id),
        unmasked.flatMap((rec) => rec.unmaskedSensitive!),
      );
      return create(GetDigestBucketResponseSchema, {
        cursor: r.cursor,
        records: r.records.map((rec) => recordPb(s, rec)),
      });
    },
  };
}
