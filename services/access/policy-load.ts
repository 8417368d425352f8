// Validates the `policies` config section against the schemas of the same
// document and compiles it (scope expressions planned once). Every problem is
// reported at once with its path, e.g.
//   policies.roles.sales.grants[0].read_fields[2]: customers has no field "phon" (did you mean "phone"?)
// so a policy naming an unknown collection, field, mask or device class, or
// holding an invalid CEL expression, is refused when loaded.
import { invalidArgument, type FieldViolation } from "../platform/errors.js";
import { DEFAULT_TENANT } from "../records/model.js";
import { checkKeys, describe, isMapping, oneOf, suggest, TEXT_MASKS, type Report } from "../schema/load.js";
import { MASKS, type CollectionSchema, type MaskName, type SchemaSet } from "../schema/types.js";
import { ACTIONS, ALL, type Action, type CertificatePrincipal, type Grant, type Policy, type Role } from "./policy.js";
import { compileScope, PRINCIPAL_BUILTINS } from "./scope.js";

/** The config section this module owns. */
export const POLICIES_SECTION = "policies";

/** Role names come from identity providers: be liberal ("crm:sales", "Finance"). */
export const ROLE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const DEVICE_CLASS_PATTERN = /^[a-z][a-z0-9_-]{0,31}$/;
const ATTRIBUTE_PATTERN = /^[a-z][a-z0-9_]{0,62}$/;

const TOP_KEYS = ["device_classes", "roles", "client_certificates"] as const;
const ROLE_KEYS = ["description", "grants"] as const;
const GRANT_KEYS = ["description", "collections", "actions", "scope", "read_fields", "write_fields", "masks", "device_masks"] as const;
const CERT_KEYS = ["match", "subject", "tenant", "roles", "attributes"] as const;
const MATCH_KEYS = ["cn", "o", "ou", "fingerprint256"] as const;

/** The policy of a document without a policies section: nobody may do anything. */
export function emptyPolicy(schemas: SchemaSet, revision: string): Policy {
  return { revision, schemas, roles: new Map(), deviceClasses: [], certificates: [] };
}

/**
 * Builds the policy from the `policies` section (absent: deny everything).
 * @throws DomainError invalid_argument, reason INVALID_POLICY, one violation per problem.
 */
export function parsePolicy(raw: unknown, schemas: SchemaSet, revision: string): Policy {
  if (raw === undefined || raw === null) return emptyPolicy(schemas, revision);
  const problems: FieldViolation[] = [];
  const report: Report = (field, description, reason = "INVALID_POLICY") => problems.push({ field, description, reason });
  const base = POLICIES_SECTION;
  if (!isMapping(raw)) {
    report(base, `policies must be a mapping with a roles section; got ${describe(raw)}`);
    throw fail(problems);
  }
  checkKeys(raw, TOP_KEYS, base, report);
  const deviceClasses = parseNames(raw["device_classes"], `${base}.device_classes`, DEVICE_CLASS_PATTERN, "device class", report);
  const roles = new Map<string, Role>();
  const rawRoles = raw["roles"];
  if (!isMapping(rawRoles)) {
    report(`${base}.roles`, `roles must be a mapping from role name to { grants: [...] }; got ${describe(rawRoles)}`);
  } else {
    for (const [name, r] of Object.entries(rawRoles)) {
      const role = parseRole(name, r, { schemas, deviceClasses, report });
      if (role) roles.set(name, role);
    }
  }
  const certificates = parseCertificates(raw["client_certificates"], roles, report);
  if (problems.length > 0) throw fail(problems);
  return { revision, schemas, roles, deviceClasses, certificates };
}

function fail(problems: FieldViolation[]): Error {
  const shown = problems
    .slice(0, 3)
    .map((p) => `${p.field}: ${p.description}`)
    .join("; ");
  const more = problems.length > 3 ? `; and ${problems.length - 3} more` : "";
  return invalidArgument(`invalid policy (${problems.length} problem${problems.length === 1 ? "" : "s"}): ${shown}${more}`, problems, "INVALID_POLICY");
}

interface Ctx {
  schemas: SchemaSet;
  deviceClasses: readonly string[];
  report: Report;
}

