// Enforcement as handlers use it: one CallAccess per call holds the caller,
// the policy current when the call began (so one call never mixes two
// policies), its views per collection, and the audit of what the call read
// or was refused. Handlers stay translation code: they ask for a view, a
// write guard or a right, and project what they return through it.
import type { HandlerContext } from "@connectrpc/connect";
import type { ConfigSource } from "../config/source.js";
import { DomainError, withCause } from "../platform/errors.js";
import { principalOf, type Principal } from "../platform/principal.js";
import { peerKey } from "../platform/transport/peer.js";
import type { CollectionSchema } from "../schema/types.js";
import type { AuditEvent, AuditKind } from "./audit-chain.js";
import type { AuditLog } from "./audit-log.js";
import { deviceClassOf, GrantSet, hasAction } from "./engine.js";
import { tenantHasher, type Hasher } from "./masks.js";
import type { Action, Policy } from "./policy.js";
import { viewFor, type RecordView } from "./view.js";
import { accessDenialOf, actionDenied, writeGuard, type AccessDenial, type WriteGuard } from "./write-guard.js";

/** The principal attribute naming the caller's device (for the audit log). */
export const DEVICE_ID_ATTRIBUTE = "device_id";

export class AccessControl {
  private readonly hashers = new Map<string, Hasher>();

  constructor(
    private readonly config: ConfigSource,
    readonly audit: AuditLog,
    private readonly hashKey: Uint8Array,
  ) {}

  policy(): Policy {
    return this.config.current().policy;
  }

  hasherFor(tenant: string): Hasher {
    let h = this.hashers.get(tenant);
    if (!h) this.hashers.set(tenant, (h = tenantHasher(this.hashKey, tenant)));
    return h;
  }

  forCall(ctx: HandlerContext): CallAccess {
    return new CallAccess(this, this.policy(), principalOf(ctx), {
      rpc: `/${ctx.service.typeName}/${ctx.method.name}`,
      peer: ctx.values.get(peerKey)?.address ?? "",
      device: ctx.requestHeader.get("x-deltamesh-device") ?? "",
    });
  }
}

interface CallFacts {
  rpc: string;
  peer: string;
  /** The device the client says it is (informative; the token's device_id wins). */
  device: string;
}

export class CallAccess {
  private readonly views = new Map<string, RecordView>();

  constructor(
    private readonly control: AccessControl,
    readonly policy: Policy,
    readonly principal: Principal,
    private readonly facts: CallFacts,
  ) {}

  get hasher(): Hasher {
    return this.control.hasherFor(this.principal.tenant);
  }

  /** The caller's read view of a collection (records outside it are "not found"). */
  view(schema: CollectionSchema): RecordView {
    let v = this.views.get(schema.name);
    if (!v) this.views.set(schema.name, (v = viewFor(this.policy, this.principal, schema, { hasher: this.hasher })));
    return v;
  }

  /** The read view, refusing a caller who may read no record of the collection at all. */
  readable(schema: CollectionSchema): RecordView {
    const v = this.view(schema);
    if (!v.readable) throw this.denied(actionDenied("read", schema.name));
    return v;
  }

  /** Refuses (and audits) a caller without `action` on the collection (on any, when omitted). */
  require(action: Action, collection?: string): void {
    if (!hasAction(this.policy, this.principal, action, collection)) throw this.denied(actionDenied(action, collection ?? "*"));
  }

  grants(schema: CollectionSchema, action: Action): GrantSet {
    return new GrantSet(this.policy, this.principal, schema, action);
  }

  /**
   * Whether the caller may read `field` of some record: a filter or identity
   * lookup on a field it may read in no record is refused up front. Whether a
   * given record may match is the view's `reveals` (the field must be readable
   * in that record, under the grants admitting it).
   */
  mayRead(schema: CollectionSchema, field: string): boolean {
    const s = this.grants(schema, "read");
    return s.fieldsOf(s.grants, "readFields").has(field);
  }

  /** Refuses a filter or lookup on a field the caller may not read. */
  requireReadableField(schema: CollectionSchema, field: string, path: string): void {
    if (this.mayRead(schema, field)) return;
    throw this.denied(
      new DomainError("permission_denied", `you may not read ${schema.name}.${field}, so you cannot look records up by it`, {
        reason: "FIELD_NOT_READABLE",
        metadata: { collection: schema.name, field },
        violations: [{ field: path, description: `${field} is not readable to you`, reason: "FIELD_NOT_READABLE" }],
        cause: { accessDenied: { action: "read", reason: "FIELD_NOT_READABLE", collection: schema.name, recordId: "", fields: [field] } } satisfies AccessDenial,
      }),
    );
  }

  writeGuard(mode: "write" | "resolve_conflicts" = "write"): WriteGuard {
    return writeGuard(this.policy, this.principal, mode);
  }

  /** Audits an access denial carried by `e` (if it is one) and returns `e`, to throw. */
  denied<E>(e: E): E {
    const d = accessDenialOf(e);
    if (d) {
      this.record("denied", {
        collection: d.collection,
        recordIds: d.recordId ? [d.recordId] : [],
        fields: d.fields,
        reason: d.reason,
        details: { action: d.action },
      });
    }
    return e;
  }

  /**
   * A "not found" answer for a record that exists outside the caller's scope,
   * or was looked up by `fields` it hides from the caller: audited,
   * indistinguishable to the client.
   */
  hidden(e: DomainError, action: Action, collection: string, recordId: string, fields: readonly string[] = []): DomainError {
    const reason = fields.length > 0 ? "FIELD_NOT_READABLE" : "OUT_OF_SCOPE";
    return this.denied(withCause(e, { accessDenied: { action, reason, collection, recordId, fields: [...fields] } } satisfies AccessDenial));
  }

  /** Queues an audit entry for sensitive fields read in clear. */
  readUnmasked(collection: string, recordIds: readonly string[], fields: Iterable<string>): void {
    const names = [...new Set(fields)].sort();
    if (recordIds.length === 0 || names.length === 0) return;
    this.record("read_unmasked", { collection, recordIds: [...new Set(recordIds)], fields: names });
  }

  /** Writes an audit entry before the action goes on; fails the call when it cannot be written. */
  async recordNow(kind: AuditKind, e: Partial<AuditEvent>): Promise<void> {
    try {
      await this.control.audit.recordNow(this.event(kind, e));
    } catch (cause) {
      throw new DomainError("unavailable", "the audit log cannot be written right now; retry later", { reason: "AUDIT_UNAVAILABLE", cause });
    }
  }

  record(kind: AuditKind, e: Partial<AuditEvent>): void {
    this.control.audit.record(this.event(kind, e));
  }

  private event(kind: AuditKind, e: Partial<AuditEvent>): AuditEvent {
    const p = this.principal;
    const deviceId = p.attributes[DEVICE_ID_ATTRIBUTE];
    return {
      tenant: p.tenant,
      actor: p.subject,
      roles: [...p.roles],
      kind,
      rpc: this.facts.rpc,
      collection: "",
      recordIds: [],
      fields: [],
      reason: "",
      device: typeof deviceId === "string" ? deviceId : this.facts.device,
      deviceClass: deviceClassOf(p),
      peer: this.facts.peer,
      details: {},
      ...e,
    };
  }
}
