// The write pipeline with group commit. Concurrent write requests arriving at
// a node queue here and are coalesced into one transaction per batch, so the
// fsync and the change-log sequencing lock are paid per batch, not per write.
// Each request is still atomic on its own: it applies whole or fails whole
// without disturbing the other requests of its batch.
//
// Batches overlap in two phases: one batch at a time *fills* (reads, locks
// and merges), and the next one is formed only when it moves on to *commit*
// (writes, the sequencing lock, COMMIT). Commits are serialized by the
// sequencing lock anyway (services/store/sequencing.ts), so the requests that
// arrive while a batch commits wait for the next batch instead of going out
// in a batch of their own: forming a batch whenever a slot was free sent
// every other batch out with one or two requests, each paying a whole fsync
// under the lock (64 single-write callers averaged 2.3 requests a batch).
// For the same reason a batch formed while others commit must be worth its
// own commit: it goes out at once only when it is at least half full
// (minBatchWhileCommitting); a smaller one waits for the batches ahead of it
// to finish (their commits take the sequencing lock one at a time, so it
// would mostly wait for them anyway) and takes what arrived meanwhile.
// Batches of 100-mutation requests from 8 callers grew from ~160 to ~290
// mutations on average, and each mutation cost PostgreSQL ~3 µs less (the
// per-batch work of the write function and COMMIT spread thinner); 64
// single-write callers kept their rate. The price: small requests queued
// behind a batch that waits for a record lock another node holds wait with
// it, where before they could overtake it in a batch of their own.
import { randomFillSync } from "node:crypto";
import { DomainError, isDomainError } from "../platform/errors.js";
import type { CollectionSchema, SchemaSet, StoredValue } from "../schema/types.js";
import { storedEquals } from "../schema/values.js";
import { HybridClock } from "../conflicts/hlc.js";
import {
  identityKeyString,
  recordKeyString,
  StaleReadError,
  type AppliedMutation,
  type ChangeDraft,
  type EarlierResult,
  type IdentityLookup,
  type KeyEdit,
  type RecordKey,
  type RecordStore,
  type WriteTx,
} from "../store/record-store.js";
import type { LogChange } from "../store/change-reader.js";
import type { TicketClose, TicketWrite } from "../store/ticket-sql.js";
import { isRetryableConflict, isStatementRefusal, toStoreError } from "../store/pg-errors.js";
import { applyMutation, type OpenTicket } from "./apply-mutation.js";
import { mutationFingerprint } from "./fingerprint.js";
import type { MutationInput, MutationResult, StoredRecord } from "./model.js";
import { captureCaller, observeWriteBatch, type CallerContext } from "../platform/telemetry/write-batch.js";

export interface WriteRequest {
  tenant: string;
  actor: string;
  mutations: MutationInput[];
  /** Authorization (services/access): may refuse a mutation with a DomainError, before and after the merge. */
  guard?: MutationGuard;
}

/** Called with each mutation's locked record (null: none) and, after the merge, the record it would leave. */
export interface MutationGuard {
  before(current: StoredRecord | null, m: MutationInput): void;
  after(current: StoredRecord | null, next: StoredRecord | null, m: MutationInput): void;
}

/**
 * This node's change streams, told of every batch the pipeline commits, so
 * they can deliver it without waiting for the commit notification and reading
 * the changes back (services/changes/streams.ts).
 */
export interface CommitListener {
  /** Whether anyone would receive committed changes now (else they are not built). */
  listening(): boolean;
  /**
   * Called after COMMIT with the batch's change rows, in seq order. A promise:
   * the streams do not have them all yet and the writers' acknowledgements
   * wait for it (at most maxAckWaitMs).
   */
  committed(changes: LogChange[]): Promise<void> | undefined;
}

