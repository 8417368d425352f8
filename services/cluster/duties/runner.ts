// The leader's singleton duties: change-log retention (and its floor),
// conflict-ticket expiry, and purges of idempotency results and old duty
// records. Runs on every node, acts only on the leader.
//
// On becoming leader the node first claims its term in the database (a fenced
// transaction of its own), so from then on no older term can write. Then,
// every `retention.interval`, it runs each duty in bounded batches, each batch
// one fenced transaction carrying the term and bounded by the remaining lease
// validity. Before every batch it checks it still leads the same term with
// enough lease left; otherwise it stops at once. A term the database refuses
// (a newer leader already claimed) is never tried again.
import type { Pool, PoolClient } from "pg";
import type { Logger } from "../../platform/logger.js";
import { isFenceRejection, runFenced, type DutyWork } from "../../store/fencing.js";
import { deleteExpiredChanges, expireOpenTickets, purgeAppliedMutations, purgeDutyRuns } from "../../store/retention.js";
import type { RetentionSettings } from "./settings.js";

export interface Leadership {
  term: bigint;
  since: Date;
  /** Milliseconds this node certainly still leads (its lease validity, less a safety margin). */
  budgetMs(): number;
}

export interface LeadershipSource {
  leadership(): Leadership | null;
  onLeadershipChange(listener: () => void): () => void;
}

export interface DutyRunnerOptions {
  pool: Pool;
  nodeId: string;
  lead: LeadershipSource;
  retention: () => RetentionSettings;
  log: Logger;
}

/** Below this much lease left, a duty transaction is not started. */
export const MIN_DUTY_BUDGET_MS = 250;

interface Duty {
  name: string;
  window: (r: RetentionSettings) => number | null;
  batch: (client: PoolClient, ageMs: number, size: number) => Promise<DutyWork<number>>;
}

const DUTIES: readonly Duty[] = [
  {
    name: "change_log_retention",
    window: (r) => r.changeLogMs,
    batch: async (c, age, size) => {
      const w = await deleteExpiredChanges(c, age, size);
      return { ...w, value: w.value.deleted };
    },
  },
  { name: "ticket_expiry", window: (r) => r.conflictTicketsMs, batch: expireOpenTickets },
  { name: "idempotency_purge", window: (r) => r.idempotencyMs, batch: purgeAppliedMutations },
  { name: "duty_run_purge", window: (r) => r.dutyRunsMs, batch: purgeDutyRuns },
];

class NotLeading extends Error {}

export class DutyRunner {
  readonly #o: DutyRunnerOptions;
  #claimed: bigint | null = null;
  #refused: bigint | null = null;
  #nextRound = 0;
  #running = false;
  #loop: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #unsubscribe: (() => void) | null = null;

  constructor(opts: DutyRunnerOptions) {
    this.#o = opts;
  }

  /** The term this node has claimed in the database, while it leads. */
  claimedTerm(): bigint | null {
    return this.#claimed;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#unsubscribe = this.#o.lead.onLeadershipChange(() => this.#wake?.());
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#unsubscribe?.();
    this.#wake?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { log } = this.#o;
    while (this.#running) {
      let pause = 1000;
      const lead = this.#o.lead.leadership();
      if (!lead || lead.term !== this.#claimed) this.#claimed = null;
      if (lead && lead.term !== this.#refused) {
        try {
          if (this.#claimed === null) {
            await this.#fenced(lead, "claim", async () => ({ affected: 1, value: 0 }));
            this.#claimed = lead.term;
            this.#nextRound = 0;
            log.info({ term: lead.term.toString() }, "leader term claimed in the database; running leader duties");
          }
          const settings = this.#o.retention();
          if (Date.now() >= this.#nextRound) {
            await this.#round(lead, settings);
            this.#nextRound = Date.now() + settings.intervalMs;
          }
          pause = Math.max(0, this.#nextRound - Date.now());
        } catch (e) {
          if (isFenceRejection(e)) {
            this.#refused = lead.term;
            this.#claimed = null;
            log.error({ err: e, term: lead.term.toString() }, "the database refused this leader term (a newer leader claimed one): no duties for this term");
          } else if (!(e instanceof NotLeading)) {
            log.warn({ err: e }, "leader duty failed; retrying");
          }
          pause = 500;
        }
      }
      await this.#sleep(pause);
    }
  }

  #sleep(ms: number): Promise<void> {
    // A stop() that came while a round was in flight already called a stale
    // wake; without this check the loop would sleep out a whole interval.
    if (!this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }

  async #round(lead: Leadership, settings: RetentionSettings): Promise<void> {
    for (const duty of DUTIES) {
      const age = duty.window(settings);
      if (age === null) continue;
      let total = 0;
      for (;;) {
        const n = await this.#fenced(lead, duty.name, (c) => duty.batch(c, age, settings.batchSize));
        total += n;
        if (n < settings.batchSize) break;
      }
      if (total > 0) this.#o.log.info({ duty: duty.name, rows: total, term: lead.term.toString() }, "leader duty done");
    }
  }

  /** One fenced transaction, only while this node still leads the same term with enough lease left. */
  async #fenced<T>(lead: Leadership, duty: string, work: (c: PoolClient) => Promise<DutyWork<T>>): Promise<T> {
    const now = this.#o.lead.leadership();
    const budget = now?.term === lead.term ? now.budgetMs() : 0;
    if (!this.#running || budget < MIN_DUTY_BUDGET_MS) throw new NotLeading();
    return runFenced(this.#o.pool, { term: lead.term, holder: this.#o.nodeId, budgetMs: budget }, duty, work);
  }
}
