"""Records scenario: write, hit a version conflict, read the error details, read back."""

from deltamesh.v1 import records_pb2, types_pb2
from deltamesh_client import by_id, by_key, enum, error_details, expect_failure, plain_record, string

COLLECTION = "customers"


def _mutation(ref, cmid="", expected_version=None, **fields):
    m = types_pb2.Mutation(ref=ref, client_mutation_id=cmid, source="crm-desktop", device="python-interop")
    for name, value in fields.items():
        m.set[name].CopyFrom(value)
    if expected_version is not None:
        m.expected_version = expected_version
    return m


def run(client, prefix):
    rec = client.records
    write = lambda *mutations: client.call(rec.WriteRecords, records_pb2.WriteRecordsRequest(mutations=mutations))
    out = {}

    # Two customers upserted by their ERP id in one batch.
    created = write(
        _mutation(by_key(COLLECTION, "erp_id", string(prefix + "-A")), cmid=prefix + "-create-a",
                  name=string("Li Lei"), phone=string("138 0013 8000"), region=enum("east_china")),
        _mutation(by_key(COLLECTION, "erp_id", string(prefix + "-B")), name=string("Han Meimei"), region=enum("north_china")),
    )
    out["created"] = [{"id": r.id, "version": int(r.version), "created": r.created} for r in created.results]
    a_id = created.results[0].id

    # A retry with the same client_mutation_id returns the first outcome.
    retried = write(
        _mutation(by_key(COLLECTION, "erp_id", string(prefix + "-A")), cmid=prefix + "-create-a",
                  name=string("Li Lei"), phone=string("138 0013 8000"), region=enum("east_china")),
    )
    out["retry"] = {"id": retried.results[0].id, "version": int(retried.results[0].version), "replayed": retried.results[0].replayed}

    updated = write(_mutation(by_id(COLLECTION, a_id), expected_version=1, level=enum("key")))
    out["updated_version"] = int(updated.results[0].version)

    # Optimistic concurrency: a writer still at version 1 is refused.
    out["conflict"] = expect_failure(lambda: write(_mutation(by_id(COLLECTION, a_id), expected_version=1, level=enum("regular"))))

    # Bad input: every violation comes back as a BadRequest field violation.
    out["invalid"] = expect_failure(
        lambda: write(_mutation(by_key(COLLECTION, "erp_id", string(prefix + "-C")), name=string("X"),
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
