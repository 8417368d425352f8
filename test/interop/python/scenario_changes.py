"""Changes scenario: subscribe, disconnect, resume from a cursor without loss;
read a masked field as masked, by GetRecord and on a stream.

`client` writes and subscribes as the tenant's administrator; a second client
calls with --masked-token, as a principal who sees phones masked. The written
values are those of CHANGES_INPUT in test/interop/changes-observed.ts.
"""

import secrets

from deltamesh.v1 import changes_pb2, records_pb2
from deltamesh_client import Client, EventStream, by_id, by_key, enum, mutation, plain_record, string, write_outcome

COLLECTION = "customers"
NAMES = ("Zhang Wei", "Wang Fang")
REGION = "east_china"
MISSED_NOTES = "called back while the client was offline"


def _upserts_of(written):
    """True once an upsert of each written record's version arrived."""
    return lambda events: all(
        any(e["kind"] == "upsert" and e["id"] == w["id"] and e["version"] == w["version"] for e in events) for w in written
    )


def run(client, args):
    if not args.masked_token:
        raise SystemExit("the changes scenario needs --masked-token")
    masked = Client(args.target, token=args.masked_token)
    write = lambda *mutations: [
        write_outcome(r)
        for r in client.call(client.records.WriteRecords, records_pb2.WriteRecordsRequest(mutations=mutations)).results
    ]
    # Unique to the run: the department the streams filter on, and the phones (identity keys).
    nonce = secrets.randbelow(10**8)
    department = "%s-dept-%d" % (args.prefix, nonce)
    phones = ["+86138%08d" % ((nonce + i) % 10**8) for i in range(3)]
    streams = []

    def subscribe(who, heartbeat_ms=0, **start):
        query = changes_pb2.CollectionQuery(
            collection=COLLECTION, filters=[records_pb2.FieldFilter(field="department", value=string(department))]
        )
        stream = EventStream(who, changes_pb2.SubscribeRequest(collections=[query], heartbeat_interval_ms=heartbeat_ms, **start))
        streams.append(stream)
        return stream

    try:
        # 1. From now: the first message (a heartbeat) says where the stream
        # stands; then two records are written and their upserts read.
        first = subscribe(client, from_now=changes_pb2.StartFromNow())
        first.read_until(lambda events: len(events) > 0)
        written = write(
            *(
                mutation(by_key(COLLECTION, "phone", string(phones[i])), name=string(name), region=enum(REGION), department=string(department))
                for i, name in enumerate(NAMES)
            )
        )
        first.read_until(_upserts_of(written))
        remembered = first.events[-1]["cursor"]
        first.cancel()

        # 2. While disconnected, the first record changes; a stream resumed
        # after the remembered cursor (with short heartbeats, which are
        # skipped) must bring that change next.
        [missed] = write(mutation(by_id(COLLECTION, written[0]["id"]), notes=string(MISSED_NOTES)))
        resumed = subscribe(client, heartbeat_ms=250, after_cursor=remembered)
        resumed.read_until(lambda events: any(e["kind"] != "heartbeat" for e in events))

        # 3. As the principal who sees phones masked: a read, and a snapshot stream.
        got = masked.call(masked.records.GetRecord, records_pb2.GetRecordRequest(ref=by_id(COLLECTION, written[0]["id"]))).record
        masked_stream = subscribe(masked, snapshot=changes_pb2.StartWithSnapshot())
        masked_stream.read_until(lambda events: any(e["kind"] == "snapshot_end" for e in events))

        # A live phone change: it ends what the resumed stream is read for,
        # and reaches the masked stream as an upsert.
        [marker] = write(mutation(by_id(COLLECTION, written[1]["id"]), phone=string(phones[2])))
        resumed.read_until(_upserts_of([marker]))
        masked_stream.read_until(_upserts_of([marker]))

        return {
            "department": department,
            "phones": phones,
            "written": written,
            "first": first.events,
            "remembered_cursor": remembered,
            "missed": missed,
            "resumed": resumed.events,
            "marker": marker,
            "masked_get": {"record": plain_record(got), "masked_fields": list(got.masked_fields)},
            "masked_stream": masked_stream.events,
        }
    finally:
        for stream in streams:
            stream.cancel()
        masked.close()
