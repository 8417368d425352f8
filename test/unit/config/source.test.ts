import { describe, expect, it, vi } from "vitest";
import { DomainError } from "../../../services/platform/errors.js";
import {
  ConfigPublisher,
  buildSnapshot,
  contentRevision,
  silentConfigLogger,
  staticConfigSource,
  type ConfigSnapshot,
} from "../../../services/config/source.js";
import { formatOf, parseConfigText } from "../../../services/config/parse.js";

const doc = (extra: Record<string, unknown> = {}) => ({
  sources: ["erp"],
  collections: { customers: { fields: { name: { type: "string" } } } },
  ...extra,
});

function thrown(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    return e as DomainError;
  }
  throw new Error("expected a throw");
}

describe("buildSnapshot", () => {
  it("validates schemas and keeps other sections in doc", () => {
    const s = buildSnapshot(doc({ labels: { days: 7 } }), "r1");
    expect(s.revision).toBe("r1");
    expect([...s.schemas.collections.keys()]).toEqual(["customers"]);
    expect(s.doc.labels).toEqual({ days: 7 });
  });

  it("validates and compiles the policies section against the schemas; a bad one refuses the document", () => {
    const policies = { roles: { r: { grants: [{ collections: ["customers"], actions: ["read"], scope: "record.name == principal.sub" }] } } };
    const s = buildSnapshot(doc({ policies }), "r1");
    expect(s.policy.roles.get("r")!.grants[0]!.scope!.recordFields).toEqual(["name"]);
    expect(s.policy.revision).toBe("r1");
    expect(s.doc.policies).toEqual(policies);
    expect(() => buildSnapshot(doc({ policies: { roles: ["x"] } }), "r2")).toThrow(/invalid policy/);
  });

  it("freezes a copy of the document", () => {
    const input = doc({ stream: { buffer: 10 } });
    const s = buildSnapshot(input, "r");
    expect(Object.isFrozen(s.doc)).toBe(true);
    expect(Object.isFrozen(s.doc.stream)).toBe(true);
    expect(() => {
      (s.doc.stream as { buffer: number }).buffer = 1;
    }).toThrow(TypeError);
    expect(Object.isFrozen(input)).toBe(false);
    input.sources.push("pos");
    expect(s.doc.sources).toEqual(["erp"]);
  });

  it("refuses a non-mapping document with INVALID_CONFIG", () => {
    for (const bad of [null, undefined, [], "text", 1]) {
      const e = thrown(() => buildSnapshot(bad, "r"));
      expect(e.kind).toBe("invalid_argument");
      expect(e.reason).toBe("INVALID_CONFIG");
    }
  });

  it("refuses invalid schemas with INVALID_SCHEMA", () => {
    const e = thrown(() => buildSnapshot({ collections: { c: { fields: { a: { type: "strng" } } } } }, "r"));
    expect(e.reason).toBe("INVALID_SCHEMA");
    expect(e.violations[0]!.field).toBe("collections.c.fields.a.type");
  });
});

describe("contentRevision", () => {
  it("is a short stable hash", () => {
    expect(contentRevision("abc")).toBe("ba7816bf8f01");
    expect(contentRevision("abc")).toMatch(/^[0-9a-f]{12}$/);
    expect(contentRevision("abd")).not.toBe(contentRevision("abc"));
  });
});

