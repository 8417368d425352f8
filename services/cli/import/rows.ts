// Rows of an import file, streamed: CSV (a header row names the fields) or
// JSON Lines (one object per line). A row that cannot be read is yielded as an
// error with its line number, so it is reported and its neighbours still load.
import { createReadStream } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import type { JsonValue } from "../../schema/types.js";
import { CsvError, CsvParser, type CsvRecord } from "./csv.js";

export type ImportFormat = "csv" | "jsonl";

/** Field name -> value as written in the file (CSV cells are strings; empty cells are left out). */
export type RowValues = Record<string, JsonValue>;

export type SourceRow = { line: number; values: RowValues } | { line: number; error: string };

export interface RowStream {
  rows: AsyncIterable<SourceRow>;
  /** Bytes of the file consumed so far (for progress). */
  bytesRead(): number;
}

export function formatOf(file: string, given?: string): ImportFormat {
  const f = (given ?? file.slice(file.lastIndexOf(".") + 1)).toLowerCase();
  if (f === "csv") return "csv";
  if (f === "jsonl" || f === "ndjson") return "jsonl";
  throw new Error(`cannot tell the format of ${file}: name it .csv or .jsonl, or pass --format csv|jsonl`);
}

/** The file's text in chunks, counting bytes as they are consumed. */
function chunks(file: string, counter: { bytes: number }): AsyncIterable<string> {
  return {
    async *[Symbol.asyncIterator]() {
      const decoder = new StringDecoder("utf8");
      for await (const buf of createReadStream(file, { highWaterMark: 1 << 16 }) as AsyncIterable<Buffer>) {
        counter.bytes += buf.length;
        yield decoder.write(buf);
      }
      const rest = decoder.end();
      if (rest) yield rest;
    },
  };
}

/** Reads the CSV header (the first record) without consuming the rest. */
export async function csvHeader(file: string): Promise<string[]> {
  const parser = new CsvParser();
  for await (const text of chunks(file, { bytes: 0 })) {
    const [first] = parser.push(text);
    if (first) return first.cells.map((c) => c.trim());
  }
  const [only] = parser.end();
  if (!only) throw new Error(`${file} is empty: a CSV import needs a header row naming the fields`);
  return only.cells.map((c) => c.trim());
}

export function csvRow(header: string[], r: CsvRecord): SourceRow {
  if (r.cells.length > header.length) {
    return { line: r.line, error: `the row has ${r.cells.length} cells but the header names ${header.length} fields` };
  }
  const values: RowValues = {};
  r.cells.forEach((cell, i) => {
    if (cell !== "") values[header[i]!] = cell;
  });
  return { line: r.line, values };
}

export function jsonRow(line: number, text: string): SourceRow {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { line, error: `not valid JSON: ${(e as Error).message}` };
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return { line, error: "a JSON Lines row must be an object" };
  return { line, values: parsed as RowValues };
}

async function* csvRows(file: string, counter: { bytes: number }): AsyncGenerator<SourceRow> {
  const parser = new CsvParser();
  let header: string[] | null = null;
  const take = function* (records: CsvRecord[]): Generator<SourceRow> {
    for (const r of records) {
      if (header === null) header = r.cells.map((c) => c.trim());
      else yield csvRow(header, r);
    }
  };
  for await (const text of chunks(file, counter)) yield* take(parser.push(text));
  try {
    yield* take(parser.end());
  } catch (e) {
    if (!(e instanceof CsvError)) throw e;
    yield { line: e.line, error: e.message };
  }
}

async function* jsonlRows(file: string, counter: { bytes: number }): AsyncGenerator<SourceRow> {
  let pending = "";
  let line = 0;
  for await (const text of chunks(file, counter)) {
    pending += line === 0 && pending === "" && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
    let start = 0;
    let nl: number;
    while ((nl = pending.indexOf("\n", start)) !== -1) {
      line++;
      const row = pending.slice(start, nl).trim();
      start = nl + 1;
      if (row) yield jsonRow(line, row);
    }
    pending = pending.slice(start);
  }
  if (pending.trim()) yield jsonRow(line + 1, pending.trim());
}

export function openRows(file: string, format: ImportFormat): RowStream {
  const counter = { bytes: 0 };
  return { rows: format === "csv" ? csvRows(file, counter) : jsonlRows(file, counter), bytesRead: () => counter.bytes };
}
