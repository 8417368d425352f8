import { mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DomainError } from "../../../services/platform/errors.js";
import { DEFAULT_CONFIG_PATH, loadFileConfigSource, readConfigFile, type FileConfigSource } from "../../../services/config/file-source.js";
import { contentRevision, type ConfigLogger, type ConfigSnapshot } from "../../../services/config/source.js";

const yamlDoc = (fields: string) => `
default_phone_region: CN
sources: [erp, pos]
collections:
  customers:
    fields:
${fields}
`;
const GOOD_A = yamlDoc("      name: { type: string }");
const GOOD_B = yamlDoc("      name: { type: string }\n      phone: { type: string, normalizers: [phone] }");
const GOOD_C = yamlDoc("      name: { type: string }\n      vip: { type: bool }");
const BAD_SCHEMA = yamlDoc("      name: { type: strng }");
const BAD_SYNTAX = "collections: [unclosed\n";

/** A logger that records messages and lets a test wait for the next one. */
function recordingLogger() {
  const messages: Array<{ level: string; msg: string; obj: object }> = [];
  let waiters: Array<() => void> = [];
  const push = (level: string) => (obj: object, msg: string) => {
    messages.push({ level, msg, obj });
    const w = waiters;
    waiters = [];
    w.forEach((f) => f());
  };
  const log: ConfigLogger = { info: push("info"), warn: push("warn") };
  const next = (): Promise<void> => withTimeout(new Promise<void>((r) => waiters.push(r)), "log message");
  return { log, messages, next };
}

function withTimeout<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms))]);
}

