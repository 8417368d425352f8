"""A small deltamesh client over the stubs protoc generates from proto/.

What an integrator writes once: a channel with the caller's identity in
metadata, Value helpers, and decoding of the google.rpc.Status that the
server puts in the `grpc-status-details-bin` trailer (ErrorInfo, BadRequest,
ResourceInfo).
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from deltamesh.v1 import conflicts_pb2_grpc, records_pb2_grpc, types_pb2  # noqa: E402

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


def plain_record(record):
    return {
        "id": record.id,
        "version": int(record.version),
        "deleted": record.deleted,
        "fields": {k: plain(v) for k, v in sorted(record.fields.items())},
    }


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
