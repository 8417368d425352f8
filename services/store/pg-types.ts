// Type parsers for the store's connections. PostgreSQL sends a timestamptz
// as ISO text (`2026-11-24 06:05:53.123456+00`). pg's parser runs three
// regular expressions over each one, and the write path reads three a
// mutation (a locked record's create and update times, its change's commit
// time): ~2 % of a node's CPU under write load. The common form is read here
// digit by digit; anything else (BC dates, infinity, years before 100 or
// after 9999) goes to pg's own parser, so results never differ.
import pg from "pg";

const TIMESTAMPTZ_OID = 1184;
const defaultTimestamptz = pg.types.getTypeParser(TIMESTAMPTZ_OID, "text") as (text: string) => Date | number;

const ZERO = 48;
const DASH = 45;
const COLON = 58;
const DOT = 46;
const PLUS = 43;
const SPACE = 32;

/** Two decimal digits at `at`, or -1. */
function twoDigits(s: string, at: number): number {
  const a = s.charCodeAt(at) - ZERO;
  const b = s.charCodeAt(at + 1) - ZERO;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

/** A timestamptz in PostgreSQL's ISO output, to the millisecond (finer digits are dropped, as pg's parser drops them). */
export function parseTimestamptz(s: string): Date | number {
  const n = s.length;
  if (n < 22 || s.charCodeAt(4) !== DASH || s.charCodeAt(7) !== DASH || s.charCodeAt(10) !== SPACE || s.charCodeAt(13) !== COLON || s.charCodeAt(16) !== COLON) {
    return defaultTimestamptz(s);
  }
  const century = twoDigits(s, 0);
  const yy = twoDigits(s, 2);
  const year = century * 100 + yy;
  const month = twoDigits(s, 5);
  const day = twoDigits(s, 8);
  const hour = twoDigits(s, 11);
  const minute = twoDigits(s, 14);
  const second = twoDigits(s, 17);
  let at = 19;
  let ms = 0;
  if (s.charCodeAt(at) === DOT) {
    at++;
    for (let scale = 100; at < n; at++) {
      const digit = s.charCodeAt(at) - ZERO;
      if (digit < 0 || digit > 9) break;
      ms += digit * scale;
      scale = scale === 1 ? 0 : scale / 10;
    }
  }
  const sign = s.charCodeAt(at);
  if (sign !== PLUS && sign !== DASH) return defaultTimestamptz(s);
  const offsetHours = twoDigits(s, at + 1);
  let offsetMinutes = 0;
  let offsetSeconds = 0;
  at += 3;
  if (at < n && s.charCodeAt(at) === COLON) {
    offsetMinutes = twoDigits(s, at + 1);
    at += 3;
    if (at < n && s.charCodeAt(at) === COLON) {
      offsetSeconds = twoDigits(s, at + 1);
      at += 3;
    }
  }
  // A field that was not two digits is -1, which makes the bitwise or negative.
  const malformed = (century | yy | month | day | hour | minute | second | offsetHours | offsetMinutes | offsetSeconds) < 0;
  // Years before 100 would be read as 19xx by Date.UTC; pg's parser handles them.
  if (at !== n || year < 100 || malformed) return defaultTimestamptz(s);
  const offsetMs = (offsetHours * 3600 + offsetMinutes * 60 + offsetSeconds) * 1000;
  return new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms) - (sign === PLUS ? offsetMs : -offsetMs));
}

/** The `types` option of the store's pools and clients. */
export const storeTypes: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === TIMESTAMPTZ_OID && format !== "binary" ? parseTimestamptz : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};
