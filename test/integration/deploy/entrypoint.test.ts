// The container's entrypoint, without a container engine: build the
// JavaScript as the Dockerfile does (scripts/build.mjs), lay it out as the
// runtime image has it (dist/, config/, package.json, node_modules; no
// TypeScript sources), and run `node dist/services/cli/main.js` with the
// environment the Helm chart sets. Proves: `migrate` (the chart's Job) and
// `serve` start from the built code; metrics are scraped and spans and
// metrics reach an OTLP receiver; SIGTERM drains (health NOT_SERVING, open
// streams end UNAVAILABLE) and the process exits 0.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, symlinkSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RecordService } from "../../../gen/deltamesh/v1/records_pb.js";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../../gen/health/v1/health_pb.js";
import { createGrpcJsClient } from "../../../services/platform/transport/grpc-client.js";
import { scratchDir, testDatabaseUrl } from "../../support/env.js";
import { imageNodeOptions } from "../../support/processes/image-node-options.js";
import { byId, enm, str } from "../../support/rpc.js";
import { parsePrometheus, promValue } from "../../support/telemetry.js";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

let image: string;
let main: string;
beforeAll(async () => {
  image = await scratchDir("image");
  const build = spawnSync(process.execPath, [path.join(REPO, "scripts/build.mjs"), path.join(image, "dist")], { encoding: "utf8" });
  expect(build.stderr + build.stdout).not.toMatch(/error TS/);
  expect(build.status).toBe(0);
  cpSync(path.join(REPO, "package.json"), path.join(image, "package.json"));
  cpSync(path.join(REPO, "config"), path.join(image, "config"), { recursive: true });
  symlinkSync(path.join(REPO, "node_modules"), path.join(image, "node_modules"), "dir");
  main = path.join(image, "dist/services/cli/main.js");
}, 300_000);

/** The variables a pod gets (the image's NODE_OPTIONS included), and nothing from this test process. */
function podEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", NODE_ENV: "production", NODE_OPTIONS: imageNodeOptions(), DELTAMESH_HOST: "127.0.0.1", ...extra };
}

function run(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [main, ...args], { cwd: image, env: podEnv(env), encoding: "utf8", timeout: 60_000 });
}

describe("the built image layout", () => {
  it("has compiled JavaScript, the migrations and no TypeScript sources", () => {
    expect(existsSync(main)).toBe(true);
    expect(existsSync(path.join(image, "dist/services/store/migrations/0001_records.sql"))).toBe(true);
    expect(existsSync(path.join(image, "services"))).toBe(false);
  });

  it("migrates a database (the chart's migration Job), then finds nothing to do", async () => {
    const url = await testDatabaseUrl();
    const first = run(["migrate"], { DELTAMESH_DATABASE_URL: url });
    expect(first.stderr).toBe("");
    expect(first.stdout).toMatch(/^applied migrations \d+/);
    expect(first.status).toBe(0);
    const again = run(["migrate"], { DELTAMESH_DATABASE_URL: url });
    expect(again.stdout).toBe("database is up to date\n");
  });
});

interface Received {
  path: string;
  body: unknown;
}

/** An OTLP/HTTP JSON receiver on loopback: records what the node exports. */
async function otlpReceiver(): Promise<{ url: string; received: Received[]; close(): void }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ path: req.url ?? "", body: JSON.parse(Buffer.concat(chunks).toString() || "{}") });
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received, close: () => server.close() };
}

interface OtlpAttr {
  key: string;
  value: { stringValue?: string };
}
type Traces = { resourceSpans: { resource: { attributes: OtlpAttr[] }; scopeSpans: { spans: { name: string }[] }[] }[] };
type Metrics = { resourceMetrics: { scopeMetrics: { metrics: { name: string }[] }[] }[] };

