// Config document text (YAML or JSON) to plain data. Shared by the file
// source and, later, the etcd source (which stores the same text).

import { isMap, parseDocument, stringify } from "yaml";
import { invalidArgument } from "../platform/errors.js";

export type ConfigFormat = "yaml" | "json";

/** The format a file name implies: .json is JSON, anything else YAML (a superset of JSON). */
export function formatOf(path: string): ConfigFormat {
  return path.toLowerCase().endsWith(".json") ? "json" : "yaml";
}

/**
 * Parses document text. YAML 1.2 core schema: no implicit dates, `yes`/`no`
 * stay strings, duplicate keys are an error, at most 100 alias expansions.
 * @throws DomainError invalid_argument, reason CONFIG_SYNTAX, one violation per syntax error (with line:column).
 */
export function parseConfigText(text: string, format: ConfigFormat = "yaml"): unknown {
  const body = text.startsWith("\uFEFF") ? text.slice(1) : text;
  if (format === "json") {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body) as unknown;
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      throw invalidArgument(`config is not valid JSON: ${msg}`, [{ field: "", description: msg, reason: "CONFIG_SYNTAX" }], "CONFIG_SYNTAX");
    }
    // JSON.parse keeps the last of duplicate keys and drops the others
    // silently; JSON is YAML, whose parser refuses them with their line.
    yamlDocument(body);
    return parsed;
  }
  const doc = yamlDocument(body);
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw invalidArgument(`config is not valid YAML: ${msg}`, [{ field: "", description: msg, reason: "CONFIG_SYNTAX" }], "CONFIG_SYNTAX");
  }
}

/** The parsed YAML document; CONFIG_SYNTAX listing every error (duplicate keys included). */
function yamlDocument(body: string) {
  const doc = parseDocument(body, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const violations = doc.errors.map((err) => {
      const at = err.linePos?.[0];
      const where = at ? `line ${at.line}, column ${at.col}: ` : "";
      return { field: "", description: `${where}${firstLine(err.message)}`, reason: "CONFIG_SYNTAX" };
    });
    throw invalidArgument(
      `config is not valid YAML: ${violations.map((v) => v.description).join("; ")}`,
      violations,
      "CONFIG_SYNTAX",
    );
  }
  return doc;
}

function firstLine(s: string): string {
  const i = s.indexOf("\n");
  return i < 0 ? s : s.slice(0, i);
}

/**
 * The document text with top-level section `name` replaced by `value`
 * (`null`: removed). YAML keeps its comments and the layout of the other
 * sections; JSON is re-serialized.
 */
export function setSectionInText(text: string, format: ConfigFormat, name: string, value: unknown): string {
  if (format === "json") {
    const doc = (parseConfigText(text, "json") ?? {}) as Record<string, unknown>;
    if (value === null || value === undefined) delete doc[name];
    else doc[name] = value;
    return JSON.stringify(doc, null, 2) + "\n";
  }
  const doc = parseDocument(text.startsWith("\uFEFF") ? text.slice(1) : text, { uniqueKeys: true });
  if (doc.errors.length > 0 || (doc.contents !== null && !isMap(doc.contents))) parseConfigText(text, "yaml"); // throws the syntax error
  if (value === null || value === undefined) doc.delete(name);
  else doc.set(name, doc.createNode(value));
  return doc.toString();
}

/** Document text in another format (the same text when the formats match). */
export function convertConfigText(text: string, from: ConfigFormat, to: ConfigFormat): string {
  if (from === to) return text;
  const doc = parseConfigText(text, from);
  return to === "json" ? JSON.stringify(doc, null, 2) + "\n" : stringify(doc);
}
