// The records interop scenario through a proto-loader client; the same steps
// as test/interop/python/scenario_records.py, observed in the same shape.
import type { RecordsObserved } from "../records-observed.js";
import { expectFailure, type Plain, type ProtoLoaderClient } from "./client.js";
import { byId, byKey, COLLECTION, enumValue, mutation, plainRecord, RECORDS as SERVICE, string } from "./messages.js";

type Result = { id: string; version: string; created?: boolean; replayed?: boolean };

export async function runRecordsScenario(client: ProtoLoaderClient, prefix: string): Promise<RecordsObserved> {
  const writeRecords = client.unary(SERVICE, "WriteRecords");
  const getRecord = client.unary(SERVICE, "GetRecord");
  const write = async (...mutations: Plain[]): Promise<Result[]> => (await writeRecords({ mutations })).results as Result[];

  const aKey = byKey("erp_id", string(`${prefix}-A`));
  const aFields = { name: string("Li Lei"), phone: string("138 0013 8000"), region: enumValue("east_china") };
  const created = await write(
    mutation(aKey, aFields, { cmid: `${prefix}-create-a` }),
    mutation(byKey("erp_id", string(`${prefix}-B`)), { name: string("Han Meimei"), region: enumValue("north_china") }),
  );
  const aId = created[0]!.id;
  const [retried] = await write(mutation(aKey, aFields, { cmid: `${prefix}-create-a` }));
  const [updated] = await write(mutation(byId(aId), { level: enumValue("key") }, { expectedVersion: 1 }));
  const conflict = await expectFailure(write(mutation(byId(aId), { level: enumValue("regular") }, { expectedVersion: 1 })));
  const invalid = await expectFailure(
    write(mutation(byKey("erp_id", string(`${prefix}-C`)), { name: string("X"), phone: string("12"), region: enumValue("mars") })),
  );

  const batch = await client.unary(SERVICE, "BatchGetRecords")({ refs: [byId(aId), byKey("erp_id", string(`${prefix}-missing`))] });
  const listed = await client.unary(SERVICE, "ListRecords")({
    collection: COLLECTION,
    filters: [{ field: "region", value: enumValue("north_china") }],
  });
  const history = await client.unary(SERVICE, "GetRecordHistory")({ ref: byId(aId) });

  return {
    created: created.map((r) => ({ id: r.id, version: Number(r.version), created: r.created === true })),
    retry: { id: retried!.id, version: Number(retried!.version), replayed: retried!.replayed === true },
    updated_version: Number(updated!.version),
    conflict,
    invalid,
    get_by_id: plainRecord((await getRecord({ ref: byId(aId) })).record as Plain),
    get_by_phone: plainRecord((await getRecord({ ref: byKey("phone", string("13800138000")) })).record as Plain),
    batch_get: {
      found: (batch.records as Plain[]).map((r) => String(r.id)),
      missing: ((batch.missing ?? []) as Plain[]).map((m) => String(((m.identity as Plain).value as Plain).string_value)),
    },
    list_north: (listed.records as Plain[]).map((r) => String(plainRecord(r).fields.name)),
    history: (history.changes as Plain[]).map((c) => ({
      old: Number(c.old_version ?? 0),
      new: Number(c.new_version),
      set: Object.keys((c.set ?? {}) as Plain).sort(),
      source: String(c.source),
      device: String(c.device),
    })),
    not_found: await expectFailure(getRecord({ ref: byKey("erp_id", string(`${prefix}-missing`)) })),
  };
}
