// Small helpers tests share for building requests and catching RPC errors.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import type { ValueSchema } from "../../gen/deltamesh/v1/types_pb.js";

export type ValueInit = MessageInitShape<typeof ValueSchema>;

export const str = (value: string): ValueInit => ({ kind: { case: "stringValue", value } });
export const int = (value: number | bigint): ValueInit => ({ kind: { case: "intValue", value: BigInt(value) } });
export const enm = (value: string): ValueInit => ({ kind: { case: "enumValue", value } });
export const dec = (value: string): ValueInit => ({ kind: { case: "decimalValue", value } });
export const bool = (value: boolean): ValueInit => ({ kind: { case: "boolValue", value } });

export const byId = (id: string, collection = "customers") => ({ collection, target: { case: "id" as const, value: id } });
export const byKey = (field: string, value: ValueInit, collection = "customers") => ({
  collection,
  target: { case: "identity" as const, value: { field, value } },
});

/** The error a call failed with, as a ConnectError; fails the test when the call succeeds. */
export async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail");
}
