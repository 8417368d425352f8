// Page tokens reveal nothing to the client holding them: when a caller's scan
// budget runs out on records it may not see, the token it gets continues
// after one of them, and must not name it. And a token sealed by one node
// opens on every node sharing the database, whether the operator configured
// a mask secret (the token key derives from it) or not (the nodes share a
// secret through the database).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { PAGE_TOKEN_SECRET_KEY } from "../../../services/store/shared-secret.js";
import { testDatabaseUrl } from "../../support/env.js";
import { startTestNode, type TestNode } from "../../support/node.js";
import { tokenBytes } from "../../support/page-tokens.js";
import { byId, enm, str } from "../../support/rpc.js";
import { testJwks, TEST_AUDIENCE, TEST_ISSUER } from "../../support/tokens.js";
import { ADMIN, eastSales, startAccessNode, uid } from "./helpers.js";

const nodes: TestNode[] = [];
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});
async function started(n: Promise<TestNode>): Promise<TestNode> {
  const node = await n;
  nodes.push(node);
  return node;
}

describe("a token after records the caller may not see", () => {
  let node: TestNode;
  const prefix = uid("zz-north");
  beforeAll(async () => {
    node = await started(startAccessNode());
    const rs = node.grpcJs(RecordService, ADMIN);
    // More hidden records than one page's scan budget (1000 rows).
    for (let k = 0; k < 2; k++) {
      const mutations = Array.from({ length: 550 }, (_, i) => ({ ref: byId(`${prefix}-${k}-${String(i).padStart(4, "0")}`), set: { name: str("n"), region: enm("north_china") } }));
      await rs.writeRecords({ mutations });
    }
  });

  it.each([
    ["grpc-js", () => node.grpcJs(RecordService, eastSales())],
    ["connect", () => node.connect(RecordService, eastSales())],
  ] as const)("names none of them, and still pages on to the end (%s)", async (_name, client) => {
    const rs = client();
    const query = { collection: "customers", pageSize: 10, filters: [{ field: "region", value: enm("north_china") }] };
    const first = await rs.listRecords(query);
    expect(first.records).toEqual([]);
    expect(first.nextPageToken).not.toBe(""); // the budget ran out before the end
    expect(tokenBytes(first.nextPageToken)).not.toContain(prefix);
    expect(tokenBytes(first.nextPageToken)).not.toContain("north");
    let pageToken = first.nextPageToken;
    let pages = 1;
    while (pageToken) {
      const page = await rs.listRecords({ ...query, pageToken });
      expect(page.records).toEqual([]);
      expect(tokenBytes(page.nextPageToken)).not.toContain(prefix);
      pageToken = page.nextPageToken;
      expect(++pages).toBeLessThan(10);
    }
  });
});

describe("a token from one node on another node of the same database", () => {
  const tag = uid("two-nodes");
  const list = (node: TestNode, pageToken = "") =>
    node.grpcJs(RecordService).listRecords({ collection: "customers", pageSize: 2, pageToken, filters: [{ field: "owner", value: str(tag) }] });

  async function pagesAcross(a: TestNode, b: TestNode): Promise<void> {
    const ids = Array.from({ length: 3 }, (_, i) => `${tag}-${i}`);
    await a.grpcJs(RecordService).writeRecords({ mutations: ids.map((id) => ({ ref: byId(id), set: { name: str(id), region: enm("east_china"), owner: str(tag) } })) });
    const first = await list(a);
    expect(tokenBytes(first.nextPageToken)).not.toContain(tag);
    const second = await list(b, first.nextPageToken);
    expect([...first.records, ...second.records].map((r) => r.id)).toEqual(ids);
    expect(second.nextPageToken).toBe("");
  }

  it("opens when the nodes share a configured mask secret", async () => {
    const databaseUrl = await testDatabaseUrl();
    const [a, b] = await Promise.all([started(startTestNode({ databaseUrl })), started(startTestNode({ databaseUrl }))]);
    await pagesAcross(a, b);
    await pagesAcross(b, a);
  });

  it("opens when no mask secret is configured: the nodes share one through the database", async () => {
    const databaseUrl = await testDatabaseUrl();
    const auth = { jwt: { issuer: TEST_ISSUER, audience: [TEST_AUDIENCE], jwks: testJwks }, auditFlushMs: 20 };
    const [a, b] = await Promise.all([started(startTestNode({ databaseUrl, auth })), started(startTestNode({ databaseUrl, auth }))]);
    await pagesAcross(a, b);
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const rows = (await db.query<{ value: string }>("SELECT value FROM deltamesh_meta WHERE key = $1", [PAGE_TOKEN_SECRET_KEY])).rows;
      expect(rows).toHaveLength(1);
      expect(Buffer.from(rows[0]!.value, "base64")).toHaveLength(32);
    } finally {
      await db.end();
    }
    // A node started later uses the same secret.
    const c = await started(startTestNode({ databaseUrl, auth }));
    const first = await list(c);
    expect((await list(a, first.nextPageToken)).records).toHaveLength(1);
  });
});
