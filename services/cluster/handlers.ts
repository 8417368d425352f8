// ClusterService: protobuf <-> domain for the cluster status and the
// operator's config commands. Holds no etcd or SQL of its own.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { AccessControl } from "../access/control.js";
import { POLICIES_SECTION } from "../access/policy-load.js";
import {
  ClusterService,
  CoordinationState,
  type NodeStatusSchema,
} from "../../gen/deltamesh/v1/cluster_pb.js";
import { buildSnapshot, revisionMismatch } from "../config/source.js";
import { parseConfigText, type ConfigFormat } from "../config/parse.js";
import type { Pool } from "pg";
import { readFence } from "../store/fencing.js";
import { dropIdentityKeys, storedFieldReader } from "../store/stored-fields.js";
import { checkSchemaAgainstRecords } from "../schema/record-check.js";
import { changeLogBounds } from "../store/retention.js";
import type { Coordination, MemberInfo } from "./membership.js";
import type { ClusterNode } from "./node.js";

export interface ClusterServiceDeps {
  /** Read lazily, like the pool: the node joins the cluster after it starts listening. */
  readonly cluster: ClusterNode;
  /** The database pool (read lazily: the handlers run only once the database is ready). */
  readonly pool: Pool;
  /** Reading or replacing the config (schemas and the access policy) is an administrator's act, audited like PutPolicy. */
  readonly access: AccessControl;
}

const COORDINATION: Readonly<Record<Coordination, CoordinationState>> = {
  standalone: CoordinationState.STANDALONE,
  connected: CoordinationState.CONNECTED,
  degraded: CoordinationState.DEGRADED,
};

export function nodeStatus(m: MemberInfo): MessageInitShape<typeof NodeStatusSchema> {
  return {
    nodeId: m.id,
    address: m.address,
    services: m.services,
    version: m.version,
    startTime: timestampFromDate(new Date(m.startTime)),
    configRevision: m.configRevision,
    configTime: timestampFromDate(new Date(m.configTime)),
    leader: m.leader,
    leaderSince: m.leaderSince ? timestampFromDate(new Date(m.leaderSince)) : undefined,
    coordination: COORDINATION[m.coordination],
    streamSubscribers: m.streamSubscribers ?? undefined,
    streamLag: m.streamLag === null ? undefined : BigInt(m.streamLag),
    reportTime: timestampFromDate(new Date(m.reportTime)),
  };
}

/** JSON is YAML: a document is read as JSON only when it is JSON (a YAML flow mapping starts with `{` too). */
export function guessFormat(text: string): ConfigFormat {
  if (!/^\s*[{[]/.test(text)) return "yaml";
  try {
    JSON.parse(text);
    return "json";
  } catch {
    return "yaml";
  }
}

export function createClusterService(deps: ClusterServiceDeps): ServiceImpl<typeof ClusterService> {
  return {
    async getStatus() {
      const cluster = deps.cluster;
      const [view, bounds, fence] = await Promise.all([cluster.view(), changeLogBounds(deps.pool), readFence(deps.pool)]);
      return {
        nodeId: cluster.nodeId,
        coordination: COORDINATION[cluster.coordination()],
        etcdReachable: view.etcdReachable,
        leaderNodeId: view.leader?.nodeId ?? "",
        leaderTerm: view.leader?.term ?? 0n,
        nodes: view.members.map(nodeStatus),
        changeLogTail: bounds.tail,
        changeLogFloor: bounds.floor,
        fencedTerm: fence?.term ?? 0n,
        fenceHolder: fence?.holder ?? "",
      };
    },
    async getConfig(_req, ctx) {
      deps.access.forCall(ctx).require("admin");
      const cluster = deps.cluster;
      return { document: cluster.config.currentText(), revision: cluster.config.current().revision, store: cluster.config.store };
    },
    async applyConfig(req, ctx) {
      const access = deps.access.forCall(ctx);
      access.require("admin");
      const cluster = deps.cluster;
      const format = guessFormat(req.document);
      const previous = cluster.config.current();
      const before = previous.revision;
      // Stored records must fit the new schemas; checked before a dry run
      // answers too. A write racing this check under the old schemas can
      // still slip in before every node has the new ones.
      const next = buildSnapshot(parseConfigText(req.document, format), "");
      const checked = await checkSchemaAgainstRecords(storedFieldReader(deps.pool), previous.schemas, next.schemas);
      if (req.dryRun) return { revision: before, changed: false };
      // The records were checked against the schemas of the revision in force
      // here: the change applies over that revision only.
      if (checked.length > 0 && req.expectedRevision && req.expectedRevision !== before) throw revisionMismatch(req.expectedRevision, before);
      for (const c of checked) if (c.kind === "identity") await dropIdentityKeys(deps.pool, c.collection, c.field.name);
      const after = await cluster.config.replaceDocument(req.document, format, checked.length > 0 ? before : req.expectedRevision);
      if (JSON.stringify(after.doc[POLICIES_SECTION] ?? null) !== JSON.stringify(previous.doc[POLICIES_SECTION] ?? null)) {
        await access.recordNow("policy_change", {
          reason: "CONFIG_APPLIED",
          details: { from_revision: before, to_revision: after.revision, roles: String(after.policy.roles.size) },
        });
      }
      return { revision: after.revision, changed: after.revision !== before };
    },
  };
}
