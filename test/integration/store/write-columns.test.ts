// The write function's column form (migration 0011) on a real PostgreSQL:
// records and change rows go in with their JSON documents split out of the
// rows, so what a batch wrote must read back exactly, whatever the values
// hold (the separator character itself, quotes, non-BMP text), in the order
// the batch gave, with times to the millisecond and clocks whole.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordStore, type ChangeDraft, type WriteEffects } from "../../../services/store/record-store.js";
import { ChangeReader } from "../../../services/store/change-reader.js";
import type { FieldClock, StoredRecord } from "../../../services/records/model.js";
import type { StoredValue } from "../../../services/schema/types.js";
import { testDatabaseUrl } from "../../support/env.js";

let store: RecordStore;

beforeAll(async () => {
  store = await RecordStore.open({ url: await testDatabaseUrl() });
});
afterAll(async () => {
  await store?.close();
});

const TRICKY = 'a\u001eb "quoted" \\ back\u001fslash 客户 😀 \n line';
/** Text for the array columns: quotes, backslashes, commas and braces as PostgreSQL array literals use them. */
const ACTOR = 'li "lei" \\ {a,b} NULL 客户';

function clock(version: number, hlc: bigint, source = "crm-desktop"): FieldClock {
  return { version, hlc, source, actor: "li.lei", device: "phone \u001e 1" };
}

function record(id: string, version: number, fields: Record<string, StoredValue>, clocks: Record<string, FieldClock>, times: [Date, Date]): StoredRecord {
  return { tenant: "t-columns", collection: "customers", id, version, fields, clocks, deleted: false, createTime: times[0], updateTime: times[1] };
}

function change(
  r: StoredRecord,
  before: Record<string, StoredValue> | null,
  set: Record<string, StoredValue>,
  cleared: string[],
  clientMutationId = "",
): ChangeDraft {
  return {
    tenant: r.tenant,
    collection: r.collection,
    recordId: r.id,
    oldVersion: before ? r.version - 1 : 0,
    newVersion: r.version,
    set,
    cleared,
    clocks: Object.fromEntries([...Object.keys(set), ...cleared].map((f) => [f, r.clocks[f]!])),
    decisions: [],
    created: before === null,
    deleted: false,
    actor: ACTOR,
    source: "crm-desktop",
    device: "phone \u001e 1",
    clientMutationId,
    fieldsBefore: before,
    fieldsAfter: r.fields,
  };
}

function effects(records: StoredRecord[], changes: ChangeDraft[]): WriteEffects {
  return { records, keyRemovals: [], keyInserts: [], changes, applied: [], tickets: [], ticketCloses: [] };
}

async function write(records: StoredRecord[], changes: ChangeDraft[]): Promise<bigint[]> {
  return store.writeTransaction(async (tx) => {
    await tx.read({ lookups: [], clientMutationIds: [], lockIds: records, lockHolders: [], readsTickets: false });
    return (await tx.apply(effects(records, changes))).seqs;
  });
}

