// The one way configuration reaches the services: a ConfigSource hands out
// the last good snapshot and tells listeners when a new one was validated and
// swapped in. Implementations: a file (./file-source.ts), a static document
// (below, for tests and embedding) and, later, etcd (services/cluster).
//
// Every implementation builds snapshots with buildSnapshot, so a document is
// validated in one place, as a whole, before anyone sees it: a bad document is
// never half-applied. New config sections (policies, retention, stream, ...)
// are added by validating them in buildSnapshot and adding a field to
// ConfigSnapshot; until then they ride along, unvalidated, in `doc`.

import { createHash } from "node:crypto";
import { DomainError, invalidArgument, isDomainError, type FieldViolation } from "../platform/errors.js";
import type { ConfigFormat } from "./parse.js";
import { parseRetention, type RetentionSettings } from "../cluster/duties/settings.js";
import { parseSchemaSet } from "../schema/load.js";
import type { Policy } from "../access/policy.js";
import { parsePolicy, POLICIES_SECTION } from "../access/policy-load.js";
import type { SchemaSet } from "../schema/types.js";
import { parseStreamSettings, type StreamSettings } from "../changes/settings.js";

export interface ConfigSnapshot {
  /** Identifies the document (a short content hash for files; the etcd revision later). */
  revision: string;
  schemas: SchemaSet;
  /** The `retention` section: the leader's housekeeping windows. */
  retention: RetentionSettings;
  /** The compiled access policy (the `policies` section; absent: nobody may do anything). */
  policy: Policy;
  /** The `streams` section (services/changes/settings.ts). */
  streams: StreamSettings;
  /** The raw document, all sections, deep-frozen. */
  doc: Record<string, unknown>;
}

export interface ConfigSource {
  /** The last good config. */
  current(): ConfigSnapshot;
  /** Called after each new good snapshot is swapped in (not for the initial one). Returns an unsubscribe function. */
  onChange(listener: (s: ConfigSnapshot) => void): () => void;
  /**
   * Compare-and-set write of one top-level section (`null` removes it). The
   * new document is validated as a whole before anything is written, so a bad
   * section is refused and nothing changes. Applies only while the current
   * revision is `expectedRevision` ("" skips the check). Resolves with the
   * snapshot now current (listeners have been told).
   * @throws DomainError aborted CONFIG_REVISION_MISMATCH (metadata current_revision),
   *   invalid_argument as buildSnapshot, failed_precondition CONFIG_READ_ONLY.
   */
  putSection(name: string, value: unknown, expectedRevision: string): Promise<ConfigSnapshot>;
  close(): Promise<void>;
}

/**
 * A config source whose whole document an operator reads and replaces
 * (ClusterService.GetConfig / ApplyConfig, `deltamesh config get|apply`).
 */
export interface ConfigDocumentSource extends ConfigSource {
  /** Where the document is kept. */
  readonly store: "etcd" | "file";
  /** The text (YAML or, for a .json file, JSON) of the current document. */
  currentText(): string;
  /**
   * Compare-and-set replacement of the whole document (`text` in `format`),
   * validated whole before anything is written. Errors as putSection.
   */
  replaceDocument(text: string, format: ConfigFormat, expectedRevision: string): Promise<ConfigSnapshot>;
}

/** Where config sources report reloads and rejected documents; a pino logger fits. */
export interface ConfigLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export const consoleConfigLogger: ConfigLogger = {
  info: (obj, msg) => console.info(msg, obj),
  warn: (obj, msg) => console.warn(msg, obj),
};

export const silentConfigLogger: ConfigLogger = { info: () => {}, warn: () => {} };

/** Top-level sections parseSchemaSet validates strictly. */
export const SCHEMA_SECTIONS = ["default_phone_region", "sources", "collections"] as const;

/**
 * Validates a whole config document and builds its snapshot. Schema sections
 * are validated strictly; other top-level sections are kept as they are in
 * `doc` for the components that own them.
 * The policies section is validated against the schemas and compiled
 * (services/access/policy-load.ts).
 * @throws DomainError invalid_argument (INVALID_CONFIG when the document is not a mapping, INVALID_SCHEMA, INVALID_POLICY).
 */
export function buildSnapshot(doc: unknown, revision: string): ConfigSnapshot {
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    const got = doc === null || doc === undefined ? "an empty document" : Array.isArray(doc) ? "a list" : `a ${typeof doc}`;
    throw invalidArgument(
      `the config document must be a mapping with a collections section; got ${got}`,
      [{ field: "", description: `expected a mapping (YAML object); got ${got}`, reason: "INVALID_CONFIG" }],
      "INVALID_CONFIG",
    );
  }
  // Every section is checked before any error is thrown: one pass fixes all.
  const sections = doc as Record<string, unknown>;
  const retention = parseRetention(sections.retention);
  const violations: FieldViolation[] = [...retention.violations];
  const refusals: DomainError[] = [];
  const attempt = <T>(parse: () => T): T | null => {
    try {
      return parse();
    } catch (e) {
      if (!isDomainError(e)) throw e;
      refusals.push(e);
      violations.push(...e.violations);
      return null;
    }
  };
  const schemas = attempt(() => parseSchemaSet(doc));
  const streams = attempt(() => parseStreamSettings(sections.streams));
  // Policies name collections and fields: they can only be checked against valid schemas.
  const policy = schemas ? attempt(() => parsePolicy(sections[POLICIES_SECTION], schemas, revision)) : null;
  if (!schemas || !policy || !streams || violations.length > 0) {
    // One section wrong: its own error says it best.
    if (refusals.length === 1 && retention.violations.length === 0) throw refusals[0]!;
    throw invalidArgument(
      `invalid config: ${violations.map((v) => (v.field ? `${v.field}: ${v.description}` : v.description)).join("; ")}`,
      violations,
      refusals[0]?.reason ?? "INVALID_CONFIG",
    );
  }
  return { revision, schemas, retention: retention.settings, policy, streams, doc: deepFreeze(structuredClone(doc) as Record<string, unknown>) };
}

