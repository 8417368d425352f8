// The rejected-rows report: one JSON object per line, each naming the file
// line, the row's key and why the server (or the importer) refused it. Written
// as rows settle, so a killed import still leaves what it found; sorted by
// line once the import completes. A run starts its report afresh: a re-run
// sends every row again, so it finds every bad row again.
import { createWriteStream, type WriteStream } from "node:fs";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import type { RowRejection } from "./failures.js";

export interface ReportEntry extends RowRejection {
  line: number;
  key: string;
}

export class RejectReport {
  private count = 0;

  private constructor(
    readonly path: string,
    private readonly stream: WriteStream,
  ) {}

  static async open(path: string): Promise<RejectReport> {
    const stream = createWriteStream(path, { flags: "w" });
    await new Promise<void>((resolve, reject) => stream.once("open", () => resolve()).once("error", reject));
    return new RejectReport(path, stream);
  }

  get rejected(): number {
    return this.count;
  }

  add(entry: ReportEntry): void {
    this.count++;
    this.stream.write(JSON.stringify(entry) + "\n");
  }

  /** Flushes; sorts the entries by line when `sort`; removes the file when nothing was rejected. */
  async close(sort: boolean): Promise<void> {
    await new Promise<void>((resolve, reject) => this.stream.end((e?: Error | null) => (e ? reject(e) : resolve())));
    if (this.count === 0) {
      await rm(this.path, { force: true });
      return;
    }
    if (!sort) return;
    const lines = (await readFile(this.path, "utf8")).split("\n").filter(Boolean);
    const entries = lines.map((l) => ({ line: (JSON.parse(l) as ReportEntry).line, text: l }));
    entries.sort((a, b) => a.line - b.line);
    const tmp = `${this.path}.sorting`;
    await writeFile(tmp, entries.map((e) => e.text).join("\n") + "\n");
    await rename(tmp, this.path);
  }
}