function parseRole(name: string, raw: unknown, ctx: Ctx): Role | null {
  const base = `${POLICIES_SECTION}.roles.${name}`;
  if (!ROLE_PATTERN.test(name)) ctx.report(base, `invalid role name ${JSON.stringify(name)}: 1-128 letters, digits, ".", "_", ":" or "-"`);
  if (!isMapping(raw)) {
    ctx.report(base, `role ${name} must be a mapping with a grants list; got ${describe(raw)}`);
    return null;
  }
  checkKeys(raw, ROLE_KEYS, base, ctx.report);
  const rawGrants = raw["grants"];
  if (!Array.isArray(rawGrants)) {
    ctx.report(`${base}.grants`, `grants must be a list; got ${describe(rawGrants)}`);
    return null;
  }
  const grants = rawGrants.map((g, i) => parseGrant(name, i, g, ctx)).filter((g): g is Grant => g !== null);
  return { name, description: stringOr(raw["description"], `${base}.description`, ctx.report), grants };
}

function parseGrant(role: string, index: number, raw: unknown, ctx: Ctx): Grant | null {
  const id = `${POLICIES_SECTION}.roles.${role}.grants[${index}]`;
  const { report } = ctx;
  if (!isMapping(raw)) {
    report(id, `a grant must be a mapping with collections and actions; got ${describe(raw)}`);
    return null;
  }
  checkKeys(raw, GRANT_KEYS, id, report);
  const collections = parseCollections(raw["collections"], `${id}.collections`, ctx);
  const actions = new Set<Action>();
  const rawActions = raw["actions"];
  if (!Array.isArray(rawActions) || rawActions.length === 0) {
    report(`${id}.actions`, `actions must be a non-empty list of ${ACTIONS.join(", ")}; got ${describe(rawActions)}`);
  } else {
    rawActions.forEach((a: unknown, i) => {
      const action = oneOf(a, ACTIONS, "action", `${id}.actions[${i}]`, report);
      if (action) actions.add(action);
    });
  }
  const schemas = collections === null ? [] : collections === ALL ? [...ctx.schemas.collections.values()] : collections.map((c) => ctx.schemas.collections.get(c)!);
  const wildcard = collections === ALL;

  let scope = null;
  const rawScope = raw["scope"];
  if (rawScope !== undefined && rawScope !== null) {
    if (typeof rawScope !== "string" || rawScope.trim() === "") {
      report(`${id}.scope`, `scope must be a CEL expression, e.g. record.region in principal.regions; got ${describe(rawScope)}`);
    } else if (collections !== null) {
      const compiled = compileScope(rawScope, schemas);
      if (compiled.ok) scope = compiled.scope;
      else for (const p of compiled.problems) report(`${id}.scope`, p, "INVALID_SCOPE");
    }
  }

  const rawRead = raw["read_fields"];
  if (Array.isArray(rawRead) && rawRead.length === 0) {
    report(`${id}.read_fields`, "read_fields is empty: list the readable fields, or leave it out for every field");
  }
  const readFields = parseFieldList(rawRead, `${id}.read_fields`, schemas, wildcard, report) ?? ALL;
  const rawWrite = raw["write_fields"];
  const writeFields = parseFieldList(rawWrite, `${id}.write_fields`, schemas, wildcard, report) ?? new Set<string>();
  if (actions.has("write") && (rawWrite === undefined || rawWrite === null)) {
    report(`${id}.write_fields`, `the grant allows write but names no write_fields: list the fields it may write (["*"] for every field)`);
  }
  if (!actions.has("write") && rawWrite !== undefined && rawWrite !== null) {
    report(`${id}.write_fields`, "write_fields without the write action: add write to actions or remove write_fields");
  }
  const masks = parseMasks(raw["masks"], `${id}.masks`, schemas, wildcard, report);
  const deviceMasks = new Map<string, ReadonlyMap<string, MaskName>>();
  const rawDevice = raw["device_masks"];
  if (rawDevice !== undefined && rawDevice !== null) {
    if (!isMapping(rawDevice)) {
      report(`${id}.device_masks`, `device_masks must map a device class to { field: mask }; got ${describe(rawDevice)}`);
    } else {
      for (const [dc, m] of Object.entries(rawDevice)) {
        if (!ctx.deviceClasses.includes(dc)) {
          const declared = ctx.deviceClasses.length > 0 ? ctx.deviceClasses.join(", ") : "none";
          report(`${id}.device_masks.${dc}`, `unknown device class ${JSON.stringify(dc)}${suggest(dc, ctx.deviceClasses)}: declare it in policies.device_classes (declared: ${declared})`);
        }
        deviceMasks.set(dc, parseMasks(m, `${id}.device_masks.${dc}`, schemas, wildcard, report));
      }
    }
  }
  if (collections === null) return null;
  return {
    id,
    role,
    index,
    description: stringOr(raw["description"], `${id}.description`, report),
    collections: collections === ALL ? ALL : new Set(collections),
    actions,
    scope,
    readFields,
    writeFields,
    masks,
    deviceMasks,
  };
}

