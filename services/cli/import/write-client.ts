// The import's WriteRecords calls over grpc-js, with the request encoded and
// the response decoded by ./wire.ts instead of the reflective codec. Errors
// arrive as ConnectError with their google.rpc details, as from every client.
import * as grpc from "@grpc/grpc-js";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { fromGrpcError } from "../../platform/transport/grpc-client.js";
import { decodeWriteResults, encodeWriteRequest, type ImportMutation, type ResultSummary } from "./wire.js";

const WRITE_PATH = `/${RecordService.typeName}/${RecordService.method.writeRecords.name}`;

export interface ImportWriteClient {
  write(mutations: ImportMutation[]): Promise<ResultSummary[]>;
  close(): void;
}

export function createImportWriteClient(address: string, headers: Record<string, string>, timeoutMs = 120_000): ImportWriteClient {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    // Responses of large batches exceed grpc-js's 4 MiB default only with very large rows; allow them.
    "grpc.max_receive_message_length": 64 << 20,
  });
  return {
    write(mutations) {
      const metadata = new grpc.Metadata();
      for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(WRITE_PATH, encodeWriteRequest, decodeWriteResults, mutations, metadata, { deadline: Date.now() + timeoutMs }, (err, res) =>
          err ? reject(fromGrpcError(err)) : resolve(res!),
        );
      });
    },
    close: () => client.close(),
  };
}
