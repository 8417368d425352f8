// Compare-and-set writes of one config section, on the static and the file
// source: validated whole, refused on a stale revision, never half-applied.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadFileConfigSource, type FileConfigSource } from "../../../services/config/file-source.js";
import { silentConfigLogger, staticConfigSource, type ConfigSource } from "../../../services/config/source.js";
import { DomainError } from "../../../services/platform/errors.js";

const DOC_TEXT = `# the CRM schema (this comment must survive writes)
sources: [erp, pos]
collections:
  customers:
    fields:
      name: { type: string }   # trailing comment
`;

async function refusal(p: Promise<unknown>): Promise<DomainError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    return e as DomainError;
  }
  throw new Error("expected a refusal");
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "dm-put-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sources: Array<[string, () => Promise<ConfigSource & { close(): Promise<void> }>]> = [
  ["static", async () => staticConfigSource({ sources: ["erp", "pos"], collections: { customers: { fields: { name: { type: "string" } } } } })],
  [
    "file",
    async () => {
      const path = join(dir, "config.yaml");
      await writeFile(path, DOC_TEXT);
      return loadFileConfigSource(path, { log: silentConfigLogger });
    },
  ],
];

describe.each(sources)("putSection on the %s source", (_name, open) => {
  it("writes a section at the current revision, tells listeners, and bumps the revision", async () => {
    const src = await open();
    const before = src.current();
    const seen: string[] = [];
    src.onChange((s) => seen.push(s.revision));
    const policies = { roles: { sales: { grants: [{ collections: ["customers"], actions: ["read"] }] } } };
    const after = await src.putSection("policies", policies, before.revision);
    expect(after.revision).not.toBe(before.revision);
    expect(after.doc.policies).toEqual(policies);
    expect([...after.policy.roles.keys()]).toEqual(["sales"]);
    expect(src.current().revision).toBe(after.revision);
    expect(seen).toEqual([after.revision]);
    await src.close();
  });

  it("refuses a stale expected revision with ABORTED-kind CONFIG_REVISION_MISMATCH and changes nothing", async () => {
    const src = await open();
    const first = src.current().revision;
    await src.putSection("labels", { days: 7 }, first);
    const err = await refusal(src.putSection("labels", { days: 1 }, first));
    expect(err.kind).toBe("aborted");
    expect(err.reason).toBe("CONFIG_REVISION_MISMATCH");
    expect(err.metadata.current_revision).toBe(src.current().revision);
    expect(src.current().doc.labels).toEqual({ days: 7 });
    await src.close();
  });

  it("refuses a section that makes the document invalid, whole, and keeps the last good one", async () => {
    const src = await open();
    const before = src.current();
    const err = await refusal(src.putSection("collections", { customers: { fields: { name: { type: "strng" } } } }, before.revision));
    expect(err.kind).toBe("invalid_argument");
    expect(src.current().revision).toBe(before.revision);
    expect(src.current().schemas.collections.get("customers")?.fields.get("name")?.type).toBe("string");
    await src.close();
  });

  it("removes a section given null, and refuses a malformed section name", async () => {
    const src = await open();
    await src.putSection("labels", { days: 7 }, "");
    const removed = await src.putSection("labels", null, "");
    expect(removed.doc.labels).toBeUndefined();
    expect((await refusal(src.putSection("Bad Name", {}, ""))).reason).toBe("INVALID_SECTION_NAME");
    await src.close();
  });
});

describe("putSection on the file source", () => {
  it("persists the section and keeps the file's comments; a restart reads it back", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, DOC_TEXT);
    const src: FileConfigSource = await loadFileConfigSource(path, { log: silentConfigLogger });
    const written = await src.putSection("labels", { days: 3 }, src.current().revision);
    await src.close();
    const text = await readFile(path, "utf8");
    expect(text).toContain("# the CRM schema (this comment must survive writes)");
    expect(text).toContain("# trailing comment");
    const reopened = await loadFileConfigSource(path, { log: silentConfigLogger });
    expect(reopened.current().revision).toBe(written.revision);
    expect(reopened.current().doc.labels).toEqual({ days: 3 });
    await reopened.close();
  });

  it("serializes concurrent compare-and-set writes: exactly one of two racing writers wins", async () => {
    const path = join(dir, "config.yaml");
    await writeFile(path, DOC_TEXT);
    const src = await loadFileConfigSource(path, { log: silentConfigLogger });
    const rev = src.current().revision;
    const results = await Promise.allSettled([src.putSection("labels", { days: 1 }, rev), src.putSection("labels", { days: 2 }, rev)]);
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const loser = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect((loser.reason as DomainError).reason).toBe("CONFIG_REVISION_MISMATCH");
    await src.close();
  });
});
