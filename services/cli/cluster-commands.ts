// The operator's cluster commands: `config get`, `config apply -f`, and
// `cluster status`. They go through a node's ClusterService (any node), not to
// etcd directly: one validation path whether config lives in etcd or in a
// standalone node's file, no etcd credentials on operators' machines, and the
// node's access checks apply to them like to every other call.
import { readFile } from "node:fs/promises";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Command } from "commander";
import { ClusterService, CoordinationState, type GetStatusResponse } from "../../gen/deltamesh/v1/cluster_pb.js";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";

interface ServerFlags {
  server: string;
}

function clusterClient(flags: ServerFlags): Client<typeof ClusterService> {
  const baseUrl = flags.server.includes("://") ? flags.server : `http://${flags.server}`;
  return createClient(ClusterService, createGrpcTransport({ baseUrl }));
}

/** A refused config as the operator needs it: one line per problem. */
export function describeRejection(e: unknown): string {
  const err = ConnectError.from(e);
  const lines = [err.rawMessage];
  for (const br of err.findDetails(BadRequestSchema)) {
    for (const v of br.fieldViolations) lines.push(`  - ${v.field ? `${v.field}: ` : ""}${v.description}`);
  }
  return lines.join("\n");
}

const COORDINATION: Record<CoordinationState, string> = {
  [CoordinationState.UNSPECIFIED]: "unknown",
  [CoordinationState.STANDALONE]: "standalone",
  [CoordinationState.CONNECTED]: "connected",
  [CoordinationState.DEGRADED]: "DEGRADED",
};

const time = (t: Timestamp | undefined): string => (t ? timestampDate(t).toISOString() : "-");

export function formatStatus(s: GetStatusResponse): string {
  const out = [
    `answered by   ${s.nodeId} (${COORDINATION[s.coordination]}, etcd ${s.etcdReachable ? "reachable" : "UNREACHABLE"})`,
    `leader        ${s.leaderNodeId || "(none)"}  term ${s.leaderTerm}  (database fence at term ${s.fencedTerm})`,
    `change log    tail ${s.changeLogTail}  floor ${s.changeLogFloor}`,
    "",
    ["node", "address", "state", "leader", "config", "subscribers", "lag", "version", "started", "reported"].join("\t"),
  ];
  for (const n of s.nodes) {
    out.push(
      [
        n.nodeId,
        n.address,
        COORDINATION[n.coordination],
        n.leader ? `yes since ${time(n.leaderSince)}` : "no",
        n.configRevision,
        n.streamSubscribers ?? "?",
        n.streamLag ?? "?",
        n.version,
        time(n.startTime),
        time(n.reportTime),
      ].join("\t"),
    );
  }
  return out.join("\n");
}

export function addClusterCommands(program: Command, defaultServer: string): void {
  const config = program.command("config").description("read or replace the cluster's config document (schemas, policies, retention, ...)");
  config
    .command("get")
    .description("print the config document a node runs (its revision goes to stderr)")
    .option("--server <host:port>", "any node's gRPC address", defaultServer)
    .action(async (flags: ServerFlags) => {
      const res = await clusterClient(flags).getConfig({});
      process.stderr.write(`# revision ${res.revision} (from ${res.store})\n`);
      process.stdout.write(res.document.endsWith("\n") ? res.document : `${res.document}\n`);
    });
  config
    .command("apply")
    .description("validate a whole config document and store it; every node hot-reloads it")
    .requiredOption("-f, --file <file>", "the document (YAML or JSON)")
    .option("--expected-revision <rev>", "apply only if the stored document is still at this revision")
    .option("--dry-run", "validate only")
    .option("--server <host:port>", "any node's gRPC address", defaultServer)
    .action(async (flags: ServerFlags & { file: string; expectedRevision?: string; dryRun?: boolean }) => {
      const document = await readFile(flags.file, "utf8");
      try {
        const res = await clusterClient(flags).applyConfig({ document, expectedRevision: flags.expectedRevision ?? "", dryRun: flags.dryRun ?? false });
        process.stdout.write(
          flags.dryRun ? `valid (current revision ${res.revision})\n` : res.changed ? `applied: revision ${res.revision}\n` : `unchanged: revision ${res.revision}\n`,
        );
      } catch (e) {
        process.stderr.write(`deltamesh: config refused: ${describeRejection(e)}\n`);
        process.exit(1);
      }
    });
  program
    .command("cluster")
    .description("cluster commands")
    .command("status")
    .description("nodes, leader and term, config revisions, change-log bounds, etcd reachability")
    .option("--server <host:port>", "any node's gRPC address", defaultServer)
    .option("--json", "print the raw status as JSON")
    .action(async (flags: ServerFlags & { json?: boolean }) => {
      const res = await clusterClient(flags).getStatus({});
      process.stdout.write(
        flags.json ? `${JSON.stringify(res, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v), 2)}\n` : `${formatStatus(res)}\n`,
      );
    });
}
