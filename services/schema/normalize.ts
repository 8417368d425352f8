// Pure string normalizers named by field schemas (`normalizers: [trim]`).
// Each takes the text a client sent and returns the canonical text to store,
// or a reason it cannot be accepted. They run in the order the schema lists
// them, before type validation (see values.ts).

import { parsePhoneNumberFromString, isSupportedCountry } from "libphonenumber-js/max";
import type { NormalizerName } from "./types.js";

export type NormalizeResult = { ok: true; value: string } | { ok: false; reason: string; description: string };

export interface NormalizeOptions {
  /** ISO 3166 region for phone numbers written without a country code; "" = they must carry one. */
  defaultPhoneRegion: string;
}

/** Removes leading and trailing whitespace (Unicode whitespace, incl. the ideographic space U+3000). */
export function normalizeTrim(input: string): NormalizeResult {
  return { ok: true, value: input.trim() };
}

/** Locale-independent lower-casing. */
export function normalizeLowercase(input: string): NormalizeResult {
  return { ok: true, value: input.toLowerCase() };
}

const EMAIL_MAX = 254;
const LOCAL_MAX = 64;
// atext of RFC 5322 plus dots (checked separately) and any non-ASCII letter (RFC 6531).
const LOCAL_RE = /^[\p{L}\p{N}!#$%&'*+/=?^_`{|}~.-]+$/u;
const LABEL_RE = /^[\p{L}\p{N}](?:[\p{L}\p{N}-]{0,61}[\p{L}\p{N}])?$/u;

/**
 * Email: NFKC (so full-width input typed through an IME, `ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ`,
 * becomes ASCII), trim, lower-case (the whole address, local part included:
 * deltamesh treats addresses as case-insensitive identities), then a basic
 * syntax check: one `@`, a dot-atom local part of at most 64 characters, a
 * domain of at least two labels, at most 254 characters in all. Quoted local
 * parts and IP-literal domains are not accepted.
 */
export function normalizeEmail(input: string): NormalizeResult {
  const value = input.normalize("NFKC").trim().toLowerCase();
  const bad = (why: string): NormalizeResult => ({
    ok: false,
    reason: "EMAIL_INVALID",
    description: `${quote(input)} is not a valid email address: ${why}`,
  });
  if (value === "") return bad("it is empty");
  if (value.length > EMAIL_MAX) return bad(`it is longer than ${EMAIL_MAX} characters`);
  const at = value.indexOf("@");
  if (at < 0) return bad('it has no "@"');
  if (value.indexOf("@", at + 1) >= 0) return bad('it has more than one "@"');
  const local = value.slice(0, at);
  const domain = value.slice(at + 1);
  if (local === "") return bad('nothing before the "@"');
  if (local.length > LOCAL_MAX) return bad(`the part before "@" is longer than ${LOCAL_MAX} characters`);
  if (!LOCAL_RE.test(local) || local.startsWith(".") || local.endsWith(".") || local.includes("..")) {
    return bad('the part before "@" holds spaces or characters an address cannot have');
  }
  if (domain === "") return bad('nothing after the "@"');
  const labels = domain.split(".");
  if (labels.length < 2) return bad(`the domain ${quote(domain)} has no dot`);
  if (!labels.every((l) => LABEL_RE.test(l))) return bad(`the domain ${quote(domain)} is not a valid host name`);
  const tld = labels[labels.length - 1] ?? "";
  if (/^\d+$/.test(tld)) return bad(`the domain ${quote(domain)} is not a valid host name`);
  return { ok: true, value };
}

/**
 * Phone number to E.164 (`+8613800138000`), parsed with libphonenumber's full
 * ("max") metadata, so the number must be a real, assigned-range number of its
 * region, not just the right length. A number without a country code is read
 * in `defaultPhoneRegion`; full-width digits and the usual separators
 * (spaces, dashes, dots, parentheses) are accepted, as are `00`/`+` prefixes,
 * a `tel:` prefix and `(+86)`. Extensions are refused (E.164 cannot hold them,
 * and dropping them would merge different identities). Anything else around
 * the number is refused rather than guessed at.
 */
/**
 * Phones already seen, by region and input: parsing and validating a number
 * costs ~60 µs, and sync traffic carries the same customer's phone with
 * every edit of any field. Bounded; the oldest entry goes first.
 */
const phoneMemo = new Map<string, NormalizeResult>();
const PHONE_MEMO_SIZE = 10_000;

export function normalizePhone(input: string, defaultPhoneRegion: string): NormalizeResult {
  const key = `${defaultPhoneRegion}\u0000${input}`;
  let result = phoneMemo.get(key);
  if (result === undefined) {
    result = parsePhone(input, defaultPhoneRegion);
    if (phoneMemo.size >= PHONE_MEMO_SIZE) phoneMemo.delete(phoneMemo.keys().next().value!);
    phoneMemo.set(key, Object.freeze(result));
  }
  return result;
}

function parsePhone(input: string, defaultPhoneRegion: string): NormalizeResult {
  let text = input.trim();
  if (/^tel:/i.test(text)) text = text.slice(4);
  // "(+86) 138 ..." and "（+86）138 ..." are common; libphonenumber refuses the bracketed code.
  text = text.replace(/^[(（]\s*([+＋]\s*\d{1,3})\s*[)）]/u, "$1 ");
  const region = defaultPhoneRegion !== "" && isSupportedCountry(defaultPhoneRegion) ? defaultPhoneRegion : undefined;
  const where = region && !/^[+＋]/u.test(text) ? ` for region ${region}` : "";
  const bad = (why = ""): NormalizeResult => ({
    ok: false,
    reason: "PHONE_INVALID",
    description: `${quote(input)} is not a valid phone number${where}${why}`,
  });
  if (text === "") return bad(": it is empty");
  const parsed = parsePhoneNumberFromString(text, { defaultCountry: region, extract: false });
  if (!parsed) {
    if (!region && !/^[+＋]/u.test(text)) return bad(": no default region is configured, so it must start with + and a country code");
    return bad();
  }
  if (parsed.ext) return bad(": extensions are not supported; store the extension in another field");
  if (!parsed.isValid()) return bad();
  return { ok: true, value: parsed.number };
}

/** Applies one named normalizer. */
export function normalize(name: NormalizerName, input: string, opts: NormalizeOptions): NormalizeResult {
  switch (name) {
    case "trim":
      return normalizeTrim(input);
    case "lowercase":
      return normalizeLowercase(input);
    case "email":
      return normalizeEmail(input);
    case "phone":
      return normalizePhone(input, opts.defaultPhoneRegion);
  }
}

/** Applies normalizers in order; the first failure stops the chain. */
export function applyNormalizers(names: readonly NormalizerName[], input: string, opts: NormalizeOptions): NormalizeResult {
  let value = input;
  for (const name of names) {
    const r = normalize(name, value, opts);
    if (!r.ok) return r;
    value = r.value;
  }
  return { ok: true, value };
}

/** A value quoted for an error message, cut short if long. */
function quote(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s);
}
