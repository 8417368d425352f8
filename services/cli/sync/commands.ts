// `deltamesh export`, `tail` and `verify`: the integrator's tools for taking
// data out (masked as the caller may see it), watching changes live, and
// proving a local copy matches the server.
import { createWriteStream } from "node:fs";
import { once } from "node:events";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { InvalidArgumentError, type Command } from "commander";
import { ChangeService, type SubscribeRequestSchema } from "../../../gen/deltamesh/v1/changes_pb.js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DigestBuilder, differingBuckets } from "../../changes/digest.js";
import type { CollectionSchema } from "../../schema/types.js";
import { connectService, loadSchemas, type ServerFlags } from "../connect.js";
import { formatOf, openRows } from "../import/rows.js";
import { parseAssignments } from "../record-commands.js";
import { csvColumns, csvLine, jsonlLine, type ExportFormat } from "./export-format.js";
import { ansi, formatEvent, plain } from "./tail-format.js";
import { bucketDiffs, describeDiff } from "./verify-diff.js";

interface QueryFlags extends ServerFlags {
  where?: string[];
}

async function collectionQuery(collection: string, flags: QueryFlags): Promise<{ schema: CollectionSchema; filters: { field: string; value: ReturnType<typeof parseAssignments>[string] }[] }> {
  const schemas = await loadSchemas(flags);
  const schema = schemas.collections.get(collection);
  if (!schema) throw new InvalidArgumentError(`no collection ${JSON.stringify(collection)}; known: ${[...schemas.collections.keys()].join(", ")}`);
  const where = parseAssignments(schema, flags.where ?? []);
  return { schema, filters: Object.entries(where).map(([field, value]) => ({ field, value })) };
}

export function exportCommand(cmd: Command): Command {
  return cmd
    .description("write a collection's records as CSV or JSON Lines, masked as you may see them (needs the export right)")
    .option("--where <field=value...>", "equality filters")
    .option("--format <csv|jsonl>", "output format (default: from --out's extension, else jsonl)")
    .option("--out <file>", "output file (default: standard output)")
    .option("--include-deleted", "include deleted records")
    .action(async (collection: string, flags: QueryFlags & { format?: string; out?: string; includeDeleted?: boolean }) => {
      const { schema, filters } = await collectionQuery(collection, flags);
      // The import's rule (--format, else the file's extension); standard output defaults to JSON Lines.
      const format: ExportFormat = flags.out || flags.format ? formatOf(flags.out ?? "", flags.format) : "jsonl";
      const client = connectService(RecordService, flags);
      // A file is written under a temporary name and renamed when complete:
      // a failed export never leaves a truncated file behind.
      const partial = flags.out ? `${flags.out}.partial` : null;
      const out = partial ? createWriteStream(partial) : process.stdout;
      const write = async (text: string) => {
        if (!out.write(text)) await once(out, "drain");
      };
      const columns = csvColumns(schema);
      let count = 0;
      const masked = new Set<string>();
      try {
        if (format === "csv") await write(columns.join(",") + "\n");
        for await (const page of client.exportRecords({ collection, filters, includeDeleted: flags.includeDeleted ?? false })) {
          for (const r of page.records) {
            await write(format === "csv" ? csvLine(columns, r) : jsonlLine(r));
            for (const m of r.maskedFields) masked.add(m);
            count++;
          }
        }
        if (partial) {
          out.end();
          await once(out, "finish");
          await rename(partial, flags.out!);
        }
      } catch (e) {
        if (partial) {
          out.destroy();
          await rm(partial, { force: true });
        }
        throw e;
      }
      process.stderr.write(
        `exported ${count} ${collection} records${flags.out ? ` to ${flags.out}` : ""}${masked.size > 0 ? `; masked for you: ${[...masked].sort().join(", ")}` : ""}\n`,
      );
    });
}

function reasonOf(e: ConnectError): string | undefined {
  return e.findDetails(ErrorInfoSchema)[0]?.reason;
}