describe("deltamesh serve from the built JavaScript", () => {
  let child: ChildProcess;
  let stdout = "";
  let stderr = "";
  let otlp: Awaited<ReturnType<typeof otlpReceiver>>;
  const closers: (() => void)[] = [];
  afterAll(() => {
    for (const c of closers) c();
    otlp?.close();
    if (child && child.exitCode === null) child.kill("SIGKILL");
  });

  it("serves, exports telemetry, and drains on SIGTERM", async () => {
    otlp = await otlpReceiver();
    child = spawn(process.execPath, [main, "serve"], {
      cwd: image,
      env: podEnv({
        DELTAMESH_DATABASE_URL: await testDatabaseUrl(),
        DELTAMESH_GRPC_PORT: "0",
        DELTAMESH_WEB_PORT: "0",
        DELTAMESH_METRICS_PORT: "0",
        DELTAMESH_NODE_ID: "image-test",
        DELTAMESH_INSECURE_DEV_AUTH: "true",
        DELTAMESH_SHUTDOWN_GRACE_MS: "5000",
        OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        // Exported at shutdown: the drain must flush them.
        OTEL_METRIC_EXPORT_INTERVAL: "600000",
      }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    const ports = await new Promise<{ grpc: number; metrics: number }>((resolve, reject) => {
      child.stdout!.on("data", (d: Buffer) => {
        stdout += d.toString();
        const g = /gRPC on :(\d+)/.exec(stdout);
        const m = /metrics on :(\d+)/.exec(stdout);
        if (g && m) resolve({ grpc: Number(g[1]), metrics: Number(m[1]) });
      });
      void exited.then((code) => reject(new Error(`exited ${code} before serving:\n${stderr}`)));
    });
    const address = `127.0.0.1:${ports.grpc}`;

    const records = createGrpcJsClient(RecordService, address);
    const health = createGrpcJsClient(Health, address);
    closers.push(() => records.close(), () => health.close());
    const res = await records.writeRecords({
      mutations: [{ ref: byId("image-1"), set: { name: str("Li Lei"), region: enm("east_china") } }],
    });
    expect(res.results[0]?.created).toBe(true);

    const scraped = parsePrometheus(await (await fetch(`http://127.0.0.1:${ports.metrics}/metrics`)).text());
    expect(promValue(scraped, "deltamesh_write_mutations_total", { outcome: "applied" })).toBe(1);

    // An open stream: it must see NOT_SERVING and then end UNAVAILABLE when the node drains.
    const seen: Status[] = [];
    const watching = (async () => {
      try {
        for await (const m of health.watch({ service: "" })) seen.push(m.status);
        return null;
      } catch (e) {
        return ConnectError.from(e);
      }
    })();
    while (seen.length === 0) await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([Status.SERVING]);

    child.kill("SIGTERM");
    const code = await exited;
    const streamEnd = await watching;
    expect(code, stderr).toBe(0);
    expect(seen.at(-1)).toBe(Status.NOT_SERVING);
    expect(streamEnd?.code).toBe(Code.Unavailable);
    const logs = stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg: string; node?: string });
    expect(logs.map((l) => l.msg)).toEqual(expect.arrayContaining(["signal received", "shutting down: draining calls", "stopped"]));
    expect(logs.every((l) => l.node === "image-test")).toBe(true);

    const traces = otlp.received.filter((r) => r.path === "/v1/traces").map((r) => r.body as Traces);
    const spans = traces.flatMap((t) => t.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => s.name))));
    expect(spans).toEqual(expect.arrayContaining(["deltamesh.v1.RecordService/WriteRecords", "deltamesh.write.batch"]));
    const instance = traces[0]!.resourceSpans[0]!.resource.attributes.find((a) => a.key === "service.instance.id");
    expect(instance?.value.stringValue).toBe("image-test");
    const metrics = otlp.received.filter((r) => r.path === "/v1/metrics").map((r) => r.body as Metrics);
    const names = metrics.flatMap((m) => m.resourceMetrics.flatMap((rm) => rm.scopeMetrics.flatMap((sm) => sm.metrics.map((x) => x.name))));
    expect(names).toEqual(expect.arrayContaining(["deltamesh.write.mutations", "rpc.server.call.duration"]));
  });
});