export interface WritePipelineOptions {
  /** Told of every committed batch. */
  commits?: CommitListener;
  /** A batch closes once it holds this many mutations (default 512). */
  maxBatchMutations?: number;
  /** Batches in flight at once, committing or waiting to (default 3); only one fills at a time. */
  maxConcurrentBatches?: number;
  /**
   * While other batches are in flight, the next forms only once this many
   * mutations are queued (default half of maxBatchMutations); with none in
   * flight it forms at once, whatever its size.
   */
  minBatchWhileCommitting?: number;
  /** How far ahead of server time a device's edit time is trusted (default 60 s). */
  maxClockSkewMs?: number;
  /** Longest an acknowledgement waits for this node's streams to place its changes (default ACK_WAIT_MS). */
  maxAckWaitMs?: number;
}

interface Pending {
  req: WriteRequest;
  resolve: (results: MutationResult[]) => void;
  reject: (e: unknown) => void;
  /** Telemetry: whose trace the batch span continues. */
  caller: CallerContext;
}

type RequestOutcome = { ok: true; results: MutationResult[] } | { ok: false; error: DomainError };

/** An identity key moved between lookup and lock; the batch is retried. */
class StaleIdentityError extends Error {}

const MAX_ATTEMPTS = 4;

/** What the pipeline does with a batch whose transaction failed. */
type Recovery = "split" | "retry" | "fail";

/**
 * `wrote`: the batch had begun writing (a failure may then have come after
 * COMMIT was sent).
 */
function recoveryFrom(e: unknown, batch: { wrote: boolean; requests: number; attempt: number }): Recovery {
  // Nothing of the batch committed if it failed before writing or if
  // PostgreSQL refused one of its statements; a connection lost while the
  // COMMIT was on its way leaves that unknown, and retrying could apply
  // a write twice.
  const stale = e instanceof StaleReadError;
  const rolledBack = !batch.wrote || stale || isStatementRefusal(e);
  // Merged from records the store kept (see StaleReadError): retried whole, reading them under lock.
  if (rolledBack && batch.requests > 1 && !stale) return "split";
  const retryable = stale || e instanceof StaleIdentityError || isRetryableConflict(e);
  return retryable && batch.attempt < MAX_ATTEMPTS ? "retry" : "fail";
}
/**
 * Longest an acknowledgement waits for this node's streams to place its
 * changes (CommitListener.committed): normally the gap before them fills
 * within a round trip to PostgreSQL.
 */
const ACK_WAIT_MS = 50;

export class WritePipeline {
  private readonly queue: Pending[] = [];
  /** Mutations of the queued requests. */
  private queuedMutations = 0;
  private inFlight = 0;
  /** Batches reading and merging, not yet committing; the next batch forms when this is 0. */
  private filling = 0;
  private readonly clock = new HybridClock();
  private readonly maxBatch: number;
  private readonly maxConcurrent: number;
  private readonly minWhileCommitting: number;
  private readonly maxSkewMs: number;
  private readonly maxAckWaitMs: number;
  private readonly commits: CommitListener | undefined;
  private idle: (() => void)[] = [];

  constructor(
    private readonly store: RecordStore,
    private readonly schemas: () => SchemaSet,
    opts: WritePipelineOptions = {},
  ) {
    this.maxBatch = opts.maxBatchMutations ?? 512;
    this.maxConcurrent = opts.maxConcurrentBatches ?? 3;
    this.minWhileCommitting = opts.minBatchWhileCommitting ?? Math.ceil(this.maxBatch / 2);
    this.maxSkewMs = opts.maxClockSkewMs ?? 60_000;
    this.maxAckWaitMs = opts.maxAckWaitMs ?? ACK_WAIT_MS;
    this.commits = opts.commits;
  }

