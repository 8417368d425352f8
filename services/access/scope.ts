// Row scope: a CEL expression over `record.*` (the record's fields) and
// `principal.*` (sub, tenant, roles and the token's attributes), e.g.
//   record.region in principal.regions || record.owner == principal.sub
// Compiled once per policy version; evaluation is pure. Anything but `true`
// (false, an error such as a missing principal attribute, a non-boolean)
// means "not in scope": deny by default.
import { CelScalar, celEnv, isCelError, mapType, parse, plan } from "@bufbuild/cel";
import type { CollectionSchema, FieldType, StoredValue } from "../schema/types.js";

type ParsedExpr = ReturnType<typeof parse>;
type Expr = ParsedExpr["expr"];

/** A record as scope expressions see it: every schema field, null when unset. */
export type CelRecord = ReadonlyMap<string, unknown>;
/** A principal as scope expressions see it. */
export type CelPrincipal = ReadonlyMap<string, unknown>;

export interface Scope {
  readonly text: string;
  /** The record fields the expression reads ("all": it uses `record` as a whole). */
  readonly recordFields: readonly string[] | "all";
  /** The principal keys the expression reads ("all": it uses `principal` as a whole). */
  readonly principalKeys: readonly string[] | "all";
  /** True only when the expression evaluates to `true`. */
  matches(record: CelRecord, principal: CelPrincipal): boolean;
  /** For explanations: the result, or the evaluation error's message. */
  evaluate(record: CelRecord, principal: CelPrincipal): { value: boolean } | { error: string };
}

const env = celEnv({
  variables: {
    record: mapType(CelScalar.STRING, CelScalar.DYN),
    principal: mapType(CelScalar.STRING, CelScalar.DYN),
  },
});

/** Principal keys that are not attributes. */
export const PRINCIPAL_BUILTINS = ["sub", "tenant", "roles"] as const;

export type ScopeCompileResult = { ok: true; scope: Scope } | { ok: false; problems: string[] };

/**
 * Parses and plans a scope expression for a grant over `collections`. Refused:
 * syntax errors, variables other than `record` and `principal` (and macro
 * loop variables), and `record.x` where x is not a field of every collection.
 */
export function compileScope(text: string, collections: readonly CollectionSchema[]): ScopeCompileResult {
  let parsed: ParsedExpr;
  try {
    parsed = parse(text);
  } catch (e) {
    return { ok: false, problems: [`invalid CEL: ${e instanceof Error ? e.message.replace(/^<input>:/, "at ") : String(e)}`] };
  }
  const uses = collectUses(parsed.expr);
  const problems: string[] = [];
  for (const name of uses.unknownIdents) {
    problems.push(`unknown variable ${JSON.stringify(name)}: a scope reads only record.<field> and principal.<attribute>`);
  }
  if (uses.record !== "all") {
    for (const field of uses.record) {
      const missing = collections.filter((c) => !c.fields.has(field)).map((c) => c.name);
      if (missing.length > 0) problems.push(`record.${field}: ${missing.join(", ")} has no field ${JSON.stringify(field)}`);
    }
  }
  if (problems.length > 0) return { ok: false, problems };
  const run = plan(env, parsed);
  const evaluate = (record: CelRecord, principal: CelPrincipal): { value: boolean } | { error: string } => {
    const r = run({ record: record as Map<string, unknown>, principal: principal as Map<string, unknown> } as never);
    if (isCelError(r)) return { error: r.message };
    return { value: r === true };
  };
  return {
    ok: true,
    scope: {
      text,
      recordFields: uses.record === "all" ? "all" : [...uses.record].sort(),
      principalKeys: uses.principal === "all" ? "all" : [...uses.principal].sort(),
      matches: (record, principal) => {
        const r = evaluate(record, principal);
        return "value" in r && r.value;
      },
      evaluate,
    },
  };
}

interface Uses {
  record: Set<string> | "all";
  principal: Set<string> | "all";
  unknownIdents: Set<string>;
}

/** What an expression reads: `record.x` and `principal.y` selections, and stray identifiers. */
function collectUses(root: Expr): Uses {
  const uses: Uses = { record: new Set(), principal: new Set(), unknownIdents: new Set() };
  const loopVars = new Set<string>();
  const note = (v: "record" | "principal", field: string | null) => {
    const set = uses[v];
    if (set === "all") return;
    if (field === null) uses[v] = "all";
    else set.add(field);
  };
  const identIdents: string[] = [];
  const walk = (e: Expr | undefined): void => {
    if (!e) return;
    const k = e.exprKind;
    switch (k.case) {
      case "identExpr":
        if (k.value.name === "record" || k.value.name === "principal") note(k.value.name, null);
        else identIdents.push(k.value.name);
        return;
      case "selectExpr": {
        const operand = k.value.operand;
        if (operand?.exprKind.case === "identExpr" && (operand.exprKind.value.name === "record" || operand.exprKind.value.name === "principal")) {
          note(operand.exprKind.value.name, k.value.field);
          return;
        }
        walk(operand);
        return;
      }
      case "callExpr":
        walk(k.value.target);
        k.value.args.forEach(walk);
        return;
      case "listExpr":
        k.value.elements.forEach(walk);
        return;
      case "structExpr":
        for (const entry of k.value.entries) {
          if (entry.keyKind.case === "mapKey") walk(entry.keyKind.value);
          walk(entry.value);
        }
        return;
      case "comprehensionExpr": {
        const c = k.value;
        loopVars.add(c.iterVar);
        if (c.iterVar2) loopVars.add(c.iterVar2);
        loopVars.add(c.accuVar);
        [c.iterRange, c.accuInit, c.loopCondition, c.loopStep, c.result].forEach(walk);
        return;
      }
      default:
        return;
    }
  };
  walk(root);
  for (const name of identIdents) if (!loopVars.has(name)) uses.unknownIdents.add(name);
  return uses;
}

/** A stored value as CEL sees it: int fields as CEL ints, JSON objects as maps. */
function celValue(type: FieldType, v: StoredValue): unknown {
  if (v === null) return null;
  if (type === "int" && typeof v === "number") return BigInt(v);
  if (type === "json") return celJson(v);
  return v;
}

function celJson(v: StoredValue): unknown {
  if (Array.isArray(v)) return v.map(celJson);
  if (typeof v === "object" && v !== null) return new Map(Object.entries(v).map(([k, x]) => [k, celJson(x)]));
  return v;
}

/** The CEL view of a record's fields: the given schema fields (all when "all"), null when unset. */
export function celRecord(schema: CollectionSchema, fields: Readonly<Record<string, StoredValue>>, only: readonly string[] | "all"): CelRecord {
  const out = new Map<string, unknown>();
  const names = only === "all" ? schema.fields.keys() : only;
  for (const name of names) {
    const field = schema.fields.get(name);
    const v = fields[name];
    out.set(name, field && v !== undefined ? celValue(field.type, v) : null);
  }
  return out;
}
