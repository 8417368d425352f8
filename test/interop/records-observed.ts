// What a client observes running the records interop scenario, in one shape
// whatever its language: the Python scenario prints it as JSON, the grpc-js
// scenario returns it, and one set of expectations checks both.

/** A failed call: status code name, message and the decoded google.rpc details. */
export interface DecodedError {
  code: string;
  message: string;
  error_info?: { reason: string; domain: string; metadata: Record<string, string> };
  bad_request?: { field: string; reason: string; description: string }[];
  resource_info?: { type: string; name: string };
}

export interface PlainRecord {
  id: string;
  version: number;
  deleted: boolean;
  fields: Record<string, unknown>;
}

export interface RecordsObserved {
  created: { id: string; version: number; created: boolean }[];
  retry: { id: string; version: number; replayed: boolean };
  updated_version: number;
  conflict: DecodedError;
  invalid: DecodedError;
  get_by_id: PlainRecord;
  get_by_phone: PlainRecord;
  batch_get: { found: string[]; missing: string[] };
  list_north: string[];
  history: { old: number; new: number; set: string[]; source: string; device: string }[];
  not_found: DecodedError;
}
