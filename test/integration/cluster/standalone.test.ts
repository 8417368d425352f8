// Without etcd configured a node is its own leader (term 0), reads config from
// its file, and ClusterService says so; config apply rewrites the file.
import { copyFile, readFile } from "node:fs/promises";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ClusterService, CoordinationState } from "../../../gen/deltamesh/v1/cluster_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/health/v1/health_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { parseConfigText } from "../../../services/config/parse.js";
import { scratchDir } from "../../support/env.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { rejection } from "../../support/rpc.js";
import { waitFor } from "./support.js";

let node: TestNode;
let configFile: string;
beforeAll(async () => {
  configFile = path.join(await scratchDir("standalone"), "config.yaml");
  await copyFile(DEFAULT_CONFIG_PATH, configFile);
  node = await startTestNode({ nodeId: "solo", configFile });
});
afterAll(async () => {
  await node?.stop();
});

describe("a standalone node", () => {
  it("reports itself alone, its own leader at term 0, with the term claimed in its database", async () => {
    const s = await waitFor("the standalone term claimed", 5000, async () => {
      const st = await node.connect(ClusterService).getStatus({});
      return st.fenceHolder === "solo" && st.fencedTerm === 0n && st.nodes[0]?.leader ? st : undefined;
    });
    expect(s).toMatchObject({ nodeId: "solo", coordination: CoordinationState.STANDALONE, etcdReachable: false, leaderNodeId: "solo", leaderTerm: 0n });
    expect(s.nodes.map((n) => [n.nodeId, n.address, n.coordination])).toEqual([["solo", node.grpcAddress, CoordinationState.STANDALONE]]);
    const dbFence = await node.node.store.pool.query<{ holder: string }>("SELECT holder FROM leader_fence");
    expect(dbFence.rows).toEqual([{ holder: "solo" }]);
    expect((await node.connect(Health).check({ service: "deltamesh.coordination" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("applies a config document to its file, validated whole and compare-and-set", async () => {
    const cs = node.connect(ClusterService);
    const before = await cs.getConfig({});
    expect(before.store).toBe("file");
    const doc = parseConfigText(before.document) as { collections: Record<string, unknown> };
    doc.collections.visits = { fields: { note: { type: "string" } } };
    const dry = await cs.applyConfig({ document: stringify(doc), dryRun: true });
    expect(dry).toMatchObject({ revision: before.revision, changed: false });
    const applied = await cs.applyConfig({ document: JSON.stringify(doc), expectedRevision: before.revision });
    expect(applied.changed).toBe(true);
    expect(node.node.config.current().schemas.collections.has("visits")).toBe(true);
    expect(parseConfigText(await readFile(configFile, "utf8"))).toHaveProperty("collections.visits");
    const stale = await rejection(cs.applyConfig({ document: stringify(doc), expectedRevision: before.revision }));
    expect(stale.code).toBe(Code.Aborted);
    const bad = await rejection(cs.applyConfig({ document: "collections: {x: {fields: {y: {type: strng}}}}" }));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect((await cs.getConfig({})).revision).toBe(applied.revision);
  });
});