/** Collection names (every one must exist) or ["*"]; null when unusable. */
function parseCollections(raw: unknown, path: string, ctx: Ctx): string[] | typeof ALL | null {
  if (!Array.isArray(raw) || raw.length === 0) {
    ctx.report(path, `collections must be a non-empty list of collection names, or ["*"]; got ${describe(raw)}`);
    return null;
  }
  if (raw.length === 1 && raw[0] === ALL) return ALL;
  const known = [...ctx.schemas.collections.keys()];
  const out: string[] = [];
  let ok = true;
  raw.forEach((c: unknown, i) => {
    if (typeof c === "string" && ctx.schemas.collections.has(c)) {
      if (!out.includes(c)) out.push(c);
      return;
    }
    ok = false;
    const hint = typeof c === "string" ? suggest(c, known) : "";
    const why = c === ALL ? `"*" must stand alone` : `unknown collection ${typeof c === "string" ? JSON.stringify(c) : describe(c)}${hint}`;
    ctx.report(`${path}[${i}]`, `${why}; collections: ${known.join(", ")}`, "UNKNOWN_COLLECTION");
  });
  return ok ? out : null;
}

/** A field list: ["*"] or fields of every collection of the grant; undefined when absent. */
function parseFieldList(raw: unknown, path: string, schemas: readonly CollectionSchema[], wildcard: boolean, report: Report): ReadonlySet<string> | typeof ALL | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!Array.isArray(raw)) {
    report(path, `must be a list of field names, or ["*"]; got ${describe(raw)}`);
    return new Set();
  }
  if (raw.length === 1 && raw[0] === ALL) return ALL;
  const out = new Set<string>();
  raw.forEach((f: unknown, i) => {
    const problem = fieldProblem(f, schemas, wildcard);
    if (problem) report(`${path}[${i}]`, problem, "UNKNOWN_FIELD");
    else out.add(f as string);
  });
  return out;
}

/** Why `f` is not a field every collection has, or null. */
function fieldProblem(f: unknown, schemas: readonly CollectionSchema[], wildcard: boolean): string | null {
  if (typeof f !== "string") return `a field name must be a string; got ${describe(f)}`;
  if (f === ALL) return `"*" must stand alone`;
  if (wildcard) return `a grant on every collection ("*") can only name every field ("*"); name the collections to list fields`;
  for (const s of schemas) {
    if (!s.fields.has(f)) return `${s.name} has no field ${JSON.stringify(f)}${suggest(f, [...s.fields.keys()])}`;
  }
  return null;
}

function parseMasks(raw: unknown, path: string, schemas: readonly CollectionSchema[], wildcard: boolean, report: Report): ReadonlyMap<string, MaskName> {
  const out = new Map<string, MaskName>();
  if (raw === undefined || raw === null) return out;
  if (!isMapping(raw)) {
    report(path, `must map field names (or "*") to masks (${MASKS.join(", ")}); got ${describe(raw)}`);
    return out;
  }
  for (const [field, m] of Object.entries(raw)) {
    const mask = oneOf(m, MASKS, "mask", `${path}.${field}`, report);
    if (field === ALL) {
      if (mask && TEXT_MASKS.includes(mask)) report(`${path}.${field}`, `"*" can only take none, redact or hash: ${mask} applies to string fields only`, "INVALID_MASK");
      else if (mask) out.set(field, mask);
      continue;
    }
    const problem = fieldProblem(field, schemas, wildcard);
    if (problem) {
      report(`${path}.${field}`, problem, "UNKNOWN_FIELD");
      continue;
    }
    if (!mask) continue;
    const nonString = schemas.find((s) => s.fields.get(field)!.type !== "string");
    if (TEXT_MASKS.includes(mask) && nonString) {
      report(`${path}.${field}`, `mask ${mask} applies only to string fields; ${nonString.name}.${field} is a ${nonString.fields.get(field)!.type} field (use redact or hash)`, "INVALID_MASK");
      continue;
    }
    out.set(field, mask);
  }
  return out;
}

