// Checks a schema change against the records already stored, before it is
// published (ClusterService.ApplyConfig, dry runs included): every record
// must fit the new schemas, or the change is refused with each problem named
// (which field, how many records, a few of them) and nothing changes.
import { DomainError, type FieldViolation } from "../platform/errors.js";
import type { RecordRef, RecordTally } from "../store/stored-fields.js";
import { misfit, recordChecks, type RecordCheck } from "./record-fit.js";
import type { SchemaSet, StoredValue } from "./types.js";

/** The reads the check needs (services/store/stored-fields.ts over the node's pool). */
export interface StoredFieldReader {
  liveRecordsWithout(collection: string, field: string): Promise<RecordTally>;
  recordsWith(collection: string, field: string): Promise<RecordTally>;
  forEachLiveValue(collection: string, field: string, visit: (record: RecordRef, value: StoredValue) => void): Promise<void>;
}

const EXAMPLES = 3;

/**
 * Resolves with the checks it made (none: the change reads no records).
 * @throws DomainError failed_precondition SCHEMA_DOES_NOT_FIT_RECORDS with a
 *   violation per field whose stored records the new definition refuses.
 */
export async function checkSchemaAgainstRecords(reader: StoredFieldReader, before: SchemaSet, after: SchemaSet): Promise<RecordCheck[]> {
  const checks = recordChecks(before, after);
  const violations: FieldViolation[] = [];
  for (const check of checks) {
    const v = await violationOf(reader, check, after.defaultPhoneRegion);
    if (v) violations.push(v);
  }
  if (violations.length === 0) return checks;
  const more = violations.length > 1 ? ` (and ${violations.length - 1} more problem${violations.length > 2 ? "s" : ""})` : "";
  throw new DomainError("failed_precondition", `the new schemas do not fit the stored records: ${violations[0]!.description}${more}`, {
    reason: "SCHEMA_DOES_NOT_FIT_RECORDS",
    violations,
  });
}

async function violationOf(reader: StoredFieldReader, check: RecordCheck, defaultPhoneRegion: string): Promise<FieldViolation | null> {
  const { collection, field } = check;
  const name = `${collection}.${field.name}`;
  const path = `collections.${collection}.fields.${field.name}`;
  switch (check.kind) {
    case "required": {
      const t = await reader.liveRecordsWithout(collection, field.name);
      if (t.count === 0) return null;
      return {
        field: `${path}.required`,
        reason: "RECORDS_LACK_VALUE",
        description: `${name} becomes required, but ${records(t.count)} ${t.count === 1 ? "holds" : "hold"} no value for it (${examples(t.examples)}); give them one first`,
      };
    }
    case "identity": {
      const t = await reader.recordsWith(collection, field.name);
      if (t.count === 0) return null;
      return {
        field: `${path}.identity`,
        reason: "RECORDS_HOLD_VALUES",
        description:
          `${name} becomes an identity field, but ${records(t.count, "deleted ones included")} already ${t.count === 1 ? "holds" : "hold"} a value for it (${examples(t.examples)}), ` +
          `and keys are made only as values are written: clear those values, apply the change, then write them again (each is then checked for duplicates)`,
      };
    }
    case "values": {
      const reasons = new Map<string, number>();
      const found: RecordRef[] = [];
      await reader.forEachLiveValue(collection, field.name, (record, value) => {
        const why = misfit(field, value, defaultPhoneRegion, check.exact);
        // A value the old definition refused too is not this change's doing (it would block even a looser rule).
        if (why === null || (check.was && misfit(check.was, value, defaultPhoneRegion, check.exact) !== null)) return;
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
        if (found.length < EXAMPLES) found.push(record);
      });
      if (reasons.size === 0) return null;
      const count = [...reasons.values()].reduce((a, b) => a + b, 0);
      const why = [...reasons].map(([r, n]) => `${r}: ${n}`).join(", ");
      return {
        field: path,
        reason: "RECORDS_DO_NOT_FIT",
        description: `the new definition of ${name} refuses the stored value of ${records(count)} (${why}; ${examples(found)}); change those records first`,
      };
    }
  }
}

function records(n: number, note?: string): string {
  return `${n.toLocaleString("en-US")} record${n === 1 ? "" : "s"}${note ? ` (${note})` : ""}`;
}

/** Record names, never values: the refusal goes to the caller and the log. */
function examples(refs: readonly RecordRef[]): string {
  return `e.g. ${refs.map((r) => `${r.tenant}/${r.id}`).join(", ")}`;
}