export function tailCommand(cmd: Command): Command {
  return cmd
    .description("print live changes of a collection; with --cursor-file, resume where the last run stopped")
    .option("--where <field=value...>", "equality filters")
    .option("--fields <names>", "only these fields, comma-separated")
    .option("--cursor-file <file>", "read the cursor to resume from, and save it after every message")
    .option("--snapshot", "start with the matching records (when there is no saved cursor)")
    .option("--no-color", "plain output (also when NO_COLOR is set or the output is not a terminal)")
    .action(async (collection: string, flags: QueryFlags & { fields?: string; cursorFile?: string; snapshot?: boolean; color: boolean }) => {
      const { filters } = await collectionQuery(collection, flags);
      const client = connectService(ChangeService, flags);
      const paint = flags.color && process.stdout.isTTY && !process.env.NO_COLOR ? ansi : plain;
      let cursor = flags.cursorFile ? (await readFile(flags.cursorFile, "utf8").catch(() => "")).trim() : "";
      const stop = new AbortController();
      process.once("SIGINT", () => stop.abort());
      process.once("SIGTERM", () => stop.abort());
      const save = async (c: string) => {
        if (!flags.cursorFile) return;
        await writeFile(`${flags.cursorFile}.tmp`, c + "\n");
        await rename(`${flags.cursorFile}.tmp`, flags.cursorFile);
      };
      for (let attempt = 0; !stop.signal.aborted; attempt++) {
        const start: MessageInitShape<typeof SubscribeRequestSchema>["start"] = cursor
          ? { case: "afterCursor", value: cursor }
          : flags.snapshot
            ? { case: "snapshot", value: {} }
            : { case: "fromNow", value: {} };
        try {
          for await (const res of client.subscribe(
            { collections: [{ collection, filters, fields: flags.fields ? flags.fields.split(",").map((f) => f.trim()) : [] }], start },
            { signal: stop.signal },
          )) {
            attempt = 0;
            for (const e of res.events) {
              const line = formatEvent(e, paint);
              if (line !== null) process.stdout.write(line + "\n");
            }
            const last = res.events[res.events.length - 1];
            if (last?.cursor) {
              cursor = last.cursor;
              await save(cursor);
            }
          }
        } catch (e) {
          if (stop.signal.aborted) break;
          const err = ConnectError.from(e);
          if (err.code === Code.FailedPrecondition && reasonOf(err) === "CURSOR_EXPIRED") {
            throw new Error(
              `the saved cursor is older than the server's change log (${err.rawMessage}); delete ${flags.cursorFile ?? "the cursor"} and start again, with --snapshot to reload the records`,
            );
          }
          // The node went away or ended the stream (shutdown, a slow reader): resume from the cursor.
          if (err.code !== Code.Unavailable && err.code !== Code.ResourceExhausted) throw err;
          const waitMs = Math.min(10_000, 200 * 2 ** attempt);
          process.stderr.write(`stream interrupted (${err.rawMessage}); resuming in ${waitMs} ms\n`);
          await new Promise((r) => setTimeout(r, waitMs));
        }
      }
    });
}

export function verifyCommand(cmd: Command): Command {
  return cmd
    .description("compare a local export (CSV or JSON Lines with id and version) with the server, and list the records that differ")
    .requiredOption("--file <file>", "the local copy: a `deltamesh export` file")
    .option("--where <field=value...>", "the filters the export was made with")
    .option("--format <csv|jsonl>", "the file's format (default: from its extension)")
    .option("--buckets <n>", "digest buckets (more: smaller re-reads)", (v) => Number(v), 256)
    .action(async (collection: string, flags: QueryFlags & { file: string; format?: string; buckets: number }) => {
      const { filters } = await collectionQuery(collection, flags);
      const local = new Map<string, bigint>();
      const digest = new DigestBuilder(flags.buckets);
      for await (const row of openRows(flags.file, formatOf(flags.file, flags.format)).rows) {
        if ("error" in row) throw new Error(`${flags.file}:${row.line}: ${row.error}`);
        const { id, version } = row.values;
        if (typeof id !== "string" || (typeof version !== "number" && typeof version !== "string")) {
          throw new Error(`${flags.file}:${row.line}: each row needs an id and a version (as \`deltamesh export\` writes them)`);
        }
        local.set(id, BigInt(version));
        digest.add(id, BigInt(version));
      }
      const client = connectService(ChangeService, flags);
      const server = await client.getDigest({ collection, filters, bucketCount: flags.buckets });
      const differing = differingBuckets(
        digest.buckets,
        server.buckets.map((b) => ({ index: b.index, count: Number(b.recordCount), hash: b.hash })),
      );
      let diffs = 0;
      for (const bucket of differing) {
        const page = await client.getDigestBucket({ collection, filters, bucketCount: flags.buckets, bucket, minCursor: server.cursor });
        for (const d of bucketDiffs(local, page.records, bucket, flags.buckets)) {
          process.stdout.write(describeDiff(d) + "\n");
          diffs++;
        }
      }
      process.stdout.write(
        diffs === 0
          ? `${local.size} records match the server (${server.recordCount} there, as of cursor ${server.cursor})\n`
          : `${diffs} records differ (${local.size} local, ${server.recordCount} on the server, in ${differing.length} of ${flags.buckets} buckets)\n`,
      );
      process.exitCode = diffs === 0 ? 0 : 3;
    });
}