describe("parseConfigText", () => {
  it("reads YAML and JSON", () => {
    expect(parseConfigText("a: 1\nb: [x, y]\n")).toEqual({ a: 1, b: ["x", "y"] });
    expect(parseConfigText('{"a": 1}', "json")).toEqual({ a: 1 });
    expect(parseConfigText('{"a": 1}')).toEqual({ a: 1 });
    expect(parseConfigText("\uFEFFa: 1")).toEqual({ a: 1 });
  });

  it("uses the YAML 1.2 core schema", () => {
    expect(parseConfigText("a: yes\nb: 2024-05-01\nc: true\n")).toEqual({ a: "yes", b: "2024-05-01", c: true });
  });

  it("resolves aliases", () => {
    expect(parseConfigText("a: &r [x, y]\nb: *r\n")).toEqual({ a: ["x", "y"], b: ["x", "y"] });
  });

  it("reports syntax errors with positions", () => {
    const e = thrown(() => parseConfigText("a: [1, 2\nb: 3\n"));
    expect(e.reason).toBe("CONFIG_SYNTAX");
    expect(e.violations[0]!.description).toMatch(/line \d+, column \d+/);
    expect(thrown(() => parseConfigText("a: 1\na: 2\n")).message).toMatch(/unique/i);
    expect(thrown(() => parseConfigText("{a:", "json")).reason).toBe("CONFIG_SYNTAX");
  });

  it("refuses duplicate keys in JSON too (JSON.parse alone keeps the last and drops the others)", () => {
    const e = thrown(() => parseConfigText('{"collections": {"a": {}},\n "collections": {"b": {}}}', "json"));
    expect(e.reason).toBe("CONFIG_SYNTAX");
    expect(e.violations[0]!.description).toMatch(/line 2.*unique/i);
    expect(parseConfigText('{"collections": {"a": {}}}', "json")).toEqual({ collections: { a: {} } });
  });

  it("limits alias expansion", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 1; i < 8; i++) bomb.push(`${"abcdefgh"[i]}: &${"abcdefgh"[i]} [${Array(10).fill(`*${"abcdefgh"[i - 1]}`).join(", ")}]`);
    expect(thrown(() => parseConfigText(bomb.join("\n"))).reason).toBe("CONFIG_SYNTAX");
  });

  it("picks the format by extension", () => {
    expect(formatOf("/x/config.json")).toBe("json");
    expect(formatOf("/x/CONFIG.JSON")).toBe("json");
    expect(formatOf("/x/config.yaml")).toBe("yaml");
    expect(formatOf("/x/config.yml")).toBe("yaml");
    expect(formatOf("/x/config")).toBe("yaml");
  });
});

describe("ConfigPublisher", () => {
  const snap = (revision: string): ConfigSnapshot => buildSnapshot(doc(), revision);

  it("swaps and notifies on a new revision only", () => {
    const p = new ConfigPublisher(snap("a"), silentConfigLogger);
    const seen: string[] = [];
    p.onChange((s) => seen.push(s.revision));
    expect(p.publish(snap("a"))).toBe(false);
    expect(p.publish(snap("b"))).toBe(true);
    expect(p.current().revision).toBe("b");
    expect(seen).toEqual(["b"]);
  });

  it("unsubscribes, isolates failing listeners and stops after close", () => {
    const warn = vi.fn();
    const p = new ConfigPublisher(snap("a"), { info: () => {}, warn });
    const seen: string[] = [];
    p.onChange(() => {
      throw new Error("boom");
    });
    const off = p.onChange((s) => seen.push(`x${s.revision}`));
    p.onChange((s) => seen.push(`y${s.revision}`));
    p.publish(snap("b"));
    expect(seen).toEqual(["xb", "yb"]);
    expect(warn).toHaveBeenCalledOnce();
    off();
    off();
    p.publish(snap("c"));
    expect(seen).toEqual(["xb", "yb", "yc"]);
    p.close();
    expect(p.publish(snap("d"))).toBe(false);
    expect(p.current().revision).toBe("c");
    expect(seen).toHaveLength(3);
  });

  it("treats the same function registered twice as two subscriptions", () => {
    const p = new ConfigPublisher(snap("a"), silentConfigLogger);
    const l = vi.fn();
    const off1 = p.onChange(l);
    p.onChange(l);
    p.publish(snap("b"));
    expect(l).toHaveBeenCalledTimes(2);
    off1();
    p.publish(snap("c"));
    expect(l).toHaveBeenCalledTimes(3);
  });
});

describe("staticConfigSource", () => {
  it("serves a validated document and swaps on replace", async () => {
    const src = staticConfigSource(doc());
    expect(src.current().revision).toMatch(/^[0-9a-f]{12}$/);
    const seen: string[] = [];
    src.onChange((s) => seen.push([...s.schemas.collections.keys()].join(",")));
    src.replace({ collections: { contacts: { fields: { name: { type: "string" } } } } });
    expect([...src.current().schemas.collections.keys()]).toEqual(["contacts"]);
    expect(seen).toEqual(["contacts"]);
    // The same document again is no change.
    src.replace({ collections: { contacts: { fields: { name: { type: "string" } } } } });
    expect(seen).toHaveLength(1);
    await src.close();
  });

  it("keeps the current snapshot when a replacement is invalid", () => {
    const src = staticConfigSource(doc(), { revision: "r1" });
    const l = vi.fn();
    src.onChange(l);
    expect(() => src.replace({ collections: { c: { fields: {} } } })).toThrow(DomainError);
    expect(src.current().revision).toBe("r1");
    expect(l).not.toHaveBeenCalled();
  });

  it("refuses an invalid initial document", () => {
    expect(() => staticConfigSource({ collections: 3 })).toThrow(/invalid schema/);
  });
});