/** A short (12 hex digits) sha256 of a document's text. */
export function contentRevision(content: string | Uint8Array): string {
  return createHash("sha256").update(content).digest("hex").slice(0, 12);
}

/**
 * Holds the current snapshot and the listeners; the shared core of every
 * ConfigSource implementation.
 */
export class ConfigPublisher {
  #current: ConfigSnapshot;
  readonly #listeners = new Set<(s: ConfigSnapshot) => void>();
  readonly #log: ConfigLogger;
  #closed = false;

  constructor(initial: ConfigSnapshot, log: ConfigLogger = consoleConfigLogger) {
    this.#current = initial;
    this.#log = log;
  }

  current(): ConfigSnapshot {
    return this.#current;
  }

  get closed(): boolean {
    return this.#closed;
  }

  onChange(listener: (s: ConfigSnapshot) => void): () => void {
    // Wrap so the same function registered twice gets two independent subscriptions.
    const entry = (s: ConfigSnapshot): void => listener(s);
    if (!this.#closed) this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /**
   * Swaps in a validated snapshot and notifies listeners, unless closed or the
   * revision is the current one. Returns whether it was applied. A listener
   * that throws is logged and does not stop the others.
   */
  publish(next: ConfigSnapshot): boolean {
    if (this.#closed || next.revision === this.#current.revision) return false;
    this.#current = next;
    for (const listener of [...this.#listeners]) {
      try {
        listener(next);
      } catch (e) {
        this.#log.warn({ err: e, revision: next.revision }, "config listener failed");
      }
    }
    return true;
  }

  close(): void {
    this.#closed = true;
    this.#listeners.clear();
  }
}

/** The refusal of a compare-and-set write whose expected revision is not the current one. */
export function revisionMismatch(expected: string, current: string): DomainError {
  return new DomainError(
    "aborted",
    `the config changed since revision ${expected}; it is now at revision ${current}: re-read it and apply your change again`,
    { reason: "CONFIG_REVISION_MISMATCH", metadata: { expected_revision: expected, current_revision: current } },
  );
}

/** A top-level section name a write may name: the schema's own key syntax. */
export function checkSectionName(name: string): void {
  if (!/^[a-z][a-z0-9_]{0,62}$/.test(name)) {
    throw invalidArgument(`config section name ${JSON.stringify(name)} is invalid`, [
      { field: "section", description: "lower-case letters, digits and _; starting with a letter", reason: "INVALID_SECTION_NAME" },
    ], "INVALID_SECTION_NAME");
  }
}

/** A copy of `doc` with section `name` replaced (`null`: removed). */
export function withSection(doc: Record<string, unknown>, name: string, value: unknown): Record<string, unknown> {
  const next: Record<string, unknown> = { ...structuredClone(doc) };
  if (value === null || value === undefined) delete next[name];
  else next[name] = structuredClone(value);
  return next;
}

/** A ConfigSource over an in-memory document; `replace` validates and swaps in another. */
export interface StaticConfigSource extends ConfigSource {
  /** Validates `doc` and publishes it; throws (leaving the current snapshot) when invalid. */
  replace(doc: unknown, revision?: string): ConfigSnapshot;
}

/**
 * A config source for tests and embedding.
 * @throws DomainError invalid_argument when the document is invalid.
 */
export function staticConfigSource(doc: unknown, opts: { revision?: string; log?: ConfigLogger } = {}): StaticConfigSource {
  const publisher = new ConfigPublisher(buildSnapshot(doc, opts.revision ?? docRevision(doc)), opts.log);
  return {
    current: () => publisher.current(),
    onChange: (listener) => publisher.onChange(listener),
    close: async () => publisher.close(),
    async putSection(name, value, expectedRevision) {
      checkSectionName(name);
      const current = publisher.current();
      if (expectedRevision && expectedRevision !== current.revision) throw revisionMismatch(expectedRevision, current.revision);
      const doc = withSection(current.doc, name, value);
      publisher.publish(buildSnapshot(doc, docRevision(doc)));
      return publisher.current();
    },
    replace(next, revision) {
      const snapshot = buildSnapshot(next, revision ?? docRevision(next));
      publisher.publish(snapshot);
      return publisher.current();
    },
  };
}

/** Prefixes a config error with where the document came from. */
export function configError(origin: string, e: unknown): DomainError {
  if (isDomainError(e)) {
    return new DomainError(e.kind, `${origin}: ${e.message}`, {
      reason: e.reason,
      metadata: { ...e.metadata, config: origin },
      violations: e.violations,
      cause: e,
    });
  }
  return new DomainError("failed_precondition", `${origin}: ${e instanceof Error ? e.message : String(e)}`, {
    reason: "CONFIG_UNREADABLE",
    metadata: { config: origin },
    cause: e,
  });
}

function docRevision(doc: unknown): string {
  return contentRevision(JSON.stringify(doc) ?? "");
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
