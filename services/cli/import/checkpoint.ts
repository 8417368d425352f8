// Where an interrupted import resumes. An append-only file records the record
// version each written row left (so a later row of the same key is based on
// it, as in an uninterrupted run) and, after those, how far every row has
// settled. A re-run skips the settled rows instead of sending them again (the
// server would only replay them). Lines are written synchronously: a kill,
// even SIGKILL, loses nothing already written, and a settled mark never
// reaches the file before the entries it covers.
//
//   {"import":"<signature>"}     which import this is (file content, collection, key, source)
//   v <version> <json key>       a written row's key and the version it left
//   s <line>                     every row up to this line has settled
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";

export interface ResumePoint {
  settledThrough: number;
  versions: Map<string, bigint>;
}

/** The resume point saved for this signature, or null (none, another import's, or unreadable). */
export function readCheckpoint(path: string, signature: string): ResumePoint | null {
  if (!existsSync(path)) return null;
  const lines = readFileSync(path, "utf8").split("\n");
  let header: unknown;
  try {
    header = JSON.parse(lines[0] ?? "");
  } catch {
    return null;
  }
  if ((header as { import?: unknown } | null)?.import !== signature) return null;
  let settledThrough = 0;
  let versions = new Map<string, bigint>();
  const pending = new Map<string, bigint>();
  for (const line of lines.slice(1)) {
    if (line.startsWith("v ")) {
      const sp = line.indexOf(" ", 2);
      try {
        pending.set(JSON.parse(line.slice(sp + 1)) as string, BigInt(line.slice(2, sp)));
      } catch {
        // A line torn by a crash: the settled mark after it was never written either.
      }
    } else if (line.startsWith("s ") && /^s \d+$/.test(line)) {
      settledThrough = Number(line.slice(2));
      for (const [k, v] of pending) versions.set(k, v);
      pending.clear();
    }
  }
  if (settledThrough === 0) versions = new Map();
  return { settledThrough, versions };
}

export class Checkpoint {
  private mark: number;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    settledThrough: number,
  ) {
    this.mark = settledThrough;
  }

  /** Starts a new checkpoint file, or continues `resume`'s. */
  static open(path: string, signature: string, resume: ResumePoint | null): Checkpoint {
    if (resume) return new Checkpoint(path, openSync(path, "a"), resume.settledThrough);
    const fd = openSync(path, "w");
    writeSync(fd, JSON.stringify({ import: signature }) + "\n");
    return new Checkpoint(path, fd, 0);
  }

  written(entries: readonly { orderKey: string; version: bigint }[]): void {
    if (entries.length === 0) return;
    writeSync(this.fd, entries.map((e) => `v ${e.version} ${JSON.stringify(e.orderKey)}\n`).join(""));
  }

  settled(line: number): void {
    if (line <= this.mark) return;
    this.mark = line;
    writeSync(this.fd, `s ${line}\n`);
  }

  close(): void {
    closeSync(this.fd);
  }

  /** The import finished: nothing to resume. */
  remove(): void {
    this.close();
    rmSync(this.path, { force: true });
  }
}
