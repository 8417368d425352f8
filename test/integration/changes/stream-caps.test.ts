// Open streams are capped per node and per caller (streams.max_streams,
// streams.max_streams_per_caller): one more is refused with RESOURCE_EXHAUSTED
// TOO_MANY_STREAMS naming which cap and its limit, and a closed or refused
// stream gives its place back.
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ChangeService } from "../../../gen/deltamesh/v1/changes_pb.js";
import { ErrorInfoSchema } from "../../../gen/google/rpc/error_details_pb.js";
import { DEFAULT_CONFIG_PATH } from "../../../services/config/file-source.js";
import { scratchDir } from "../../support/env.js";
import { startTestNode, type Identity, type TestNode } from "../../support/node.js";
import { openStream, type OpenStream } from "../../support/streams.js";
import { waitFor } from "../cluster/support.js";

let node: TestNode;
const streams: OpenStream[] = [];
beforeAll(async () => {
  const config = path.join(await scratchDir("stream-caps"), "config.yaml");
  const example = await readFile(DEFAULT_CONFIG_PATH, "utf8");
  await writeFile(config, `${example}\nstreams:\n  max_streams: 3\n  max_streams_per_caller: 2\n`);
  node = await startTestNode({ configFile: config });
});
afterAll(async () => {
  for (const s of streams) s.close();
  await node?.stop();
});

const ALICE: Identity = { subject: "alice" };
const BOB: Identity = { subject: "bob" };
const ALICE_OTHER_TENANT: Identity = { subject: "alice", tenant: "other" };

/** A stream of `who`, once the server has answered it (its first heartbeat, or its refusal). */
async function open(who: Identity): Promise<OpenStream> {
  const s = openStream(node.grpcJs(ChangeService, who), { collections: [{ collection: "customers" }], start: { case: "fromNow", value: {} } });
  streams.push(s);
  await s.until((e) => e.length >= 1, 10_000, "first heartbeat").catch(() => s.done());
  return s;
}

/** The refusal of a stream: its code, reason and metadata. */
function refusal(s: OpenStream): [Code | undefined, string | undefined, Record<string, string> | undefined] {
  const info = s.error?.findDetails(ErrorInfoSchema)[0];
  return [s.error?.code, info?.reason, info?.metadata];
}

const openOnNode = () => node.node.streams.streamStats().subscribers;

describe("stream caps", () => {
  it("refuse a caller's stream beyond its cap and a node's beyond the node's, and take one again once a place frees", async () => {
    const a1 = await open(ALICE);
    await open(ALICE);
    expect(openOnNode()).toBe(2);

    const a3 = await open(ALICE);
    expect(refusal(a3)).toEqual([Code.ResourceExhausted, "TOO_MANY_STREAMS", { scope: "caller", limit: "2" }]);
    expect(a3.error?.message).toMatch(/too many open streams: this caller has as many open streams as one caller may/);

    // The cap is per tenant and subject: the same subject in another tenant is another caller.
    const other = await open(ALICE_OTHER_TENANT);
    expect(other.error).toBeNull();
    const b1 = await open(BOB);
    expect(refusal(b1)).toEqual([Code.ResourceExhausted, "TOO_MANY_STREAMS", { scope: "node", limit: "3" }]);
    expect(openOnNode()).toBe(3);

    // Refusals took no place; a closed stream gives its own back.
    a1.close();
    await waitFor("alice's first stream to end on the server", 5000, async () => (openOnNode() === 2 ? true : undefined));
    const b2 = await open(BOB);
    expect(b2.error).toBeNull();
    expect(b2.ended).toBe(false);
    const a4 = await open(ALICE);
    expect(refusal(a4)).toEqual([Code.ResourceExhausted, "TOO_MANY_STREAMS", { scope: "node", limit: "3" }]);
  });
});