  /** Applies the request's mutations atomically; resolves with one result per mutation. */
  write(req: WriteRequest): Promise<MutationResult[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ req, resolve, reject, caller: captureCaller() });
      this.queuedMutations += req.mutations.length;
      this.pump();
    });
  }

  /** Resolves once every queued and running write has settled. */
  async drain(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return;
    await new Promise<void>((resolve) => this.idle.push(resolve));
  }

  /** Whether the next batch forms now (see the head of this file). */
  private mayFormBatch(): boolean {
    if (this.filling > 0 || this.queue.length === 0) return false;
    if (this.inFlight === 0) return true;
    return this.inFlight < this.maxConcurrent && this.queuedMutations >= this.minWhileCommitting;
  }

  private pump(): void {
    while (this.mayFormBatch()) {
      const batch: Pending[] = [];
      let size = 0;
      while (this.queue.length > 0 && (batch.length === 0 || size + this.queue[0]!.req.mutations.length <= this.maxBatch)) {
        const next = this.queue.shift()!;
        size += next.req.mutations.length;
        batch.push(next);
      }
      this.queuedMutations -= size;
      this.inFlight++;
      void this.run(batch, 1).finally(() => {
        this.inFlight--;
        if (this.queue.length > 0) this.pump();
        else if (this.inFlight === 0) for (const done of this.idle.splice(0)) done();
      });
    }
  }

  private async run(batch: Pending[], attempt: number): Promise<void> {
    this.filling++;
    let filled = false;
    const committing = () => {
      if (filled) return;
      filled = true;
      this.filling--;
      this.pump();
    };
    let outcomes: RequestOutcome[];
    let logChanges: LogChange[] = [];
    const recovery = (e: unknown) => recoveryFrom(e, { wrote: filled, requests: batch.length, attempt });
    try {
      outcomes = await observeWriteBatch(
        batch,
        attempt,
        () =>
          this.store.writeTransaction(async (tx) => {
            const applied = await this.applyBatch(tx, batch.map((p) => p.req), attempt, committing);
            logChanges = applied.logChanges;
            return applied.outcomes;
          }),
        (e) => (recovery(e) === "fail" ? "error" : "retry"),
      );
    } catch (e) {
      const next = recovery(e);
      committing();
      if (next === "split") {
        // One request's collision, or input the database refused, must not
        // fail its neighbours: retry each alone, so only its own caller sees it.
        await Promise.all(batch.map((p) => this.run([p], 1)));
        return;
      }
      if (next === "retry") return this.run(batch, attempt + 1);
      const error = toStoreError(e);
      for (const p of batch) p.reject(error);
      return;
    }
    committing();
    const settle = () => outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.results) : batch[i]!.reject(o.error)));
    if (logChanges.length === 0 || !this.commits) return settle();
    // Subscribers on this node hear of a change no later than its writer:
    // streams that keep up write their messages in this turn of the event
    // loop, the acknowledgements go in the next (a pause between the two,
    // such as a garbage collection, then delays the acknowledgement rather
    // than the delivery).
    const handed = this.commits.committed(logChanges);
    if (!handed) return void setImmediate(settle);
    let settled = false;
    const settleOnce = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      settle();
    };
    // Bounded: a tailer that cannot read must not hold writes up.
    const timer = setTimeout(settleOnce, this.maxAckWaitMs);
    void handed.then(() => setImmediate(settleOnce));
  }

  /** `committing` is called once the batch has merged and starts writing: the next batch may form. */
  private async applyBatch(
    tx: WriteTx,
    requests: WriteRequest[],
    attempt: number,
    committing: () => void,
  ): Promise<{ outcomes: RequestOutcome[]; logChanges: LogChange[] }> {
    const schemas = this.schemas();
    // 1. Everything the batch reads, and the locks on its records, in one
    // round trip (no lock when the store kept every record as this node last
    // wrote it: the write then checks they are still current).
    // Each identity value once: an upsert by a key usually also sets it, and
    // every value looked up costs PostgreSQL an index probe.
    const lookups: IdentityLookup[] = [];
    const lookedUp = new Set<string>();
    const lookUp = (l: IdentityLookup) => {
      const ks = identityKeyString(l);
      if (lookedUp.has(ks)) return;
      lookedUp.add(ks);
      lookups.push(l);
    };
    const idempotencyIds: { tenant: string; clientMutationId: string }[] = [];
    const lockIds: RecordKey[] = [];
    const lockHolders: IdentityLookup[] = [];
    // Open tickets matter only to edits of manual_review fields and to
    // resolutions. An upsert by identity that edits one may land on any record
    // of the batch that takes its key first (identityTarget): then all of them.
    const reviewing = requests.map(({ mutations }) =>
      mutations.map((m) => m.resolvesTicket !== undefined || touchesReviewedField(schemas.collections.get(m.collection), m)),
    );
    const reviewsByIdentity = requests.some(({ mutations }, r) => mutations.some((m, i) => "identity" in m.target && reviewing[r]![i]));
    const readsTickets = reviewing.some((flags) => flags.includes(true));
    for (const { tenant, mutations } of requests) {
      for (const m of mutations) {
        if ("identity" in m.target) {
          const target = { tenant, collection: m.collection, ...m.target.identity };
          lookUp(target);
          lockHolders.push(target);
        } else lockIds.push({ tenant, collection: m.collection, id: m.target.id });
        const schema = schemas.collections.get(m.collection);
        for (const field of schema?.identityFields ?? []) {
          const value = m.set[field];
          if (value !== undefined && value !== null) lookUp({ tenant, collection: m.collection, field, value });
        }
        if (m.clientMutationId) idempotencyIds.push({ tenant, clientMutationId: m.clientMutationId });
      }
    }
    // A retried batch reads under lock: it may have failed on records the store kept.
    const { holders, applied, locked } = await tx.read({
      lookups,
      clientMutationIds: idempotencyIds,
      lockIds,
      lockHolders,
      readsTickets,
      mustLock: attempt > 1,
    });

    // 2. Which record each mutation targets; a new identity gets one new id per batch.
    const newIds = new Map<string, string>();
    const targetIds = requests.map(({ tenant, mutations }) =>
      mutations.map((m) => {
        if ("id" in m.target) return m.target.id;
        const ks = identityKeyString({ tenant, collection: m.collection, ...m.target.identity });
        const id = holders.get(ks) ?? newIds.get(ks) ?? newRecordId();
        newIds.set(ks, id);
        return id;
      }),
    );
    const ticketKeys = new Map<string, RecordKey>();
    requests.forEach(({ tenant, mutations }, r) =>
      mutations.forEach((m, i) => {
        if (!reviewsByIdentity && !reviewing[r]![i]) return;
        const key = { tenant, collection: m.collection, id: targetIds[r]![i]! };
        ticketKeys.set(recordKeyString(key), key);
      }),
    );
    const tickets = ticketKeys.size > 0 ? await tx.loadOpenTickets([...ticketKeys.values()]) : new Map<string, Map<string, OpenTicket>>();

    // 3. Holders read a moment before the lock must be what it locked, and still hold their values.
    for (const h of lockHolders) {
      const holder = holders.get(identityKeyString(h));
      if (holder !== undefined && !locked.has(recordKeyString({ tenant: h.tenant, collection: h.collection, id: holder }))) throw new StaleIdentityError();
    }
    for (const l of lookups) {
      const holder = holders.get(identityKeyString(l));
      if (holder === undefined) continue;
      const rec = locked.get(recordKeyString({ tenant: l.tenant, collection: l.collection, id: holder }));
      if (rec && !storedEquals(rec.fields[l.field] ?? null, l.value)) throw new StaleIdentityError();
    }

    // 4. Apply request by request on overlays; a failed request leaves no trace.
    const state = new BatchState(locked, holders, tickets, schemas);
    const outcomes = requests.map((req, r) => this.applyRequest(req, targetIds[r]!, state, applied));

    // 5. One write of everything (with COMMIT), then cursors.
    committing();
    const { seqs, logChanges } = await tx.apply(state.effects(), { logChanges: this.commits?.listening() ?? false });
    for (const [result, changeIndex] of state.resultChanges) {
      const seq = seqs[changeIndex];
      if (seq !== undefined) result.cursor = this.store.cursorOf(seq);
    }
    const finished = outcomes.map((o): RequestOutcome =>
      o.ok ? { ok: true, results: o.results.map((r) => (typeof r === "function" ? r() : r)) } : o,
    );
    return { outcomes: finished, logChanges };
  }

  private applyRequest(
    req: WriteRequest,
    ids: string[],
    state: BatchState,
    applied: Map<string, EarlierResult>,
  ): { ok: true; results: (MutationResult | (() => MutationResult))[] } | { ok: false; error: DomainError } {
    const overlay = state.overlay();
    const results: (MutationResult | (() => MutationResult))[] = [];
    try {
      req.mutations.forEach((m, i) => {
        const cmidKey = m.clientMutationId ? `${req.tenant}\u0000${m.clientMutationId}` : "";
        const fingerprint = cmidKey ? mutationFingerprint(req.actor, m) : "";
        const earlier = cmidKey ? (applied.get(cmidKey) ?? overlay.appliedResult(cmidKey)) : undefined;
        try {
          if (earlier) {
            if (earlier.fingerprint !== null && earlier.fingerprint !== fingerprint) throw mutationIdReused(m.clientMutationId);
            // Copied lazily: an earlier result from this same batch gets its cursor only after commit.
            const first = earlier.result;
            results.push(() => ({ ...first, replayed: true }));
            return;
          }
          results.push(this.applyOne(req, m, ids[i]!, overlay, cmidKey && { key: cmidKey, fingerprint }));
        } catch (e) {
          throw isDomainError(e) ? e.withPrefix(`mutations[${i}]`, { mutation_index: String(i) }) : e;
        }
      });
    } catch (e) {
      if (isDomainError(e)) return { ok: false, error: e };
      throw e;
    }
    overlay.commit();
    return { ok: true, results };
  }

  private applyOne(req: WriteRequest, m: MutationInput, planned: string, overlay: Overlay, cmid: { key: string; fingerprint: string } | ""): MutationResult {
    const schema = overlay.schema(m.collection);
    const id = "identity" in m.target ? identityTarget(req.tenant, m, m.target.identity, planned, overlay) : planned;
    const key = { tenant: req.tenant, collection: m.collection, id };
    const current = overlay.record(key);
    req.guard?.before(current, m);
    let mutation = m;
    if (m.resolvesTicket) mutation = checkResolution(m, m.resolvesTicket, current, overlay.openTickets(key), overlay, req);
    if (!current && "identity" in m.target && !(m.target.identity.field in m.set)) {
      // Upsert by identity key: the new record holds the key it was addressed by.
      mutation = { ...m, set: { ...m.set, [m.target.identity.field]: m.target.identity.value } };
    }
    const { change, result } = applyMutation(current, mutation, {
      tenant: req.tenant,
      actor: req.actor,
      schema,
      id,
      hlc: this.clock.editTime(m.editTimeMs, this.maxSkewMs),
      now: new Date(),
      openTickets: overlay.openTickets(key),
      newTicketId: () => newRecordId(),
    });
    req.guard?.after(current, change?.record ?? current, mutation);
    let changeIndex: number | null = null;
    if (change) {
      // A change that only records decisions leaves the record as it was.
      if (change.record.version !== current?.version) {
        if (!change.record.deleted) overlay.moveKeys(schema, current, change.record);
        overlay.setRecord(change.record);
      }
      for (const edit of change.tickets) overlay.addTicket({ tenant: req.tenant, collection: m.collection, recordId: id, edit });
      changeIndex = overlay.addChange(
        {
          tenant: req.tenant,
          collection: m.collection,
          recordId: id,
          oldVersion: change.oldVersion,
          newVersion: change.record.version,
          set: change.set,
          cleared: change.cleared,
          clocks: change.clocks,
          decisions: change.decisions,
          created: change.created,
          deleted: change.record.deleted,
          actor: req.actor,
          source: m.source,
          device: m.device,
          clientMutationId: m.clientMutationId,
          fieldsBefore: current?.fields ?? null,
          fieldsAfter: change.record.fields,
        },
        result,
      );
    }
    if (cmid) overlay.addApplied(cmid.key, { tenant: req.tenant, clientMutationId: m.clientMutationId, result, fingerprint: cmid.fingerprint, changeIndex });
    return result;
  }
}

