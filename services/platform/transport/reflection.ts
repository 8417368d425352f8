// Server reflection (grpc.reflection.v1 and v1alpha) fed with the exact file
// descriptors protobuf-es generated. @grpc/reflection is normally fed by
// @grpc/proto-loader, whose protobufjs-rebuilt descriptors misname map entries
// (`Fields` instead of `FieldsEntry`), which strict clients (grpcurl, Go,
// Python) reject. It only reads `fileDescriptorProtos` from the package
// definition entries it is given, so we give it one entry per file.
import { toBinary, type DescFile, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";
import type { Server } from "@grpc/grpc-js";
import { file_google_rpc_error_details } from "../../../gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "../../../gen/google/rpc/status_pb.js";

type PackageDefinition = ConstructorParameters<typeof ReflectionService>[0];

/** `files` and all their imports, each once, dependencies first. */
export function transitiveFiles(files: Iterable<DescFile>): DescFile[] {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    for (const d of f.dependencies) visit(d);
    seen.set(f.name, f);
  };
  for (const f of files) visit(f);
  return [...seen.values()];
}

/** Serialized FileDescriptorProtos, exactly as generated (plus their imports). */
export function encodedFileDescriptors(files: Iterable<DescFile>): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of transitiveFiles(files)) out.set(f.proto.name, Buffer.from(toBinary(FileDescriptorProtoSchema, f.proto)));
  return out;
}

/**
 * Add reflection for `services` to a grpc-js server. The google.rpc status and
 * error-detail files are included so clients can resolve error details.
 */
export function addReflection(server: Server, services: readonly DescService[]): void {
  const files = [...services.map((s) => s.file), file_google_rpc_status, file_google_rpc_error_details];
  const pkg: Record<string, unknown> = {};
  for (const [name, bin] of encodedFileDescriptors(files)) {
    pkg[`file:${name}`] = { format: "Protocol Buffer 3 FileDescriptorProto", type: {}, fileDescriptorProtos: [bin] };
  }
  const reflection = new ReflectionService(pkg as unknown as PackageDefinition, {
    services: services.map((s) => s.typeName),
  });
  reflection.addToServer(server);
}
