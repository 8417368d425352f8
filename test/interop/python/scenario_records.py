"""Records scenario: write, hit a version conflict, read the error details, read back."""

from deltamesh.v1 import records_pb2
from deltamesh_client import by_id, by_key, enum, expect_failure, mutation, plain_record, string

COLLECTION = "customers"


def run(client, args):
    prefix = args.prefix
    rec = client.records
    write = lambda *mutations: client.call(rec.WriteRecords, records_pb2.WriteRecordsRequest(mutations=mutations))
    out = {}

    # Two customers upserted by their ERP id in one batch.
    created = write(
        mutation(by_key(COLLECTION, "erp_id", string(prefix + "-A")), cmid=prefix + "-create-a",
                 name=string("Li Lei"), phone=string("138 0013 8000"), region=enum("east_china")),
        mutation(by_key(COLLECTION, "erp_id", string(prefix + "-B")), name=string("Han Meimei"), region=enum("north_china")),
    )
    out["created"] = [{"id": r.id, "version": int(r.version), "created": r.created} for r in created.results]
    a_id = created.results[0].id

    # A retry with the same client_mutation_id returns the first outcome.
    retried = write(
        mutation(by_key(COLLECTION, "erp_id", string(prefix + "-A")), cmid=prefix + "-create-a",
                 name=string("Li Lei"), phone=string("138 0013 8000"), region=enum("east_china")),
    )
    out["retry"] = {"id": retried.results[0].id, "version": int(retried.results[0].version), "replayed": retried.results[0].replayed}

    updated = write(mutation(by_id(COLLECTION, a_id), expected_version=1, level=enum("key")))
    out["updated_version"] = int(updated.results[0].version)

    # Optimistic concurrency: a writer still at version 1 is refused.
    out["conflict"] = expect_failure(lambda: write(mutation(by_id(COLLECTION, a_id), expected_version=1, level=enum("regular"))))

    # Bad input: every violation comes back as a BadRequest field violation.
    out["invalid"] = expect_failure(
        lambda: write(mutation(by_key(COLLECTION, "erp_id", string(prefix + "-C")), name=string("X"),
                               phone=string("12"), region=enum("mars")))
    )

    out["get_by_id"] = plain_record(client.call(rec.GetRecord, records_pb2.GetRecordRequest(ref=by_id(COLLECTION, a_id))).record)
    out["get_by_phone"] = plain_record(
        client.call(rec.GetRecord, records_pb2.GetRecordRequest(ref=by_key(COLLECTION, "phone", string("13800138000")))).record
    )
    batch = client.call(
        rec.BatchGetRecords,
        records_pb2.BatchGetRecordsRequest(refs=[by_id(COLLECTION, a_id), by_key(COLLECTION, "erp_id", string(prefix + "-missing"))]),
    )
    out["batch_get"] = {"found": [r.id for r in batch.records], "missing": [m.identity.value.string_value for m in batch.missing]}
    listed = client.call(
        rec.ListRecords,
        records_pb2.ListRecordsRequest(collection=COLLECTION, filters=[records_pb2.FieldFilter(field="region", value=enum("north_china"))]),
    )
    out["list_north"] = [plain_record(r)["fields"]["name"] for r in listed.records]
    history = client.call(rec.GetRecordHistory, records_pb2.GetRecordHistoryRequest(ref=by_id(COLLECTION, a_id)))
    out["history"] = [
        {"old": int(c.old_version), "new": int(c.new_version), "set": sorted(c.set.keys()), "source": c.source, "device": c.device}
        for c in history.changes
    ]
    out["not_found"] = expect_failure(
        lambda: client.call(rec.GetRecord, records_pb2.GetRecordRequest(ref=by_key(COLLECTION, "erp_id", string(prefix + "-missing"))))
    )
    return out
