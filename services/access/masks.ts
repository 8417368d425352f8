// Masks: how a value is shown to a principal who may see a field only in
// part. Pure, no I/O. Every mask returns text, whatever the field's type (a
// masked birthday cannot be a timestamp), and never leaks more than its rule
// says: odd input (empty, very short, malformed, non-ASCII) degrades to more
// masking, never less.
import { createHmac } from "node:crypto";
import { getCountries, getCountryCallingCode } from "libphonenumber-js/max";
import type { MaskName, StoredValue } from "../schema/types.js";

/** What a fully redacted value reads as: fixed, so the length of the secret never shows. */
export const REDACTED = "***";
/** What a too-short phone or id number reads as: fixed for the same reason. */
const ALL_HIDDEN = "****";

/** Keyed hash of a value's text, stable per tenant (see `tenantHasher`). */
export type Hasher = (text: string) => string;

/** Code points, so a mask never splits a surrogate pair. */
const chars = (s: string): string[] => Array.from(s);

/**
 * Phone: the middle four digits of the national number hidden, the last four
 * shown: `13812345678` -> `138****5678`; E.164 keeps its country code apart:
 * `+8613812345678` -> `+86 138****5678`. Separators are dropped (they could
 * only be noise). Full-width digits count as digits. Fewer than five digits:
 * all hidden.
 */
export function maskPhone(input: string): string {
  const text = input.normalize("NFKC").trim();
  const digits = text.replace(/\D/g, "");
  if (text.startsWith("+")) {
    const cc = callingCodeOf(digits);
    if (cc !== null && digits.length > cc.length) return `+${cc} ${maskDigits(digits.slice(cc.length))}`;
  }
  return maskDigits(digits);
}

function maskDigits(d: string): string {
  if (d.length <= 4) return ALL_HIDDEN;
  const tail = Math.min(4, d.length - 4);
  const head = d.length - 4 - tail;
  return `${d.slice(0, head)}****${d.slice(d.length - tail)}`;
}

let callingCodes: Set<string> | null = null;

/** The ITU calling code a digit string starts with; codes are prefix-free, so at most one matches. */
function callingCodeOf(digits: string): string | null {
  callingCodes ??= new Set(getCountries().map((c) => getCountryCallingCode(c)));
  for (let len = 1; len <= 3 && len <= digits.length; len++) {
    const prefix = digits.slice(0, len);
    if (callingCodes.has(prefix)) return prefix;
  }
  return null;
}

/**
 * Identity document number: region code and last four shown for the 15/18
 * character Chinese resident ID (`110105199001011234` -> `110105********1234`);
 * shorter numbers (passports, ...) keep less: two and two from 8 characters,
 * one and one from 5; four or fewer characters are hidden entirely.
 */
export function maskIdNumber(input: string): string {
  const c = chars(input.trim());
  const n = c.length;
  if (n <= 4) return ALL_HIDDEN;
  const [head, tail] = n >= 15 ? [6, 4] : n >= 8 ? [2, 2] : [1, 1];
  return `${c.slice(0, head).join("")}${"*".repeat(n - head - tail)}${c.slice(n - tail).join("")}`;
}

/**
 * Email: the first character of the local part and the domain shown:
 * `zhang.san@example.com` -> `z***@example.com`. A one-character local part
 * is hidden entirely; anything that is not `local@domain` is redacted.
 */
export function maskEmail(input: string): string {
  const text = input.trim();
  const at = text.lastIndexOf("@");
  if (at <= 0 || at === text.length - 1) return REDACTED;
  const local = chars(text.slice(0, at));
  const domain = text.slice(at + 1);
  return `${local.length >= 2 ? local[0] : ""}***@${domain}`;
}

/** The text a stored value is hashed or measured as: strings as they are, anything else as JSON. */
function textOf(value: StoredValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * A hasher keyed per tenant: HMAC-SHA256 under a key derived from the
 * deployment's secret and the tenant, so equal values hash equal within a
 * tenant (joins work) and differ across tenants. 128 bits of hex.
 */
export function tenantHasher(secret: Uint8Array, tenant: string): Hasher {
  const key = createHmac("sha256", secret).update(`deltamesh mask key\u0000${tenant}`).digest();
  return (text) => createHmac("sha256", key).update(text).digest("hex").slice(0, 32);
}

/**
 * Applies a mask to a stored value. `none` returns the value unchanged; every
 * other mask returns text. A text mask (phone, id_number, email) meeting a
 * non-string value redacts it.
 */
export function applyMask(mask: MaskName, value: StoredValue, hash: Hasher): StoredValue {
  switch (mask) {
    case "none":
      return value;
    case "redact":
      return REDACTED;
    case "hash":
      return hash(textOf(value));
    case "phone":
      return typeof value === "string" ? maskPhone(value) : REDACTED;
    case "id_number":
      return typeof value === "string" ? maskIdNumber(value) : REDACTED;
    case "email":
      return typeof value === "string" ? maskEmail(value) : REDACTED;
  }
}