/** The batch's view of records, key owners and effects, as requests commit into it. */
class BatchState {
  readonly records = new Map<string, StoredRecord>();
  readonly changed = new Set<string>();
  /** Identity key -> owning record id (null: free); starts as the database has it. */
  readonly keyOwners = new Map<string, string | null>();
  readonly initialOwners = new Map<string, string | null>();
  readonly changes: ChangeDraft[] = [];
  readonly applied: AppliedMutation[] = [];
  readonly appliedByKey = new Map<string, AppliedMutation>();
  readonly resultChanges = new Map<MutationResult, number>();
  readonly ticketWrites: TicketWrite[] = [];
  readonly ticketCloses: TicketClose[] = [];

  constructor(
    locked: Map<string, StoredRecord>,
    holders: Map<string, string>,
    readonly tickets: Map<string, Map<string, OpenTicket>>,
    readonly schemas: SchemaSet,
  ) {
    for (const [k, rec] of locked) {
      this.records.set(k, rec);
      for (const field of schemas.collections.get(rec.collection)?.identityFields ?? []) {
        const value = rec.fields[field];
        if (value === undefined || value === null) continue;
        this.keyOwners.set(identityKeyString({ tenant: rec.tenant, collection: rec.collection, field, value }), rec.id);
      }
    }
    for (const [ks, id] of holders) this.keyOwners.set(ks, id);
    for (const [ks, id] of this.keyOwners) this.initialOwners.set(ks, id);
  }

