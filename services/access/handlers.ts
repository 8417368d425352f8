// AccessService handlers: translate protobuf <-> the access domain and call
// the config source, the policy engine and the audit store. No SQL here.
import { create } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AccessService,
  CheckAccessResponseSchema,
  ExplainAccessResponseSchema,
  GetCallerResponseSchema,
  GetPolicyResponseSchema,
  PutPolicyResponseSchema,
  QueryAuditLogResponseSchema,
  VerifyAuditLogResponseSchema,
  type AccessQuestion,
} from "../../gen/deltamesh/v1/access_pb.js";
import type { ConfigSource } from "../config/source.js";
import { DomainError, invalidArgument, type FieldViolation } from "../platform/errors.js";
import { pageSize, positions, type PageTokens } from "../platform/page-token.js";
import { collectionOf, decodeRef } from "../records/convert.js";
import { decodeFieldMap, timestampToText } from "../schema/values.js";
import { identityKeyString, type RecordStore } from "../store/record-store.js";
import type { AuditStore } from "../store/audit-store.js";
import { verifyChain } from "./audit-chain.js";
import type { AccessControl, CallAccess } from "./control.js";
import {
  actionFromPb,
  auditEntryToPb,
  decisionToPb,
  KIND_FROM_PB,
  policyDocToPb,
  policyPbToDoc,
  principalFromPb,
  principalToPb,
  traceToPb,
} from "./convert.js";
import { explain, type Explanation } from "./explain.js";
import { POLICIES_SECTION } from "./policy-load.js";
import type { Fields } from "./view.js";

export interface AccessServiceDeps {
  config: ConfigSource;
  access: AccessControl;
  store: RecordStore;
  audit: AuditStore;
  pageTokens: PageTokens;
}

/** Entries read per round trip when verifying the chain. */
const VERIFY_PAGE = 2000;

/** A time filter as a Date (undefined when unset); one outside the protobuf Timestamp range is INVALID_ARGUMENT. */
function filterTime(ts: Timestamp | undefined, field: string): Date | undefined {
  if (!ts) return undefined;
  if (timestampToText(ts) === null) {
    throw invalidArgument(`${field} is out of range`, [
      { field, description: "a timestamp from year 1 to 9999 with nanos from 0 to 999,999,999", reason: "OUT_OF_RANGE" },
    ]);
  }
  return timestampDate(ts);
}

