"""Introspection scenario: the standard health service, and server reflection
read by a strict client: every file descriptor the server reflects is loaded
into a fresh descriptor pool (which refuses malformed descriptors such as
misnamed map entries), and a record is written and read back through message
classes built only from those descriptors, as grpcurl or any dynamic client does.
"""

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from health.v1 import health_pb2, health_pb2_grpc
import reflection_pb2
import reflection_pb2_grpc
from deltamesh_client import error_details


def _health(client):
    stub = health_pb2_grpc.HealthStub(client.channel)
    out = {}
    for service in ("", "deltamesh.v1.RecordService", "deltamesh.v1.ConflictService"):
        res = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        out[service or "(node)"] = health_pb2.HealthCheckResponse.ServingStatus.Name(res.status)
    try:
        stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        out["unknown"] = "answered"
    except grpc.RpcError as err:
        out["unknown"] = err.code().name
    return out


def _reflect(client):
    """Service names and every FileDescriptorProto they need, by name."""
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)

    def ask(**what):
        responses = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**what)]), timeout=10))
        assert len(responses) == 1, responses
        res = responses[0]
        if res.HasField("error_response"):
            raise AssertionError("reflection error: %s" % res.error_response.error_message)
        return res

    services = [s.name for s in ask(list_services="").list_services_response.service]
    files = {}

    def take(res):
        for raw in res.file_descriptor_response.file_descriptor_proto:
            f = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files.setdefault(f.name, f)

    for name in services:
        take(ask(file_containing_symbol=name))
    # Imports the server did not send along are asked for by name.
    missing = [d for f in list(files.values()) for d in f.dependency if d not in files]
    while missing:
        take(ask(file_by_filename=missing.pop()))
        missing = [d for f in list(files.values()) for d in f.dependency if d not in files]
    return services, files


def _strict_pool(files):
    pool = descriptor_pool.DescriptorPool()
    added = set()

    def add(name):
        if name in added:
            return
        for dep in files[name].dependency:
            add(dep)
        pool.Add(files[name])
        added.add(name)

    for name in sorted(files):
        add(name)
    return pool


def _dynamic_unary(client, pool, factory, service_name, method_name, request_fields):
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_cls = factory.GetPrototype(method.input_type)
    response_cls = factory.GetPrototype(method.output_type)
    call = client.channel.unary_unary(
        "/%s/%s" % (service_name, method_name),
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_cls.FromString,
    )
    request = request_cls()
    request_fields(request)
    return call(request, metadata=client.metadata, timeout=10)


def run(client, args):
    prefix = args.prefix
    out = {"health": _health(client)}
    services, files = _reflect(client)
    out["services"] = sorted(services)
    out["files"] = sorted(files)
    pool = _strict_pool(files)
    record = pool.FindMessageTypeByName("deltamesh.v1.Record")
    entry = record.fields_by_name["fields"].message_type
    out["record_fields_entry"] = {"name": entry.name, "map_entry": entry.GetOptions().map_entry}
    out["methods"] = {s: sorted(m.name for m in pool.FindServiceByName(s).methods) for s in sorted(services)}

    factory = message_factory.MessageFactory(pool)

    def write(req):
        m = req.mutations.add()
        m.ref.collection = "customers"
        m.ref.identity.field = "erp_id"
        m.ref.identity.value.string_value = prefix + "-reflected"
        m.set["name"].string_value = "Reflected Client"
        m.set["region"].enum_value = "south_china"
        m.source = "crm-desktop"

    written = _dynamic_unary(client, pool, factory, "deltamesh.v1.RecordService", "WriteRecords", write)
    record_id = written.results[0].id

    def get(req):
        req.ref.collection = "customers"
        req.ref.id = record_id

    got = _dynamic_unary(client, pool, factory, "deltamesh.v1.RecordService", "GetRecord", get)
    out["dynamic_roundtrip"] = {
        "created": written.results[0].created,
        "name": got.record.fields["name"].string_value,
        "region": got.record.fields["region"].enum_value,
    }
    def get_missing(req):
        req.ref.collection = "customers"
        req.ref.id = prefix + "-no-such-id"

    try:
        _dynamic_unary(client, pool, factory, "deltamesh.v1.RecordService", "GetRecord", get_missing)
        out["dynamic_not_found"] = None
    except grpc.RpcError as err:
        out["dynamic_not_found"] = error_details(err)
    return out