  overlay(): Overlay {
    return new Overlay(this);
  }

  effects() {
    const keyRemovals: KeyEdit[] = [];
    const keyInserts: KeyEdit[] = [];
    for (const [ks, owner] of this.keyOwners) {
      const before = this.initialOwners.get(ks) ?? null;
      if (before === owner) continue;
      const [tenant, collection, field, json] = ks.split("\u0000") as [string, string, string, string];
      const base = { tenant, collection, field, value: JSON.parse(json) as StoredValue };
      if (before !== null) keyRemovals.push({ ...base, recordId: before });
      if (owner !== null) keyInserts.push({ ...base, recordId: owner });
    }
    const records = [...this.changed].map((k) => this.records.get(k)!);
    return { records, keyRemovals, keyInserts, changes: this.changes, applied: this.applied, tickets: this.ticketWrites, ticketCloses: this.ticketCloses };
  }
}

/** One request's tentative edits on top of the batch state; `commit` makes them part of it. */
class Overlay {
  private readonly records = new Map<string, StoredRecord>();
  private readonly keyOwners = new Map<string, string | null>();
  private readonly changes: [ChangeDraft, MutationResult][] = [];
  private readonly applied: [string, AppliedMutation][] = [];
  private readonly ticketWrites: TicketWrite[] = [];
  private readonly tickets = new Map<string, Map<string, OpenTicket>>();
  private readonly closes: TicketClose[] = [];

