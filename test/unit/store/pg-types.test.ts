// The store's timestamptz parser must give exactly what pg's own parser
// gives, for every form PostgreSQL prints, and hand everything else to it.
import pg from "pg";
import { describe, expect, it } from "vitest";
import { parseTimestamptz } from "../../../services/store/pg-types.js";

const pgParser = pg.types.getTypeParser(1184, "text") as (text: string) => Date | number;
const time = (d: Date | number) => (d instanceof Date ? d.getTime() : d);
const ours = (text: string) => [text, time(parseTimestamptz(text))];
const theirs = (text: string) => [text, time(pgParser(text))];

/** A deterministic pseudo-random sequence, so a failure reproduces. */
function* numbers(seed: number): Generator<number> {
  let x = seed;
  for (;;) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    yield x / 2 ** 31;
  }
}

const pad = (n: number, width: number) => String(n).padStart(width, "0");

describe("parseTimestamptz", () => {
  it("reads PostgreSQL's ISO output as pg's parser does, across years, fractions and offsets", () => {
    const r = numbers(7);
    const next = (below: number) => Math.floor(r.next().value! * below);
    const offsets = ["+00", "-03", "+05:30", "-09:30", "+01:00:10", "-00:25:21", "+14", "-12"];
    const texts: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const fraction = next(7);
      const digits = Array.from({ length: fraction }, () => next(10)).join("");
      texts.push(
        `${pad(100 + next(9900), 4)}-${pad(1 + next(12), 2)}-${pad(1 + next(28), 2)} ${pad(next(24), 2)}:${pad(next(60), 2)}:${pad(next(60), 2)}` +
          `${fraction > 0 ? `.${digits}` : ""}${offsets[next(offsets.length)]}`,
      );
    }
    texts.push("2026-11-24 06:05:53.123456+00", "2000-02-29 23:59:59.999999+00", "1970-01-01 00:00:00+00", "1969-12-31 23:59:59.999-03");
    expect(texts.map(ours)).toEqual(texts.map(theirs));
  });

  it("hands forms it does not read to pg's parser: BC, infinity, years before 100 or after 9999", () => {
    const texts = ["0044-03-15 12:00:00+00", "0001-01-01 00:00:00+00 BC", "2026-11-24 06:05:53.5+00 BC", "12026-11-24 06:05:53+00", "infinity", "-infinity"];
    expect(texts.map(ours)).toEqual(texts.map(theirs));
    expect(parseTimestamptz("0044-03-15 12:00:00+00")).toEqual(new Date("0044-03-15T12:00:00Z"));
  });
});
