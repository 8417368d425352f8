// `deltamesh import <file> --collection C --key FIELD`: loads a CSV or JSON
// Lines file through the WriteRecords API, upserting each row by an identity
// key. See IMPORT_HELP for what it promises.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { InvalidArgumentError, type Command } from "commander";
import { DEFAULT_CONFIG_PATH, loadFileConfigSource } from "../../config/file-source.js";
import { identityHeaders, type IdentityFlags } from "../identity.js";
import type { CollectionSchema, FieldSchema, SchemaSet } from "../../schema/types.js";
import { Checkpoint, readCheckpoint } from "./checkpoint.js";
import { addOutcomes, emptyCounts, formatSummary, ProgressLine, type Counts, type ProgressOptions } from "./progress.js";
import { RejectReport } from "./report.js";
import { ImportRunner, ImportStopped } from "./runner.js";
import { prepareRow, type ImportTarget } from "./row-values.js";
import { csvHeader, formatOf, openRows, type ImportFormat } from "./rows.js";
import { createImportWriteClient } from "./write-client.js";

export const IMPORT_HELP = `
Rows are upserted by --key, an identity field: a row whose key is new creates
a record, a row whose key exists updates that record. The server normalizes
and validates every value; the importer only carries them.
  CSV          the header row names the fields; an empty cell leaves the field
               as it is; string lists are comma-separated ("vip, north").
  JSON Lines   one object per line; null clears the field, an absent field is
               left as it is.
Duplicate keys: rows with the same key are written in file order, each on top
of the one before, so a later row updates what an earlier one wrote (a field
someone else changed meanwhile still follows its conflict policy).
Resuming: an interrupted import (crash, kill, server gone) leaves
<file>.import-state; running the same command again skips the rows it had
settled and continues. Whatever happens, nothing is written twice: each row's
mutation id is made from the file's content and its line, so rows sent again
(after the checkpoint, or with --restart) count as "already imported".
Rejected rows are listed in <file>.rejected.jsonl (or --report PATH), one JSON
object per row with its line number, key and reasons; the other rows are
still imported. Exit status: 0 every row imported, 2 some rows rejected,
1 the import stopped (re-run it to finish).`;

export interface ImportOptions extends IdentityFlags {
  file: string;
  collection: string;
  key: string;
  server: string;
  config?: string;
  format?: string;
  report?: string;
  batchSize: number;
  concurrency: number;
  source: string;
  importId?: string;
  /** Ignore a saved checkpoint: send every row again. */
  restart?: boolean;
  progressInterval: number;
}

export interface ImportSummary {
  counts: Counts;
  reportPath: string | null;
  /** Line up to which an earlier run's checkpoint let this run skip rows (0: none). */
  resumedAfter: number;
  elapsedMs: number;
  /** Set when the import stopped before the end of the file. */
  stopped: string | null;
}

/** Content hash of the file: the same file always gets the same mutation ids. */
async function fileId(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) hash.update(chunk);
  return hash.digest("hex").slice(0, 20);
}

function resolveTarget(schemas: SchemaSet, o: ImportOptions, importId: string): ImportTarget {
  const collection: CollectionSchema | undefined = schemas.collections.get(o.collection);
  if (!collection) {
    throw new Error(`no collection ${JSON.stringify(o.collection)} in the schema (${[...schemas.collections.keys()].join(", ")}); pass --config if the node runs another one`);
  }
  const key: FieldSchema | undefined = collection.fields.get(o.key);
  if (!key?.identity) {
    throw new Error(`--key must be an identity field of ${collection.name}: one of ${collection.identityFields.join(", ")}`);
  }
  return {
    collection,
    key,
    required: [...collection.fields.values()].filter((f) => f.required && f.name !== key.name).map((f) => f.name),
    defaultPhoneRegion: schemas.defaultPhoneRegion,
    source: o.source,
    device: "deltamesh-import",
    mutationId: (line) => `import-${importId}-${line}`,
  };
}

/** A CSV whose columns the schema does not know would have every row refused: say so before sending any. */
async function checkCsvColumns(file: string, target: ImportTarget): Promise<void> {
  const header = await csvHeader(file);
  if (!header.includes(target.key.name)) throw new Error(`${file} has no ${target.key.name} column (the --key)`);
  const unknown = header.filter((h) => !target.collection.fields.has(h));
  if (unknown.length > 0) {
    throw new Error(`${file} has columns ${target.collection.name} does not have: ${unknown.join(", ")}; remove or rename them`);
  }
}