function parseNames(raw: unknown, path: string, pattern: RegExp, what: string, report: Report): string[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    report(path, `must be a list of ${what} names; got ${describe(raw)}`);
    return [];
  }
  const out: string[] = [];
  raw.forEach((n: unknown, i) => {
    if (typeof n !== "string" || !pattern.test(n)) report(`${path}[${i}]`, `invalid ${what} name ${typeof n === "string" ? JSON.stringify(n) : describe(n)}`);
    else if (out.includes(n)) report(`${path}[${i}]`, `${what} ${JSON.stringify(n)} is listed twice`);
    else out.push(n);
  });
  return out;
}

function parseCertificates(raw: unknown, roles: ReadonlyMap<string, Role>, report: Report): CertificatePrincipal[] {
  const path = `${POLICIES_SECTION}.client_certificates`;
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) {
    report(path, `must be a list of { match: { cn: ... }, subject, roles }; got ${describe(raw)}`);
    return [];
  }
  const out: CertificatePrincipal[] = [];
  raw.forEach((c: unknown, i) => {
    const base = `${path}[${i}]`;
    if (!isMapping(c)) {
      report(base, `must be a mapping { match, subject, tenant, roles, attributes }; got ${describe(c)}`);
      return;
    }
    checkKeys(c, CERT_KEYS, base, report);
    const match: Record<string, string> = {};
    const rawMatch = c["match"];
    if (!isMapping(rawMatch) || Object.keys(rawMatch).length === 0) {
      report(`${base}.match`, `match must name at least one of ${MATCH_KEYS.join(", ")} of the certificate; got ${describe(rawMatch)}`);
    } else {
      checkKeys(rawMatch, MATCH_KEYS, `${base}.match`, report);
      for (const k of MATCH_KEYS) {
        const v = rawMatch[k];
        if (v === undefined) continue;
        if (typeof v === "string" && v !== "") match[k] = k === "fingerprint256" ? v.toUpperCase() : v;
        else report(`${base}.match.${k}`, `must be a non-empty string; got ${describe(v)}`);
      }
    }
    const subject = c["subject"];
    if (typeof subject !== "string" || subject === "") report(`${base}.subject`, `subject (the principal's name) is required; got ${describe(subject)}`);
    const tenant = c["tenant"] ?? DEFAULT_TENANT;
    if (typeof tenant !== "string" || tenant === "") report(`${base}.tenant`, `must be a tenant name; got ${describe(tenant)}`);
    const certRoles: string[] = [];
    const rawRoles = c["roles"];
    if (!Array.isArray(rawRoles)) report(`${base}.roles`, `roles must be a list of role names; got ${describe(rawRoles)}`);
    else {
      rawRoles.forEach((r: unknown, j) => {
        if (typeof r === "string" && roles.has(r)) certRoles.push(r);
        else report(`${base}.roles[${j}]`, `unknown role ${typeof r === "string" ? JSON.stringify(r) : describe(r)}${typeof r === "string" ? suggest(r, [...roles.keys()]) : ""}`, "UNKNOWN_ROLE");
      });
    }
    const attributes = parseAttributes(c["attributes"], `${base}.attributes`, report);
    if (typeof subject === "string" && typeof tenant === "string") out.push({ match, subject, tenant, roles: certRoles, attributes });
  });
  return out;
}

function parseAttributes(raw: unknown, path: string, report: Report): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  if (raw === undefined || raw === null) return out;
  if (!isMapping(raw)) {
    report(path, `must map attribute names to a string or a list of strings; got ${describe(raw)}`);
    return out;
  }
  for (const [k, v] of Object.entries(raw)) {
    if (!ATTRIBUTE_PATTERN.test(k) || (PRINCIPAL_BUILTINS as readonly string[]).includes(k)) {
      report(`${path}.${k}`, `invalid attribute name ${JSON.stringify(k)} (lower-case letters, digits and _; not ${PRINCIPAL_BUILTINS.join(", ")})`);
    } else if (typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string"))) {
      out[k] = v as string | string[];
    } else {
      report(`${path}.${k}`, `must be a string or a list of strings; got ${describe(v)}`);
    }
  }
  return out;
}

function stringOr(raw: unknown, path: string, report: Report): string {
  if (raw === undefined || raw === null) return "";
  if (typeof raw === "string") return raw;
  report(path, `must be a string; got ${describe(raw)}`);
  return "";
}