  constructor(private readonly batch: BatchState) {}

  closeTicket(c: TicketClose): void {
    this.closes.push(c);
  }

  /** Open tickets of a record as this request sees them (tickets it opened included). */
  openTickets(key: RecordKey): ReadonlyMap<string, OpenTicket> {
    const k = recordKeyString(key);
    return new Map([...(this.batch.tickets.get(k) ?? []), ...(this.tickets.get(k) ?? [])]);
  }

  addTicket(w: TicketWrite): void {
    this.ticketWrites.push(w);
    const k = recordKeyString({ tenant: w.tenant, collection: w.collection, id: w.recordId });
    const existing = this.openTickets({ tenant: w.tenant, collection: w.collection, id: w.recordId }).get(w.edit.field);
    const ticket: OpenTicket = existing
      ? { ...existing, candidates: [...existing.candidates, ...w.edit.candidates] }
      : { id: w.edit.ticketId, field: w.edit.field, fieldVersion: w.edit.fieldVersion, candidates: w.edit.candidates };
    if (!this.tickets.has(k)) this.tickets.set(k, new Map());
    this.tickets.get(k)!.set(w.edit.field, ticket);
  }

  schema(collection: string): CollectionSchema {
    const schema = this.batch.schemas.collections.get(collection);
    if (!schema) {
      throw new DomainError("not_found", `collection ${JSON.stringify(collection)} does not exist`, {
        reason: "COLLECTION_NOT_FOUND",
        resource: { type: "collection", name: collection },
      });
    }
    return schema;
  }

