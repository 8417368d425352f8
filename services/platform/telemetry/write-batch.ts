// Telemetry of the group-commit write pipeline: a span per batch transaction
// (its database queries nest under it) and the write metrics: mutations by
// outcome, batch sizes and durations, conflicts by policy. A batch serves
// many RPCs: its span continues the trace of the request that opened it and
// links to the others, so every caller's trace leads to the transaction.
import { context, SpanStatusCode, trace, type Context, type Link, type Span } from "@opentelemetry/api";
import { instruments } from "./instruments.js";
import { SPAN_WRITE_BATCH } from "./names.js";

/** The trace context a write was requested in (opaque to the pipeline). */
export type CallerContext = Context;

/** Call where a write is queued: remembers whose trace it belongs to. */
export function captureCaller(): CallerContext {
  return context.active();
}

/** What the pipeline's batch and outcomes look like, as far as telemetry cares. */
export interface ObservedRequest {
  req: { mutations: readonly unknown[] };
  caller?: CallerContext;
}
export type ObservedOutcome =
  | { ok: true; results: readonly { replayed: boolean; fields: readonly { status: string; policy?: string | undefined }[] }[] }
  | { ok: false; error: { reason: string; metadata: Readonly<Record<string, string>> } };

/** Mirrors the merge's rejection reason: a `reject` policy conflict fails the whole mutation. */
const REJECTED_REASON = "CONCURRENT_EDIT_REJECTED";

/**
 * How a failed batch transaction ends: `retry` when the pipeline tries its
 * requests again (a stale kept record, a lost race for a key, a refused
 * statement split off its neighbours), `error` when its callers get the error.
 */
export type BatchFailure = "retry" | "error";

/**
 * Runs one attempt of a batch transaction in its span and records its
 * duration by outcome: `ok`, or `failure(e)` of the error it threw.
 */
export async function observeWriteBatch<T extends readonly ObservedOutcome[]>(
  batch: readonly ObservedRequest[],
  attempt: number,
  transaction: () => Promise<T>,
  failure: (e: unknown) => BatchFailure = () => "error",
): Promise<T> {
  let mutations = 0;
  for (const p of batch) mutations += p.req.mutations.length;
  const m = instruments();
  m.batchSize.record(mutations);
  const span = m.tracing ? batchSpan(batch, attempt, mutations) : undefined;
  const started = performance.now();
  let outcomes: T;
  try {
    // Only a recorded span becomes the parent of the queries: the pg
    // instrumentation skips queries without one, and an unsampled batch
    // should not pay for query spans nobody keeps.
    outcomes = await (span?.isRecording() ? context.with(trace.setSpan(batch[0]?.caller ?? context.active(), span), transaction) : transaction());
  } catch (e) {
    m.batchDuration.record((performance.now() - started) / 1000, { outcome: failure(e) });
    if (span) {
      span.recordException(e instanceof Error ? e : String(e));
      span.setStatus({ code: SpanStatusCode.ERROR, message: e instanceof Error ? e.message : String(e) });
      span.end();
    }
    throw e;
  }
  m.batchDuration.record((performance.now() - started) / 1000, { outcome: "ok" });
  span?.end();
  countOutcomes(batch, outcomes);
  return outcomes;
}

function batchSpan(batch: readonly ObservedRequest[], attempt: number, mutations: number): Span {
  const span = instruments().tracer.startSpan(
    SPAN_WRITE_BATCH,
    { attributes: { "deltamesh.batch.requests": batch.length, "deltamesh.batch.mutations": mutations, "deltamesh.batch.attempt": attempt } },
    batch[0]?.caller ?? context.active(),
  );
  if (batch.length > 1) span.addLinks(callerLinks(batch));
  return span;
}

function callerLinks(batch: readonly ObservedRequest[]): Link[] {
  const links: Link[] = [];
  const seen = new Set<string>();
  for (let i = 1; i < batch.length; i++) {
    const sc = batch[i]!.caller && trace.getSpanContext(batch[i]!.caller!);
    if (!sc || seen.has(sc.spanId)) continue;
    seen.add(sc.spanId);
    links.push({ context: sc });
  }
  return links;
}

/** Counts locally first: one add per distinct attribute set, not per mutation. */
function countOutcomes(batch: readonly ObservedRequest[], outcomes: readonly ObservedOutcome[]): void {
  let applied = 0;
  let replayed = 0;
  let rejected = 0;
  const conflicts = new Map<string, { policy: string; outcome: string; n: number }>();
  const conflict = (policy: string, outcome: string, n: number) => {
    const key = `${policy}\u0000${outcome}`;
    const c = conflicts.get(key);
    if (c) c.n += n;
    else conflicts.set(key, { policy, outcome, n });
  };
  outcomes.forEach((o, i) => {
    if (!o.ok) {
      rejected += batch[i]?.req.mutations.length ?? 0;
      if (o.error.reason === REJECTED_REASON) {
        const fields = o.error.metadata.conflicting_fields;
        conflict("reject", "rejected", fields ? fields.split(",").length : 1);
      }
      return;
    }
    for (const r of o.results) {
      if (r.replayed) {
        replayed++;
        continue;
      }
      applied++;
      for (const f of r.fields) if (f.policy) conflict(f.policy, f.status, 1);
    }
  });
  const m = instruments();
  if (applied) m.writeMutations.add(applied, { outcome: "applied" });
  if (replayed) m.writeMutations.add(replayed, { outcome: "replayed" });
  if (rejected) m.writeMutations.add(rejected, { outcome: "rejected" });
  for (const c of conflicts.values()) m.conflicts.add(c.n, { policy: c.policy, outcome: c.outcome });
}
