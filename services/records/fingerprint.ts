// What a client_mutation_id stands for. A write retried with the same id is
// answered with the first outcome and writes nothing; that is only right when
// it is the same write from the same caller. Anything else reusing the id
// (another principal, another record, other values) is refused rather than
// answered with someone else's result while its own write is dropped.
import { createHash } from "node:crypto";
import type { MutationInput } from "./model.js";

/**
 * A digest of the caller and what the mutation asks for: which record, which
 * values (after normalization, so "138 0013 8000" and "+8613800138000"
 * match), delete or not, from which source and device. Its preconditions
 * and edit time are left out: a retry may legitimately restate them (an
 * import resumed after a crash no longer knows the base version its earlier
 * rows produced), and the first outcome stands either way.
 */
export function mutationFingerprint(actor: string, m: MutationInput): string {
  const target = "id" in m.target ? ["id", m.target.id] : ["identity", m.target.identity.field, m.target.identity.value];
  // Protobuf maps have no order: a retry may list the same fields differently.
  const set = Object.keys(m.set)
    .sort()
    .map((k) => [k, m.set[k]]);
  const canonical = JSON.stringify([
    actor,
    m.collection,
    target,
    set,
    [...m.clear].sort(),
    m.delete,
    m.source,
    m.device,
    m.resolvesTicket ?? null,
  ]);
  return createHash("sha256").update(canonical).digest("base64url").slice(0, 22);
}