  record(key: RecordKey): StoredRecord | null {
    const k = recordKeyString(key);
    return this.records.get(k) ?? this.batch.records.get(k) ?? null;
  }

  setRecord(r: StoredRecord): void {
    this.records.set(recordKeyString(r), r);
  }

  /** Who holds an identity key now (null: given up in this batch; undefined: nobody ever did). */
  keyOwner(ks: string): string | null | undefined {
    return this.keyOwners.has(ks) ? this.keyOwners.get(ks) : this.batch.keyOwners.get(ks);
  }

  appliedResult(cmidKey: string): EarlierResult | undefined {
    return this.applied.find(([k]) => k === cmidKey)?.[1] ?? this.batch.appliedByKey.get(cmidKey);
  }

  /** Moves identity keys from `before` to `after`; a key held by another record is ALREADY_EXISTS. */
  moveKeys(schema: CollectionSchema, before: StoredRecord | null, after: StoredRecord): void {
    for (const field of schema.identityFields) {
      const oldValue = before?.fields[field] ?? null;
      const newValue = after.fields[field] ?? null;
      if (storedEquals(oldValue, newValue)) continue;
      const base = { tenant: after.tenant, collection: after.collection, field };
      if (newValue !== null) {
        const ks = identityKeyString({ ...base, value: newValue });
        const owner = this.keyOwners.has(ks) ? this.keyOwners.get(ks) : this.batch.keyOwners.get(ks);
        if (owner && owner !== after.id) {
          throw new DomainError(
            "already_exists",
            `${after.collection} record ${owner} already holds this ${field}; upsert by the ${field} key to update it`,
            {
              reason: "IDENTITY_KEY_TAKEN",
              metadata: { collection: after.collection, field, holder_id: owner },
              resource: { type: "record", name: `${after.collection}/${owner}` },
              violations: [{ field: `set.${field}`, description: `held by record ${owner}`, reason: "IDENTITY_KEY_TAKEN" }],
            },
          );
        }
        this.keyOwners.set(ks, after.id);
      }
      if (oldValue !== null) this.keyOwners.set(identityKeyString({ ...base, value: oldValue }), null);
    }
  }

  addChange(change: ChangeDraft, result: MutationResult): number {
    this.changes.push([change, result]);
    return this.batch.changes.length + this.changes.length - 1;
  }

  addApplied(cmidKey: string, a: AppliedMutation): void {
    this.applied.push([cmidKey, a]);
  }

  commit(): void {
    for (const [k, r] of this.records) {
      this.batch.records.set(k, r);
      this.batch.changed.add(k);
    }
    for (const [ks, owner] of this.keyOwners) this.batch.keyOwners.set(ks, owner);
    for (const [change, result] of this.changes) {
      this.batch.resultChanges.set(result, this.batch.changes.length);
      this.batch.changes.push(change);
    }
    for (const [k, a] of this.applied) {
      this.batch.applied.push(a);
      this.batch.appliedByKey.set(k, a);
    }
    this.batch.ticketWrites.push(...this.ticketWrites);
    this.batch.ticketCloses.push(...this.closes);
    for (const [k, byField] of this.tickets) {
      if (!this.batch.tickets.has(k)) this.batch.tickets.set(k, new Map());
      for (const [field, t] of byField) this.batch.tickets.get(k)!.set(field, t);
    }
  }
}

/**
 * A resolution applies only to an open ticket whose field has not moved on;
 * it is then an edit based on the current version (so no policy intervenes)
 * and closes the ticket in the same transaction.
 */