describe("the write function's column form", () => {
  it("stores fresh and existing records and their change rows exactly as the batch held them", async () => {
    const created = new Date("2026-03-01T08:00:00.123Z");
    const edited = new Date("2026-03-02T09:30:45.678Z");
    const richFields: Record<string, StoredValue> = { name: TRICKY, tags: ["x\u001ey", "vip"], extra: { nested: [1, "\u001e", null] }, visits: 3 };
    const plain = record("c-plain", 1, { name: "Wang" }, { name: clock(1, 11n) }, [created, created]);
    const rich = record("c-rich", 1, richFields, { name: clock(1, 12n), tags: clock(1, 12n), extra: clock(1, 12n), visits: clock(1, 12n) }, [created, created]);
    await write([plain, rich], [change(plain, null, plain.fields, []), change(rich, null, rich.fields, [])]);

    // A second batch: one existing record edited (a field set, one cleared), one created, in that order.
    const richAfter = record(
      "c-rich",
      2,
      { name: `${TRICKY} v2`, tags: ["x\u001ey", "vip"], visits: 3 },
      { name: clock(2, 2n ** 62n + 7n, "erp \"main\""), tags: clock(1, 12n), extra: clock(2, 2n ** 62n + 7n, "erp \"main\""), visits: clock(1, 12n) },
      [created, edited],
    );
    const third = record("c-\u001e-third", 1, { name: "Zhang" }, { name: clock(1, 13n) }, [edited, edited]);
    const seqs = await write(
      [richAfter, third],
      [change(richAfter, rich.fields, { name: richAfter.fields.name! }, ["extra"], 'm-"1",\\'), change(third, null, third.fields, [], "NULL")],
    );

    expect(seqs).toHaveLength(2);
    expect(seqs[1]! > seqs[0]!).toBe(true);
    for (const expected of [plain, richAfter, third]) {
      const got = await store.get(expected);
      expect(got).toEqual(expected);
    }

    const page = await ChangeReader.of(store).readPage(seqs[0]! - 1n, 10);
    const rows = page.changes.filter((c) => c.tenant === "t-columns");
    expect(rows.map((c) => [c.seq, c.recordId, c.oldVersion, c.newVersion, c.created])).toEqual([
      [seqs[0], "c-rich", 1, 2, false],
      [seqs[1], "c-\u001e-third", 0, 1, true],
    ]);
    const edit = rows[0]!;
    expect(edit.set).toEqual({ name: `${TRICKY} v2` });
    expect(edit.cleared).toEqual(["extra"]);
    expect(edit.clocks).toEqual({ name: richAfter.clocks.name, extra: richAfter.clocks.extra });
    expect(edit.image()).toEqual(richAfter.fields);
    expect(edit.prior()).toEqual({ name: TRICKY, extra: { nested: [1, "\u001e", null] } });
    expect(rows[1]!.image()).toEqual({ name: "Zhang" });
    expect(rows[1]!.prior()).toEqual({});

    const history = await store.history({ tenant: "t-columns", collection: "customers", id: "c-rich", afterSeq: 0n, limit: 10 });
    expect(history.map((h) => [h.newVersion, h.actor, h.source, h.device, h.clientMutationId])).toEqual([
      [1, ACTOR, "crm-desktop", "phone \u001e 1", ""],
      [2, ACTOR, "crm-desktop", "phone \u001e 1", 'm-"1",\\'],
    ]);
    const thirdHistory = await store.history({ tenant: "t-columns", collection: "customers", id: "c-\u001e-third", afterSeq: 0n, limit: 10 });
    expect(thirdHistory.map((h) => h.clientMutationId)).toEqual(["NULL"]);
  });

  it("stores record times to the millisecond across PostgreSQL's range, not only near today", async () => {
    // Epoch milliseconds through float8 (to_timestamp) land a microsecond early outside ~1858-2241.
    const times = ["2253-04-27T16:22:22.456Z", "1839-05-03T04:47:49.935Z", "1969-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z", "0001-01-01T00:00:00.001Z"];
    const records = times.map((t, i) => record(`c-time-${i}`, 1, { name: t }, { name: clock(1, BigInt(i + 1)) }, [new Date(t), new Date(t)]));
    await write(records, records.map((r) => change(r, null, r.fields, [])));
    for (const expected of records) {
      const got = await store.get(expected);
      expect([got?.createTime.toISOString(), got?.updateTime.toISOString()]).toEqual([expected.createTime.toISOString(), expected.updateTime.toISOString()]);
    }
  });

  it("refuse columns of one table that differ in length, writing nothing", async () => {
    const db = await store.pool.connect();
    try {
      const before = await db.query<{ n: string }>("SELECT count(*) AS n FROM records WHERE tenant = 't-columns'");
      // Two record ids, one of everything else.
      const call = db.query(
        `SELECT * FROM deltamesh_apply_writes_columns(2, '{t-columns,t-columns}', '{customers,customers}', '{c-len-1,c-len-2}', '{1,1}', '{f,f}',
           '{0,0}', '{0,0}', '{}', '{}', ${"NULL, ".repeat(10 + 14)} NULL)`,
      );
      await expect(call).rejects.toMatchObject({ code: "22023", message: expect.stringContaining("differ in length") as unknown });
      const after = await db.query<{ n: string }>("SELECT count(*) AS n FROM records WHERE tenant = 't-columns'");
      expect(after.rows[0]!.n).toBe(before.rows[0]!.n);
    } finally {
      db.release();
    }
  });
});
