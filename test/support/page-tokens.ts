// Page tokens in tests: forging a sealed token with a position a test node
// would never issue (as someone holding the cluster's secret could), looking
// at what a token shows a client, and the refusal a bad token must get.
import type { ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { PageTokens } from "../../services/platform/page-token.js";
import { TEST_MASK_HASH_KEY } from "./node.js";

const sealer = new PageTokens(new TextEncoder().encode(TEST_MASK_HASH_KEY));

/**
 * A token a test node opens, for `query` (the handler's query object, as the
 * handler builds it) continuing after `after`.
 */
export function forgedToken(query: unknown, after: string): string {
  return sealer.encode(query, after);
}

/** What a client can read of a token: its bytes, as text. */
export function tokenBytes(token: string): string {
  return Buffer.from(token, "base64url").toString("latin1");
}

/** A refusal's code, ErrorInfo reason and field violations ("field: REASON"), to compare whole. */
export function refusal(e: ConnectError): { code: number; reason: string | undefined; violations: string[] } {
  return {
    code: e.code,
    reason: e.findDetails(ErrorInfoSchema)[0]?.reason,
    violations: e.findDetails(BadRequestSchema)[0]?.fieldViolations.map((v) => `${v.field}: ${v.reason}`) ?? [],
  };
}