export function createAccessService(deps: AccessServiceDeps): ServiceImpl<typeof AccessService> {
  /** Answers a question about the caller, or (admins) about another principal of its tenant. */
  async function answer(access: CallAccess, q: AccessQuestion | undefined): Promise<Explanation> {
    if (!q) throw invalidArgument("question is required", [{ field: "question", description: "ask a question", reason: "REQUIRED" }]);
    const action = actionFromPb(q.action, "question.action");
    let principal = access.principal;
    if (q.principal) {
      access.require("admin");
      principal = principalFromPb(q.principal, access.principal.tenant);
      if (principal.tenant !== access.principal.tenant) {
        throw new DomainError("permission_denied", "you may ask only about principals of your own tenant", {
          reason: "OTHER_TENANT",
          metadata: { tenant: principal.tenant },
        });
      }
    }
    const schemas = deps.config.current().schemas;
    let record: Fields | null = null;
    if (q.record) {
      record = await visibleRecord(access, q.record);
    } else if (Object.keys(q.recordFields).length > 0) {
      const schema = collectionOf(schemas, q.collection, "question.collection");
      const decoded = decodeFieldMap(schema, q.recordFields, { defaultPhoneRegion: schemas.defaultPhoneRegion, path: "question.record_fields" });
      if (decoded.violations.length > 0) throw invalidArgument("question.record_fields is invalid", decoded.violations);
      record = decoded.values;
    }
    const collection = q.record?.collection || q.collection;
    return explain(access.policy, principal, {
      action,
      collection,
      record,
      ...(q.field ? { field: q.field } : {}),
      ...(q.deviceClass ? { deviceClass: q.deviceClass } : {}),
    });
  }

  /** The fields of a record the caller can see; one it cannot see is not found, as everywhere. */
  async function visibleRecord(access: CallAccess, ref: NonNullable<AccessQuestion["record"]>): Promise<Fields> {
    const violations: FieldViolation[] = [];
    const schemas = deps.config.current().schemas;
    const resolved = decodeRef(schemas, ref, "question.record", violations);
    if (!resolved) throw invalidArgument("question.record is invalid", violations);
    const view = access.readable(resolved.collection);
    const { tenant } = access.principal;
    let id: string | undefined;
    const lookedUpBy: string[] = [];
    if ("id" in resolved.target) id = resolved.target.id;
    else {
      lookedUpBy.push(resolved.target.identity.field);
      access.requireReadableField(resolved.collection, resolved.target.identity.field, "question.record.identity.field");
      const lookup = { tenant, collection: resolved.collection.name, ...resolved.target.identity };
      id = (await deps.store.resolveIdentities([lookup])).get(identityKeyString(lookup));
    }
    const record = id === undefined ? null : await deps.store.get({ tenant, collection: resolved.collection.name, id });
    const missing = new DomainError("not_found", `${resolved.collection.name} record does not exist`, {
      reason: "RECORD_NOT_FOUND",
      metadata: { collection: resolved.collection.name },
    });
    if (!record) throw missing;
    if (!view.inScope(record.fields)) throw access.hidden(missing, "read", resolved.collection.name, record.id);
    // Found by an identity field this record hides from the caller: not found either (else it would confirm the value).
    if (!view.reveals(record.fields, lookedUpBy)) throw access.hidden(missing, "read", resolved.collection.name, record.id, lookedUpBy);
    return record.fields;
  }

  return {
    async getCaller(_req, ctx) {
      const access = deps.access.forCall(ctx);
      const p = access.principal;
      return create(GetCallerResponseSchema, { principal: principalToPb(p), unknownRoles: p.roles.filter((r) => !access.policy.roles.has(r)) });
    },

    async getPolicy(_req, ctx) {
      deps.access.forCall(ctx).require("admin");
      const snap = deps.config.current();
      return create(GetPolicyResponseSchema, { policy: policyDocToPb(snap.doc[POLICIES_SECTION]), revision: snap.revision });
    },

    async putPolicy(req, ctx) {
      const access = deps.access.forCall(ctx);
      access.require("admin");
      if (!req.policy) throw invalidArgument("policy is required", [{ field: "policy", description: "send the whole new policy", reason: "REQUIRED" }]);
      if (!req.expectedRevision) {
        throw invalidArgument("expected_revision is required: read the policy first and send its revision back", [
          { field: "expected_revision", description: "the revision GetPolicy returned", reason: "REQUIRED" },
        ]);
      }
      const from = deps.config.current().revision;
      const snap = await deps.config.putSection(POLICIES_SECTION, policyPbToDoc(req.policy), req.expectedRevision);
      await access.recordNow("policy_change", {
        reason: "POLICY_REPLACED",
        details: { from_revision: req.expectedRevision || from, to_revision: snap.revision, roles: String(snap.policy.roles.size) },
      });
      return create(PutPolicyResponseSchema, { policy: policyDocToPb(snap.doc[POLICIES_SECTION]), revision: snap.revision });
    },

    async checkAccess(req, ctx) {
      const e = await answer(deps.access.forCall(ctx), req.question);
      return create(CheckAccessResponseSchema, { decision: decisionToPb(e) });
    },

    async explainAccess(req, ctx) {
      const e = await answer(deps.access.forCall(ctx), req.question);
      return create(ExplainAccessResponseSchema, { decision: decisionToPb(e), grants: e.grants.map(traceToPb), unknownRoles: e.unknownRoles });
    },

    async queryAuditLog(req, ctx) {
      const access = deps.access.forCall(ctx);
      access.require("admin");
      const limit = pageSize(req.pageSize);
      const query = { a: req.actor, k: req.kind, c: req.collection, r: req.recordId, s: req.since?.seconds.toString(), u: req.until?.seconds.toString() };
      const before = deps.pageTokens.decode(req.pageToken, query, positions.seq(BigInt(Number.MAX_SAFE_INTEGER)));
      const entries = await deps.audit.query({
        tenant: access.principal.tenant,
        actor: req.actor || undefined,
        kind: KIND_FROM_PB.get(req.kind),
        collection: req.collection || undefined,
        recordId: req.recordId || undefined,
        since: filterTime(req.since, "since"),
        until: filterTime(req.until, "until"),
        beforeSeq: before === undefined ? undefined : Number(before),
        limit: limit + 1,
      });
      const page = entries.slice(0, limit);
      return create(QueryAuditLogResponseSchema, {
        entries: page.map(auditEntryToPb),
        nextPageToken: entries.length > limit ? deps.pageTokens.encode(query, String(page[page.length - 1]!.seq)) : "",
      });
    },

    async verifyAuditLog(_req, ctx) {
      const access = deps.access.forCall(ctx);
      access.require("admin");
      let head: { seq: number; hash: string } | null = null;
      let checked = 0;
      for (;;) {
        const entries = await deps.audit.readChain(access.principal.tenant, head?.seq ?? 0, VERIFY_PAGE);
        const r = verifyChain(entries, head);
        checked += r.checked;
        if (!r.intact) return create(VerifyAuditLogResponseSchema, { intact: false, entriesChecked: BigInt(checked), firstBadSeq: BigInt(r.badSeq), problem: r.problem, headSeq: BigInt(head?.seq ?? 0), headHash: head?.hash ?? "" });
        head = r.head ?? head;
        if (entries.length < VERIFY_PAGE) break;
      }
      return create(VerifyAuditLogResponseSchema, { intact: true, entriesChecked: BigInt(checked), headSeq: BigInt(head?.seq ?? 0), headHash: head?.hash ?? "" });
    },
  };
}