function nextChange(src: FileConfigSource): Promise<ConfigSnapshot> {
  return withTimeout(
    new Promise<ConfigSnapshot>((resolve) => {
      const off = src.onChange((s) => {
        off();
        resolve(s);
      });
    }),
    "config change",
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let dir: string;
const open: FileConfigSource[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "deltamesh-config-"));
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

async function load(file: string, content: string, opts: Parameters<typeof loadFileConfigSource>[1] = {}) {
  await writeFile(file, content);
  const src = await loadFileConfigSource(file, opts);
  open.push(src);
  return src;
}

describe("readConfigFile / loadFileConfigSource", () => {
  it("loads YAML with a content-hash revision", async () => {
    const src = await load(join(dir, "c.yaml"), GOOD_A);
    expect(src.current().revision).toBe(contentRevision(GOOD_A));
    expect(src.current().schemas.defaultPhoneRegion).toBe("CN");
    expect(src.current().doc.sources).toEqual(["erp", "pos"]);
  });

  it("loads JSON by extension", async () => {
    const json = JSON.stringify({ collections: { a: { fields: { b: { type: "int" } } } }, labels: { days: 3 } });
    const src = await load(join(dir, "c.json"), json);
    expect([...src.current().schemas.collections.keys()]).toEqual(["a"]);
    expect(src.current().doc.labels).toEqual({ days: 3 });
  });

  it("rejects a missing file with CONFIG_UNREADABLE naming the path", async () => {
    const file = join(dir, "nope.yaml");
    const err = await readConfigFile(file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DomainError);
    expect((err as DomainError).kind).toBe("failed_precondition");
    expect((err as DomainError).reason).toBe("CONFIG_UNREADABLE");
    expect((err as DomainError).message).toContain(file);
  });

  it("rejects an invalid initial file with its violations", async () => {
    const file = join(dir, "c.yaml");
    await writeFile(file, BAD_SCHEMA);
    const err = (await loadFileConfigSource(file).catch((e: unknown) => e)) as DomainError;
    expect(err.reason).toBe("INVALID_SCHEMA");
    expect(err.message).toContain(file);
    expect(err.violations[0]!.field).toBe("collections.customers.fields.name.type");
    await writeFile(file, BAD_SYNTAX);
    expect(((await loadFileConfigSource(file).catch((e: unknown) => e)) as DomainError).reason).toBe("CONFIG_SYNTAX");
    await writeFile(file, "");
    expect(((await loadFileConfigSource(file).catch((e: unknown) => e)) as DomainError).reason).toBe("INVALID_CONFIG");
  });

  it("reload() re-reads on demand and does nothing when unchanged", async () => {
    const file = join(dir, "c.yaml");
    const { log } = recordingLogger();
    const src = await load(file, GOOD_A, { log });
    const seen: string[] = [];
    src.onChange((s) => seen.push(s.revision));
    expect(await src.reload()).toBe(false);
    await writeFile(file, GOOD_B);
    expect(await src.reload()).toBe(true);
    expect(src.current().schemas.collections.get("customers")!.fields.has("phone")).toBe(true);
    await writeFile(file, BAD_SCHEMA);
    expect(await src.reload()).toBe(false);
    await rm(file);
    expect(await src.reload()).toBe(false);
    expect(seen).toEqual([contentRevision(GOOD_B)]);
    expect(src.current().revision).toBe(contentRevision(GOOD_B));
  });

  it("ships a default config that loads", async () => {
    expect(DEFAULT_CONFIG_PATH).toMatch(/config[/\\]example\.yaml$/);
    const snap = await readConfigFile(DEFAULT_CONFIG_PATH);
    expect([...snap.schemas.collections.keys()]).toEqual(["customers", "contacts", "followups"]);
  });
});

describe("watching", () => {
  const opts = (log: ConfigLogger) => ({ watch: true, debounceMs: 20, log });

  it("reloads on change and notifies once per good change", async () => {
    const file = join(dir, "c.yaml");
    const { log } = recordingLogger();
    const src = await load(file, GOOD_A, opts(log));
    const seen: string[] = [];
    src.onChange((s) => seen.push(s.revision));

    const changed = nextChange(src);
    await writeFile(file, GOOD_B);
    expect((await changed).revision).toBe(contentRevision(GOOD_B));
    expect(src.current().schemas.collections.get("customers")!.fields.has("phone")).toBe(true);

    // Touching the file with the same content is no change.
    await writeFile(file, GOOD_B);
    await sleep(150);
    expect(seen).toEqual([contentRevision(GOOD_B)]);
  });

  it("ignores a malformed change and keeps the current config", async () => {
    const file = join(dir, "c.yaml");
    const rec = recordingLogger();
    const src = await load(file, GOOD_A, opts(rec.log));
    const before = src.current();
    const seen: string[] = [];
    src.onChange((s) => seen.push(s.revision));

    let logged = rec.next();
    await writeFile(file, BAD_SCHEMA);
    await logged;
    expect(rec.messages.at(-1)).toMatchObject({ level: "warn", msg: expect.stringContaining("invalid") });
    expect((rec.messages.at(-1)!.obj as { violations: unknown[] }).violations).toHaveLength(1);
    expect(src.current()).toBe(before);

    logged = rec.next();
    await writeFile(file, BAD_SYNTAX);
    await logged;
    expect(src.current()).toBe(before);
    expect(seen).toEqual([]);

    // A good change after bad ones applies.
    const changed = nextChange(src);
    await writeFile(file, GOOD_C);
    expect((await changed).schemas.collections.get("customers")!.fields.has("vip")).toBe(true);
    expect(seen).toEqual([contentRevision(GOOD_C)]);
  });

  it("follows atomic saves (write a temp file, rename over)", async () => {
    const file = join(dir, "c.yaml");
    const { log } = recordingLogger();
    const src = await load(file, GOOD_A, opts(log));
    for (const content of [GOOD_B, GOOD_C]) {
      const changed = nextChange(src);
      const tmp = join(dir, `.c.yaml.${Math.random()}`);
      await writeFile(tmp, content);
      await rename(tmp, file);
      expect((await changed).revision).toBe(contentRevision(content));
    }
  });

  it("coalesces a burst of writes into one reload", async () => {
    const file = join(dir, "c.yaml");
    const { log } = recordingLogger();
    const src = await load(file, GOOD_A, { ...opts(log), debounceMs: 100 });
    const seen: string[] = [];
    src.onChange((s) => seen.push(s.revision));
    const changed = nextChange(src);
    await writeFile(file, GOOD_B);
    await writeFile(file, BAD_SCHEMA);
    await writeFile(file, GOOD_C);
    await changed;
    await sleep(250);
    expect(seen).toEqual([contentRevision(GOOD_C)]);
  });

  it("stops after close", async () => {
    const file = join(dir, "c.yaml");
    const { log } = recordingLogger();
    const src = await load(file, GOOD_A, opts(log));
    const seen: string[] = [];
    src.onChange((s) => seen.push(s.revision));
    await src.close();
    await writeFile(file, GOOD_B);
    await sleep(150);
    expect(await src.reload()).toBe(false);
    expect(seen).toEqual([]);
    expect(src.current().revision).toBe(contentRevision(GOOD_A));
  });

  it("polls when asked to", async () => {
    const file = join(dir, "c.yaml");
    const { log } = recordingLogger();
    // Polling alone (a huge debounce keeps watch events from firing in time).
    const src = await load(file, GOOD_A, { watch: true, debounceMs: 60_000, pollIntervalMs: 30, log });
    const changed = nextChange(src);
    await writeFile(file, GOOD_B);
    expect((await changed).revision).toBe(contentRevision(GOOD_B));
  });
});
