// ChangeService handlers: translate requests into views and starts, call
// ChangeStreams, and turn its results into responses. Stream messages leave
// as pre-encoded bytes (encoded once per view by the hub).
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
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
import { invalidArgument, type FieldViolation } from "../platform/errors.js";
import { principalOf } from "../platform/principal.js";
import { preEncoded } from "../platform/transport/pre-encoded.js";
import { collectionOf, decodeFilters } from "../records/convert.js";
import type { SchemaSet } from "../schema/types.js";
import { DEFAULT_BUCKETS, MAX_BUCKETS } from "./digest.js";
import { recordPb } from "./encode.js";
import { HEARTBEAT_BOUNDS } from "./settings.js";
import type { ChangeStreams, StreamStart, SubscribeSpec } from "./streams.js";
import { FilterView, type CollectionFilter, type SubscriberView } from "./view.js";

export interface ChangeServiceDeps {
  streams: ChangeStreams;
  config: ConfigSource;
}

/**
 * Builds the view of a subscriber from its request's filters. The
 * permissions area replaces this to narrow it by the caller's policy.
 */
export type ViewFactory = (ctx: HandlerContext, filters: readonly CollectionFilter[]) => SubscriberView;

export const filterViewFactory: ViewFactory = (ctx, filters) => new FilterView(principalOf(ctx).tenant, filters);

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

export function createChangeService(deps: ChangeServiceDeps, viewOf: ViewFactory = filterViewFactory): ServiceImpl<typeof ChangeService> {
  const schemas = () => deps.config.current().schemas;

  function digestView(ctx: HandlerContext, req: { collection: string; filters: readonly FieldFilter[]; fields?: readonly string[]; bucketCount: number }) {
    const violations: FieldViolation[] = [];
    const f = collectionFilter(schemas(), { collection: req.collection, filters: req.filters, fields: req.fields ?? [] }, "", violations);
    const bucketCount = bucketCountOf(req.bucketCount, violations);
    if (violations.length > 0 || !f) throw invalidArgument(`invalid request: ${violations.map((v) => `${v.field}: ${v.description}`).join("; ")}`, violations);
    return { view: viewOf(ctx, [f]), bucketCount };
  }

  return {
    async *subscribe(req, ctx) {
      const { filters, start, heartbeatMs } = decodeSubscribe(schemas(), req);
      const spec: SubscribeSpec = { view: viewOf(ctx, filters), start, ...(heartbeatMs ? { heartbeatMs } : {}) };
      for await (const bytes of deps.streams.subscribe(spec, ctx.signal)) yield preEncoded(SubscribeResponseSchema, bytes);
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
      const { view, bucketCount } = digestView(ctx, req);
      if (req.bucket >= bucketCount) {
        throw invalidArgument(`bucket ${req.bucket} is out of range for ${bucketCount} buckets`, [
          { field: "bucket", description: `0 to ${bucketCount - 1}`, reason: "OUT_OF_RANGE" },
        ]);
      }
      const r = await deps.streams.digestBucket({ view, bucketCount, bucket: req.bucket, minCursor: req.minCursor });
      const s = schemas();
      return create(GetDigestBucketResponseSchema, {
        cursor: r.cursor,
        records: r.records.map((rec) => recordPb(s, rec)),
      });
    },
  };
}
