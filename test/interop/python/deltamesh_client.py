"""A small deltamesh client over the stubs protoc generates from proto/.

What an integrator writes once: a channel with the caller's identity in
metadata, Value and Mutation helpers, reading a change stream, and decoding
of the google.rpc.Status that the server puts in the `grpc-status-details-bin`
trailer (ErrorInfo, BadRequest, ResourceInfo).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from deltamesh.v1 import changes_pb2_grpc, conflicts_pb2_grpc, records_pb2_grpc, types_pb2  # noqa: E402

DETAILS_TRAILER = "grpc-status-details-bin"


class Client:
    """Stubs of every deltamesh service on one channel, with identity metadata."""

    def __init__(self, target, token="", tenant="", subject=""):
        self.channel = grpc.insecure_channel(target)
        # A bearer token, as a production node verifies it; the x-deltamesh-*
        # headers are only read by a node in development mode.
        self.metadata = tuple(
            (k, v)
            for k, v in (
                ("authorization", f"Bearer {token}" if token else ""),
                ("x-deltamesh-tenant", tenant),
                ("x-deltamesh-subject", subject),
            )
            if v
        )
        self.records = records_pb2_grpc.RecordServiceStub(self.channel)
        self.conflicts = conflicts_pb2_grpc.ConflictServiceStub(self.channel)
        self.changes = changes_pb2_grpc.ChangeServiceStub(self.channel)

    def call(self, method, request, timeout=15):
        return method(request, metadata=self.metadata, timeout=timeout)

    def close(self):
        self.channel.close()


def string(v):
    return types_pb2.Value(string_value=v)


def enum(v):
    return types_pb2.Value(enum_value=v)


def integer(v):
    return types_pb2.Value(int_value=v)


def by_id(collection, record_id):
    return types_pb2.RecordRef(collection=collection, id=record_id)


def by_key(collection, field, value):
    return types_pb2.RecordRef(collection=collection, identity=types_pb2.IdentityKey(field=field, value=value))


def plain(value):
    """A Value as plain JSON-able data (what a report or an assertion needs)."""
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "int_value":
        return int(value.int_value)
    if kind == "string_list_value":
        return list(value.string_list_value.values)
    if kind == "timestamp_value":
        return value.timestamp_value.ToJsonString()
    return getattr(value, kind)


def plain_values(values):
    """A map<string, Value> as plain data."""
    return {k: plain(v) for k, v in sorted(values.items())}


def plain_record(record):
    return {"id": record.id, "version": int(record.version), "deleted": record.deleted, "fields": plain_values(record.fields)}


def mutation(ref, cmid="", expected_version=None, **fields):
    """A Mutation of the interop scenarios: from the desktop CRM, on this client's device."""
    m = types_pb2.Mutation(ref=ref, client_mutation_id=cmid, source="crm-desktop", device="python-interop")
    for name, value in fields.items():
        m.set[name].CopyFrom(value)
    if expected_version is not None:
        m.expected_version = expected_version
    return m


def write_outcome(result):
    """An applied mutation's id, version and change-log cursor (to resume a stream right after it)."""
    return {"id": result.id, "version": int(result.version), "cursor": result.cursor}


def plain_event(event):
    """A ChangeEvent as plain data: its kind (the oneof case), cursor and what the kind carries."""
    kind = event.WhichOneof("kind")
    out = {"kind": kind, "cursor": event.cursor}
    body = getattr(event, kind)
    if kind == "upsert":
        out.update(id=body.id, version=int(body.version), created=body.created, set=plain_values(body.set),
                   masked_fields=list(body.masked_fields))
    elif kind in ("enter_scope", "snapshot_record"):
        r = body.record
        out.update(id=r.id, version=int(r.version), fields=plain_values(r.fields), masked_fields=list(r.masked_fields))
    elif kind in ("delete", "leave_scope"):
        out.update(id=body.id, version=int(body.version))
    elif kind == "snapshot_end":
        out["record_count"] = int(body.record_count)
    return out


class EventStream:
    """A ChangeService.Subscribe call whose events are read on demand.

    The call's deadline bounds every wait: an event that never comes fails
    the read with DEADLINE_EXCEEDED instead of hanging.
    """

    def __init__(self, client, request, timeout=30):
        self.call = client.changes.Subscribe(request, metadata=client.metadata, timeout=timeout)
        self.events = []

    def read_until(self, done):
        """Reads messages until done(events) holds for the events read so far."""
        while not done(self.events):
            message = next(self.call, None)
            if message is None:
                raise AssertionError("the stream ended")
            self.events.extend(plain_event(e) for e in message.events)

    def cancel(self):
        """Disconnects."""
        self.call.cancel()


def error_details(err):
    """A failed call's status and its google.rpc details, decoded from the trailer."""
    out = {"code": err.code().name, "message": err.details()}
    raw = dict(err.trailing_metadata() or ()).get(DETAILS_TRAILER)
    if raw is None:
        return out
    status = status_pb2.Status.FromString(raw)
    for any_detail in status.details:
        for name, cls in (
            ("error_info", error_details_pb2.ErrorInfo),
            ("bad_request", error_details_pb2.BadRequest),
            ("resource_info", error_details_pb2.ResourceInfo),
        ):
            if any_detail.Is(cls.DESCRIPTOR):
                detail = cls()
                any_detail.Unpack(detail)
                out[name] = detail
    if "error_info" in out:
        info = out["error_info"]
        out["error_info"] = {"reason": info.reason, "domain": info.domain, "metadata": dict(info.metadata)}
    if "bad_request" in out:
        out["bad_request"] = [
            {"field": v.field, "reason": v.reason, "description": v.description}
            for v in out["bad_request"].field_violations
        ]
    if "resource_info" in out:
        r = out["resource_info"]
        out["resource_info"] = {"type": r.resource_type, "name": r.resource_name}
    return out


def expect_failure(fn):
    """Runs fn, which must fail with an RPC error; returns the decoded error."""
    try:
        fn()
    except grpc.RpcError as err:
        return error_details(err)
    raise AssertionError("expected the call to fail")
