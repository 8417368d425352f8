import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CsvError, CsvParser, type CsvRecord } from "../../../services/cli/import/csv.js";
import { csvRow, jsonRow } from "../../../services/cli/import/rows.js";

function parse(...chunks: string[]): CsvRecord[] {
  const p = new CsvParser();
  return [...chunks.flatMap((c) => p.push(c)), ...p.end()];
}

function encode(rows: string[][], eol: string): string {
  return rows.map((r) => r.map((c) => (/[",\r\n]/.test(c) || c === "" ? `"${c.replace(/"/g, '""')}"` : c)).join(",")).join(eol) + eol;
}

describe("CSV parser", () => {
  it("splits cells and records, numbering each record by the line it starts on", () => {
    expect(parse("a,b,c\n1,2,3\n4,,6")).toEqual([
      { line: 1, cells: ["a", "b", "c"] },
      { line: 2, cells: ["1", "2", "3"] },
      { line: 3, cells: ["4", "", "6"] },
    ]);
  });

  it("reads quoted cells with commas, doubled quotes and line breaks", () => {
    expect(parse('id,notes\n1,"said ""hi"", then left\nfor good"\n2,plain\r\n3,""\n')).toEqual([
      { line: 1, cells: ["id", "notes"] },
      { line: 2, cells: ["1", 'said "hi", then left\nfor good'] },
      { line: 4, cells: ["2", "plain"] },
      { line: 5, cells: ["3", ""] },
    ]);
  });

  it("skips blank lines and a byte-order mark, and keeps quotes inside unquoted text", () => {
    expect(parse("\ufeffa,b\n\n\r\n1,x\"y\n")).toEqual([
      { line: 1, cells: ["a", "b"] },
      { line: 4, cells: ["1", 'x"y'] },
    ]);
  });

  it("refuses a quote that never closes, naming the line it opened on", () => {
    const p = new CsvParser();
    p.push('a,b\n1,"open\n2,3\n');
    expect(() => p.end()).toThrow(CsvError);
    try {
      p.end();
    } catch (e) {
      expect((e as CsvError).line).toBe(2);
    }
  });

  it("parses any table the same however the text is cut into chunks", () => {
    const cell = fc.string({ unit: fc.constantFrom("a", "b", ",", '"', "\n", "\r\n", " ", "中"), maxLength: 6 });
    fc.assert(
      fc.property(
        fc.array(fc.array(cell, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 }),
        fc.constantFrom("\n", "\r\n"),
        fc.array(fc.nat(), { maxLength: 8 }),
        (rows, eol, cuts) => {
          // A row of one empty cell is a blank line: the parser skips it, as CSV readers do.
          const table = rows.filter((r) => !(r.length === 1 && r[0] === ""));
          const text = encode(table, eol);
          const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((x, y) => x - y);
          const chunks = [0, ...points].map((p, i, all) => text.slice(p, all[i + 1] ?? text.length));
          expect(parse(...chunks).map((r) => r.cells)).toEqual(table);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("import rows", () => {
  it("names CSV cells by the header and leaves empty cells out", () => {
    expect(csvRow(["erp_id", "name", "phone"], { line: 7, cells: ["E1", "Li", ""] })).toEqual({ line: 7, values: { erp_id: "E1", name: "Li" } });
    expect(csvRow(["erp_id"], { line: 8, cells: ["E1", "extra"] })).toEqual({ line: 8, error: "the row has 2 cells but the header names 1 fields" });
  });

  it("reads a JSON Lines row as an object, or says why not", () => {
    expect(jsonRow(3, '{"erp_id":"E1","visits":3,"notes":null}')).toEqual({ line: 3, values: { erp_id: "E1", visits: 3, notes: null } });
    expect(jsonRow(4, "[1,2]")).toEqual({ line: 4, error: "a JSON Lines row must be an object" });
    expect(jsonRow(5, "{oops")).toMatchObject({ line: 5, error: expect.stringMatching(/^not valid JSON/) });
  });
});