function checkResolution(
  m: MutationInput,
  r: NonNullable<MutationInput["resolvesTicket"]>,
  current: StoredRecord | null,
  open: ReadonlyMap<string, OpenTicket>,
  overlay: Overlay,
  req: WriteRequest,
): MutationInput {
  const ticket = open.get(r.field);
  if (!current || ticket?.id !== r.id) {
    throw new DomainError("failed_precondition", `conflict ticket ${r.id} is no longer open`, {
      reason: "TICKET_CLOSED",
      metadata: { ticket_id: r.id },
    });
  }
  const fieldVersion = current.clocks[r.field]?.version ?? 0;
  if (fieldVersion !== ticket.fieldVersion) {
    throw new DomainError(
      "failed_precondition",
      `${current.collection}/${current.id} field ${r.field} changed at version ${fieldVersion} after ticket ${r.id} opened (at version ${ticket.fieldVersion}); review the current value and dismiss the ticket or open a new decision`,
      {
        reason: "FIELD_MOVED_ON",
        metadata: { ticket_id: r.id, field: r.field, ticket_field_version: String(ticket.fieldVersion), current_field_version: String(fieldVersion) },
      },
    );
  }
  overlay.closeTicket({
    tenant: req.tenant,
    id: r.id,
    status: "resolved",
    resolution: { by: req.actor, at: new Date().toISOString(), candidate: r.candidate, version: current.version + 1 },
  });
  return { ...m, baseVersion: current.version, expectedVersion: undefined };
}

/**
 * The record an upsert by identity addresses, as the batch stands when it
 * applies: mutations before it (in its request or in earlier requests of
 * the batch) may have moved the key since the database was read, and the
 * result must not depend on how writes happened to be batched. `planned` is
 * the database's holder, or a new id when there was none.
 */
function identityTarget(
  tenant: string,
  m: MutationInput,
  identity: { field: string; value: StoredValue },
  planned: string,
  overlay: Overlay,
): string {
  const owner = overlay.keyOwner(identityKeyString({ tenant, collection: m.collection, ...identity }));
  if (owner) return owner;
  // Given up earlier in the batch by the record that held it: a new record takes it.
  return owner === null && overlay.record({ tenant, collection: m.collection, id: planned }) ? newRecordId() : planned;
}

function touchesReviewedField(schema: CollectionSchema | undefined, m: MutationInput): boolean {
  if (!schema) return false;
  const reviewed = (field: string) => (schema.fields.get(field)?.policy ?? schema.defaultPolicy) === "manual_review";
  return Object.keys(m.set).some(reviewed) || m.clear.some(reviewed);
}

/** Random bytes for ids, drawn a page at a time: one call per id was ~2 % of an import's CPU. */
const RANDOM_PAGE = 4096;
const randomPage = Buffer.allocUnsafe(RANDOM_PAGE);
let randomAt = RANDOM_PAGE;
const idBytes = Buffer.alloc(16);

/** A UUIDv7: time-ordered, so new records append to the primary-key index. */
export function newRecordId(nowMs = Date.now()): string {
  if (randomAt + 10 > RANDOM_PAGE) {
    randomFillSync(randomPage);
    randomAt = 0;
  }
  const b = idBytes;
  b.writeUIntBE(nowMs, 0, 6);
  randomPage.copy(b, 6, randomAt, randomAt + 10);
  randomAt += 10;
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function mutationIdReused(clientMutationId: string): DomainError {
  return new DomainError(
    "already_exists",
    `client_mutation_id ${JSON.stringify(clientMutationId)} was already used for a different mutation; a retry must repeat the same mutation, and a new mutation needs a new id`,
    {
      reason: "CLIENT_MUTATION_ID_REUSED",
      metadata: { client_mutation_id: clientMutationId },
      violations: [{ field: "client_mutation_id", description: "already used for a different mutation (or by another caller)", reason: "CLIENT_MUTATION_ID_REUSED" }],
    },
  );
}
