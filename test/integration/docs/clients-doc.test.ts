// The `buf curl` section of docs/clients.md, run block by block against a
// real node, so the documented calls stay true. A block whose first line is
// `# fails: <code>` must end with that status; every other block must succeed.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConflictService, TicketStatus } from "../../../gen/deltamesh/v1/conflicts_pb.js";
import { bearerToken, startTestNode, type TestNode } from "../../support/node.js";

const DOC = fileURLToPath(new URL("../../../docs/clients.md", import.meta.url));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));

/** The ```sh blocks of the section that starts with `heading`. */
function shellBlocks(markdown: string, heading: string): string[] {
  const start = markdown.indexOf(`\n${heading}\n`);
  const end = markdown.indexOf("\n## ", start + 1);
  const section = markdown.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

function bash(script: string, env: Record<string, string>): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile("bash", ["-c", script], { cwd: REPO, env: { ...process.env, ...env }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, output: stdout + stderr });
    });
  });
}

describe("docs/clients.md buf curl examples", () => {
  let node: TestNode;

  beforeAll(async () => {
    node = await startTestNode();
  });

  afterAll(async () => {
    await node?.stop();
  });

  it("run as documented against a node", { timeout: 180_000 }, async () => {
    const text = (await readFile(DOC, "utf8"))
      .replaceAll("http://127.0.0.1:50051", `http://${node.grpcAddress}`)
      .replaceAll("http://127.0.0.1:8080", node.webUrl)
      // The same buf, without npx's start-up cost on every call.
      .replaceAll("npx buf ", `${REPO}node_modules/.bin/buf `);
    const blocks = shellBlocks(text, "## `buf curl` for every RPC");
    expect(blocks.length).toBeGreaterThan(8);
    // The first block sets up $DM and the dmcurl alias; every block runs after it.
    const setup = blocks[0]!.split("\n").filter((l) => /^(export|alias) /.test(l)).join("\n");
    // The token the page's readers export: a tenant "acme" admin signed by the test issuer.
    const env: Record<string, string> = { DELTAMESH_TOKEN: bearerToken({ tenant: "acme" }) };
    let all = "";
    for (const block of blocks) {
      if (block.includes("$TICKET") && !env.TICKET) {
        const open = await node.connect(ConflictService, { tenant: "acme" }).listConflictTickets({ status: TicketStatus.OPEN });
        env.TICKET = open.tickets[0]!.id;
      }
      const fails = /^# fails: (\w+)/.exec(block)?.[1];
      const { code, output } = await bash(`shopt -s expand_aliases\nset -o pipefail\n${fails ? "" : "set -e\n"}${setup}\n${block}`, env);
      if (fails) {
        expect(code, block).not.toBe(0);
        expect(output, block).toContain(`"code": "${fails}"`);
      } else {
        expect(code, `${block}\n${output}`).toBe(0);
      }
      all += output;
    }
    // What the calls did, as a reader of the page expects.
    expect(all).toContain("deltamesh.v1.RecordService\n");
    expect(all).toContain('"status": "STATUS_QUEUED_FOR_REVIEW"');
    expect(all).toContain('"status": "TICKET_STATUS_RESOLVED"');
    expect(all).toContain('"status": "SERVING"');
    expect(all).toContain('"deleted":true');
  });
});
