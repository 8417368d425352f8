// Import progress: counts of settled rows and one status line (rows/s,
// rejected rows, ETA). On a terminal the line is redrawn in place a few times
// a second; into a pipe or a log a plain line is written every interval.
import type { RowOutcome, RowStatus } from "./runner.js";

export type Counts = Record<RowStatus, number> & {
  review: number;
  /** Rows an earlier run settled, skipped by this one (resuming). */
  skipped: number;
};

export function emptyCounts(): Counts {
  return { created: 0, updated: 0, unchanged: 0, replayed: 0, rejected: 0, review: 0, skipped: 0 };
}

/** Rows this run settled (skipped rows not included). */
export function settledRows(c: Counts): number {
  return c.created + c.updated + c.unchanged + c.replayed + c.rejected;
}

export function addOutcomes(c: Counts, outcomes: readonly RowOutcome[]): void {
  for (const o of outcomes) {
    c[o.status]++;
    if (o.review) c.review++;
  }
}

const num = (n: number) => Math.round(n).toLocaleString("en-US");

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * One status line. `fraction` is how much of the file has been read (0..1);
 * the ETA assumes the rest goes at the average pace so far.
 */
export function formatProgress(c: Counts, elapsedMs: number, fraction: number): string {
  const rows = settledRows(c);
  const seconds = elapsedMs / 1000;
  const rate = seconds > 0 ? rows / seconds : 0;
  const eta = fraction > 0 && fraction < 1 ? formatDuration((seconds * (1 - fraction)) / fraction) : fraction >= 1 ? "0s" : "?";
  return `${num(rows)} rows (${(fraction * 100).toFixed(1)}%)  ${num(rate)} rows/s  ${num(c.rejected)} rejected  ETA ${eta}`;
}

export function formatSummary(c: Counts, elapsedMs: number): string {
  const rows = settledRows(c);
  const seconds = elapsedMs / 1000;
  const parts = [
    `${num(c.created)} created`,
    `${num(c.updated)} updated`,
    `${num(c.unchanged)} unchanged`,
    `${num(c.replayed)} already imported`,
    `${num(c.rejected)} rejected`,
  ];
  const review = c.review > 0 ? `; ${num(c.review)} rows left a field for review` : "";
  const skipped = c.skipped > 0 ? `; ${num(c.skipped)} rows before were done by an earlier run` : "";
  return `${num(rows)} rows in ${formatDuration(seconds)} (${num(seconds > 0 ? rows / seconds : 0)} rows/s): ${parts.join(", ")}${review}${skipped}`;
}

export interface ProgressOptions {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  /** Seconds between plain lines when `out` is not a terminal. */
  intervalSeconds: number;
  counts: Counts;
  fraction: () => number;
}

export class ProgressLine {
  private readonly start = performance.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ProgressOptions) {}

  get elapsedMs(): number {
    return performance.now() - this.start;
  }

  begin(): void {
    const tty = this.opts.out.isTTY === true;
    const every = tty ? 250 : Math.max(0.1, this.opts.intervalSeconds) * 1000;
    this.timer = setInterval(() => this.draw(tty), every);
    this.timer.unref();
  }

  end(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.opts.out.isTTY) this.opts.out.write("\r\x1b[K");
  }

  private draw(tty: boolean): void {
    const line = formatProgress(this.opts.counts, this.elapsedMs, this.opts.fraction());
    this.opts.out.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
  }
}
