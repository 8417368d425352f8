// Descriptors the transport tests need that the project does not generate:
// a server-streaming test service (RecordService is unary only) and the
// grpc.reflection.v1 messages for a reflection client. Built by hand as
// FileDescriptorProtos and hydrated with protobuf-es, so they are real
// DescService/DescMessage values usable with toBinary/fromBinary and the
// transports.
import {
  create,
  createFileRegistry,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescService,
  type Message,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorProtoSchema,
  FieldDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";

type FieldInit = { name: string; number: number; type: Type; typeName?: string; repeated?: boolean; oneofIndex?: number };

function field(f: FieldInit) {
  return create(FieldDescriptorProtoSchema, {
    name: f.name,
    number: f.number,
    type: f.type,
    label: f.repeated ? Label.REPEATED : Label.OPTIONAL,
    ...(f.typeName ? { typeName: f.typeName } : {}),
    ...(f.oneofIndex !== undefined ? { oneofIndex: f.oneofIndex } : {}),
    jsonName: f.name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
  });
}

// ---- deltamesh.test.v1.StreamTestService -----------------------------------

const streamFile = create(FileDescriptorProtoSchema, {
  name: "deltamesh/test/v1/stream_test.proto",
  package: "deltamesh.test.v1",
  syntax: "proto3",
  messageType: [
    {
      name: "CountRequest",
      field: [
        field({ name: "count", number: 1, type: Type.INT32 }),
        field({ name: "payload_bytes", number: 2, type: Type.INT32 }),
        field({ name: "pre_encoded", number: 3, type: Type.BOOL }),
        field({ name: "fail_at", number: 4, type: Type.INT32 }),
      ],
    },
    {
      name: "CountResponse",
      field: [field({ name: "n", number: 1, type: Type.INT32 }), field({ name: "payload", number: 2, type: Type.BYTES })],
    },
  ],
  service: [
    {
      name: "StreamTestService",
      method: [
        {
          name: "Count",
          inputType: ".deltamesh.test.v1.CountRequest",
          outputType: ".deltamesh.test.v1.CountResponse",
          serverStreaming: true,
        },
      ],
    },
  ],
});

const streamRegistry = createFileRegistry(streamFile, () => undefined);

function mustMessage(registry: ReturnType<typeof createFileRegistry>, name: string): DescMessage {
  const m = registry.getMessage(name);
  if (!m) throw new Error(`no message ${name}`);
  return m;
}

export type CountRequest = Message<"deltamesh.test.v1.CountRequest"> & {
  count: number;
  payloadBytes: number;
  preEncoded: boolean;
  failAt: number;
};
export type CountResponse = Message<"deltamesh.test.v1.CountResponse"> & { n: number; payload: Uint8Array };

export const CountRequestSchema = mustMessage(streamRegistry, "deltamesh.test.v1.CountRequest");
export const CountResponseSchema = mustMessage(streamRegistry, "deltamesh.test.v1.CountResponse");
const streamService = streamRegistry.getService("deltamesh.test.v1.StreamTestService");
if (!streamService) throw new Error("no StreamTestService");
export const StreamTestService: DescService = streamService;
export const CountMethod = streamService.methods[0] as DescMethodServerStreaming;

// ---- grpc.reflection.v1 (the subset a client needs) -------------------------

const reflectionFile = create(FileDescriptorProtoSchema, {
  name: "grpc/reflection/v1/reflection.proto",
  package: "grpc.reflection.v1",
  syntax: "proto3",
  messageType: [
    {
      name: "ServerReflectionRequest",
      field: [
        field({ name: "host", number: 1, type: Type.STRING }),
        field({ name: "file_by_filename", number: 3, type: Type.STRING, oneofIndex: 0 }),
        field({ name: "file_containing_symbol", number: 4, type: Type.STRING, oneofIndex: 0 }),
        field({ name: "list_services", number: 7, type: Type.STRING, oneofIndex: 0 }),
      ],
      oneofDecl: [{ name: "message_request" }],
    },
    {
      name: "ServerReflectionResponse",
      field: [
        field({ name: "valid_host", number: 1, type: Type.STRING }),
        field({ name: "file_descriptor_response", number: 4, type: Type.MESSAGE, typeName: ".grpc.reflection.v1.FileDescriptorResponse", oneofIndex: 0 }),
        field({ name: "list_services_response", number: 6, type: Type.MESSAGE, typeName: ".grpc.reflection.v1.ListServiceResponse", oneofIndex: 0 }),
        field({ name: "error_response", number: 7, type: Type.MESSAGE, typeName: ".grpc.reflection.v1.ErrorResponse", oneofIndex: 0 }),
      ],
      oneofDecl: [{ name: "message_response" }],
    },
    { name: "FileDescriptorResponse", field: [field({ name: "file_descriptor_proto", number: 1, type: Type.BYTES, repeated: true })] },
    {
      name: "ListServiceResponse",
      field: [field({ name: "service", number: 1, type: Type.MESSAGE, typeName: ".grpc.reflection.v1.ServiceResponse", repeated: true })],
    },
    { name: "ServiceResponse", field: [field({ name: "name", number: 1, type: Type.STRING })] },
    {
      name: "ErrorResponse",
      field: [field({ name: "error_code", number: 1, type: Type.INT32 }), field({ name: "error_message", number: 2, type: Type.STRING })],
    },
  ],
});

const reflectionRegistry = createFileRegistry(reflectionFile, () => undefined);

export type ServerReflectionRequest = Message<"grpc.reflection.v1.ServerReflectionRequest"> & {
  host: string;
  messageRequest:
    | { case: "fileByFilename"; value: string }
    | { case: "fileContainingSymbol"; value: string }
    | { case: "listServices"; value: string }
    | { case: undefined; value?: undefined };
};
export type ServerReflectionResponse = Message<"grpc.reflection.v1.ServerReflectionResponse"> & {
  validHost: string;
  messageResponse:
    | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
    | { case: "listServicesResponse"; value: { service: { name: string }[] } }
    | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } }
    | { case: undefined; value?: undefined };
};

export const ServerReflectionRequestSchema = mustMessage(reflectionRegistry, "grpc.reflection.v1.ServerReflectionRequest");
export const ServerReflectionResponseSchema = mustMessage(reflectionRegistry, "grpc.reflection.v1.ServerReflectionResponse");
export const REFLECTION_V1_PATH = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
export const REFLECTION_V1ALPHA_PATH = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
