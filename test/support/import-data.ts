// Generated customer files for import tests and benchmarks, with the outcome
// each row must have: valid rows, malformed phones, missing required fields,
// missing keys, and later rows repeating an earlier row's key. Deterministic.
import { createWriteStream } from "node:fs";
import { once } from "node:events";

const REGIONS = ["east_china", "north_china", "south_china", "central_china", "southwest_china"];
export const IMPORT_COLUMNS = ["erp_id", "name", "phone", "region", "visits", "notes"] as const;

type Kind = "valid" | "bad_phone" | "no_name" | "no_region" | "no_key" | "duplicate";

export interface ExpectedCustomer {
  erp_id: string;
  name: string;
  phone?: string;
  region: string;
  visits: number;
  notes?: string;
}

export interface ImportExpectation {
  rows: number;
  /** erp_id -> the record the import must leave. */
  records: Map<string, ExpectedCustomer>;
  /** File line -> the reason the report must give. */
  rejected: Map<number, string>;
  /** Rows that must be written exactly once (valid rows and valid duplicates). */
  writes: number;
}

export interface GenerateOptions {
  rows: number;
  /** Produce defect rows (bad phones, missing fields and keys) and duplicate keys; off: every row is valid and new. */
  defects: boolean;
}

function kindOf(i: number, defects: boolean): Kind {
  if (!defects || i < 10) return "valid";
  // About 1 row in 40 is bad and 1 in 50 repeats an earlier key.
  if (i % 100 === 7) return "bad_phone";
  if (i % 200 === 19) return "no_name";
  if (i % 200 === 119) return "no_region";
  if (i % 200 === 43) return "no_key";
  if (i % 50 === 11) return "duplicate";
  return "valid";
}

const erpId = (i: number) => `ERP${String(i).padStart(8, "0")}`;

/** CN mobile numbers, unique per row, written in varied ways the server normalizes. */
function phoneOf(i: number): { written: string; stored: string } {
  const digits = `139${String(i).padStart(8, "0")}`;
  const written = i % 3 === 0 ? digits : i % 3 === 1 ? `${digits.slice(0, 3)} ${digits.slice(3, 7)} ${digits.slice(7)}` : `+86 ${digits}`;
  return { written, stored: `+86${digits}` };
}

function csvCell(v: string): string {
  return /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** Writes the CSV file and returns what importing it must produce. */
export async function writeCustomerCsv(file: string, opts: GenerateOptions): Promise<ImportExpectation> {
  const out = createWriteStream(file);
  const records = new Map<string, ExpectedCustomer>();
  const rejected = new Map<number, string>();
  const validIndexes: number[] = [];
  let writes = 0;
  let chunk = IMPORT_COLUMNS.join(",") + "\n";
  let line = 2; // physical line the row starts on (line 1 is the header; notes may span lines)
  for (let i = 0; i < opts.rows; i++) {
    const kind = kindOf(i, opts.defects);
    const row: Record<(typeof IMPORT_COLUMNS)[number], string> = {
      erp_id: erpId(i),
      name: `Customer ${i}, Ltd.`,
      phone: i % 10 === 5 ? "" : phoneOf(i).written,
      region: REGIONS[i % REGIONS.length]!,
      visits: String(i % 97),
      notes: i % 20 === 0 ? `said "call back"\nafter ${i}` : "",
    };
    if (kind === "bad_phone") {
      row.phone = Math.floor(i / 100) % 2 === 0 ? "12345" : "not-a-phone";
      rejected.set(line, "PHONE_INVALID");
    } else if (kind === "no_name") {
      row.name = "";
      rejected.set(line, "REQUIRED_FIELD_MISSING");
    } else if (kind === "no_region") {
      row.region = "";
      rejected.set(line, "REQUIRED_FIELD_MISSING");
    } else if (kind === "no_key") {
      row.erp_id = "";
      rejected.set(line, "KEY_MISSING");
    } else if (kind === "duplicate") {
      // An update of an earlier valid row: only the fields it carries change.
      const j = validIndexes[(i * 7919) % validIndexes.length]!;
      const earlier = records.get(erpId(j))!;
      row.erp_id = erpId(j);
      row.name = "";
      row.phone = "";
      row.region = "";
      row.notes = "";
      row.visits = String(1000 + i);
      earlier.visits = 1000 + i;
      writes++;
    } else {
      validIndexes.push(i);
      const phone = row.phone ? phoneOf(i).stored : undefined;
      records.set(row.erp_id, {
        erp_id: row.erp_id,
        name: row.name,
        ...(phone ? { phone } : {}),
        region: row.region,
        visits: Number(row.visits),
        ...(row.notes ? { notes: row.notes } : {}),
      });
      writes++;
    }
    const text = IMPORT_COLUMNS.map((c) => csvCell(row[c])).join(",");
    chunk += text + "\n";
    line += 1 + (text.match(/\n/g)?.length ?? 0);
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, "drain");
      chunk = "";
    }
  }
  out.end(chunk);
  await once(out, "finish");
  return { rows: opts.rows, records, rejected, writes };
}
