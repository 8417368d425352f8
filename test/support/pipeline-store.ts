// A record store on a fresh test database with the default schemas, for
// tests that drive a WritePipeline in their own process: opened before the
// file's tests, closed after them.
import { afterAll, beforeAll } from "vitest";
import { DEFAULT_CONFIG_PATH, readConfigFile } from "../../services/config/file-source.js";
import type { SchemaSet } from "../../services/schema/index.js";
import { RecordStore } from "../../services/store/record-store.js";
import { testDatabaseUrl } from "./env.js";

export interface PipelineStore {
  readonly store: RecordStore;
  readonly schemas: SchemaSet;
}

export function usePipelineStore(): PipelineStore {
  let store: RecordStore | undefined;
  let schemas: SchemaSet | undefined;
  beforeAll(async () => {
    store = await RecordStore.open({ url: await testDatabaseUrl() });
    schemas = (await readConfigFile(DEFAULT_CONFIG_PATH)).schemas;
  });
  afterAll(async () => {
    await store?.close();
  });
  const opened = <T,>(value: T | undefined): T => {
    if (value === undefined) throw new Error("usePipelineStore: used before the file's beforeAll ran");
    return value;
  };
  return {
    get store() {
      return opened(store);
    },
    get schemas() {
      return opened(schemas);
    },
  };
}
