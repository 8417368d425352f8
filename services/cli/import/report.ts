// The rejected-rows report: one JSON object per line, each naming the file
// line, the row's key and why the server (or the importer) refused it.
// Entries are written synchronously as rows settle, so a killed import keeps
// what it found; a resumed import keeps the entries of the rows it skips and
// finds the others again. Sorted by line once the import completes.
import { closeSync, existsSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from "node:fs";
import type { RowRejection } from "./failures.js";

export interface ReportEntry extends RowRejection {
  line: number;
  key: string;
}

function readEntries(path: string): { line: number; text: string }[] {
  if (!existsSync(path)) return [];
  const out: { line: number; text: string }[] = [];
  for (const text of readFileSync(path, "utf8").split("\n")) {
    try {
      const line = (JSON.parse(text) as Partial<ReportEntry>).line;
      if (typeof line === "number") out.push({ line, text });
    } catch {
      // An entry torn by a crash belongs to a row that was not marked settled: it is found again.
    }
  }
  return out;
}

export class RejectReport {
  private constructor(
    readonly path: string,
    private readonly fd: number,
    private count: number,
  ) {}

  /** A new report; when resuming, the entries of rows up to `keepThrough` are kept. */
  static open(path: string, keepThrough: number | null): RejectReport {
    const kept = keepThrough === null ? [] : readEntries(path).filter((e) => e.line <= keepThrough);
    writeFileSync(path, kept.map((e) => e.text + "\n").join(""));
    return new RejectReport(path, openSync(path, "a"), kept.length);
  }

  /** Rejected rows so far, kept ones included. */
  get rejected(): number {
    return this.count;
  }

  add(entries: readonly ReportEntry[]): void {
    if (entries.length === 0) return;
    this.count += entries.length;
    writeSync(this.fd, entries.map((e) => JSON.stringify(e) + "\n").join(""));
  }

  /** Closes; sorts by line when `sort`; removes the file when nothing was rejected. */
  close(sort: boolean): void {
    closeSync(this.fd);
    if (this.count === 0) {
      rmSync(this.path, { force: true });
      return;
    }
    if (!sort) return;
    const entries = readEntries(this.path).sort((a, b) => a.line - b.line);
    const tmp = `${this.path}.sorting`;
    writeFileSync(tmp, entries.map((e) => e.text + "\n").join(""));
    renameSync(tmp, this.path);
  }
}