export async function runImport(o: ImportOptions, progressOut: ProgressOptions["out"] = process.stderr): Promise<ImportSummary> {
  const format: ImportFormat = formatOf(o.file, o.format);
  const { size } = await stat(o.file);
  const source = await loadFileConfigSource(o.config ?? DEFAULT_CONFIG_PATH);
  const schemas = source.current().schemas;
  await source.close();
  const importId = o.importId ?? (await fileId(o.file));
  const target = resolveTarget(schemas, o, importId);
  if (format === "csv") await checkCsvColumns(o.file, target);
  const signature = JSON.stringify([importId, target.collection.name, target.key.name, target.source]);
  const statePath = `${o.file}.import-state`;
  const resume = o.restart ? null : readCheckpoint(statePath, signature);
  const resumedAfter = resume?.settledThrough ?? 0;
  if (resumedAfter > 0) progressOut.write(`resuming after line ${resumedAfter}: the rows up to it were settled by an earlier run\n`);

  const client = createImportWriteClient(o.server, identityHeaders(o));
  const report = RejectReport.open(o.report ?? `${o.file}.rejected.jsonl`, resume ? resumedAfter : null);
  const checkpoint = Checkpoint.open(statePath, signature, resume);
  const counts = emptyCounts();
  const rows = openRows(o.file, format);
  const progress = new ProgressLine({
    out: progressOut,
    intervalSeconds: o.progressInterval,
    counts,
    fraction: () => (size > 0 ? rows.bytesRead() / size : 1),
  });
  const runner = new ImportRunner({
    write: (mutations) => client.write(mutations),
    keyField: target.key.name,
    batchSize: o.batchSize,
    concurrency: o.concurrency,
    onOutcomes(outcomes) {
      addOutcomes(counts, outcomes);
      report.add(outcomes.flatMap((out) => (out.rejection ? [{ line: out.line, key: out.keyText, ...out.rejection }] : [])));
      checkpoint.written(outcomes.flatMap((out) => (out.written ? [out.written] : [])));
      // After the entries above: a settled mark covers only what is already on disk.
      checkpoint.settled(runner.settledThrough());
    },
  });
  if (resume) runner.seedVersions(resume.versions);

  let stopped: string | null = null;
  let finished = false;
  progress.begin();
  try {
    for await (const row of rows.rows) {
      if (row.line <= resumedAfter) {
        counts.skipped++;
        continue;
      }
      await runner.add(
        "error" in row ? { line: row.line, keyText: "", rejected: { reason: "UNREADABLE_ROW", message: row.error } } : prepareRow(target, row.line, row.values),
      );
    }
    await runner.finish();
    finished = true;
  } catch (e) {
    if (!(e instanceof ImportStopped)) throw e;
    stopped = e.message;
    await runner.drain();
  } finally {
    // Kept when the import did not finish: the next run resumes from it.
    if (finished) checkpoint.remove();
    else checkpoint.close();
    progress.end();
    client.close();
    report.close(stopped === null);
  }
  return { counts, reportPath: report.rejected > 0 ? report.path : null, resumedAfter, elapsedMs: progress.elapsedMs, stopped };
}

function positive(max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1 || n > max) throw new InvalidArgumentError(`expected a whole number 1-${max}`);
    return n;
  };
}

/** Adds the import options and action to `cmd` (created by the CLI with its client options). */
export function importCommand(cmd: Command): Command {
  return cmd
    .description("upsert the rows of a CSV or JSON Lines file by an identity key, in batches; resumable by re-running")
    .requiredOption("--collection <name>", "collection to import into")
    .requiredOption("--key <field>", "identity field rows are upserted by (e.g. erp_id)")
    .option("--format <csv|jsonl>", "file format (default: from the file name)")
    .option("--report <path>", "rejected-rows report (default: <file>.rejected.jsonl)")
    .option("--batch-size <n>", "mutations per WriteRecords call", positive(1000), 500)
    .option("--concurrency <n>", "calls in flight", positive(64), 4)
    .option("--source <name>", "source system the rows come from (conflict policies rank it)", "import")
    .option("--import-id <id>", "names this import in mutation ids (default: a hash of the file's content)")
    .option("--restart", "ignore the checkpoint of an interrupted run and send every row again (still written once)")
    .option("--progress-interval <seconds>", "seconds between progress lines when stderr is not a terminal", Number, 5)
    .addHelpText("after", IMPORT_HELP)
    .action(async (file: string, flags: Omit<ImportOptions, "file">) => {
      const summary = await runImport({ ...flags, file });
      process.stdout.write(`${formatSummary(summary.counts, summary.elapsedMs)}\n`);
      if (summary.reportPath) process.stdout.write(`rejected rows: ${summary.reportPath}\n`);
      if (summary.stopped) {
        process.stderr.write(`deltamesh import stopped: ${summary.stopped}\nre-run the same command to finish; rows already written are not written twice\n`);
        process.exit(1);
      }
      process.exit(summary.reportPath ? 2 : 0);
    });
}
