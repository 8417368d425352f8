// Config from a local YAML or JSON file, optionally hot-reloaded.
//
// Watching: the file's directory is watched (not the file), so editors that
// save by writing a new file and renaming it over the old one, and Kubernetes
// ConfigMap volumes that swap a `..data` symlink, are both seen. Any event in
// the directory schedules a debounced re-read; a re-read whose content hash
// equals the current revision does nothing. A new document is validated as a
// whole and swapped in only if valid; an invalid or unreadable one is logged
// and ignored, and the last good snapshot stays current.

import { watch, existsSync, type FSWatcher } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { isDomainError } from "../platform/errors.js";
import { convertConfigText, parseConfigText, formatOf, setSectionInText, type ConfigFormat } from "./parse.js";
import {
  ConfigPublisher,
  buildSnapshot,
  checkSectionName,
  configError,
  consoleConfigLogger,
  contentRevision,
  type ConfigDocumentSource,
  type ConfigLogger,
  type ConfigSnapshot,
  revisionMismatch,
} from "./source.js";

/**
 * The shipped example config (`config/example.yaml` at the repository root),
 * found from this module both in a checkout (services/config/) and in a build
 * (dist/services/config/).
 */
export const DEFAULT_CONFIG_PATH: string = (() => {
  const candidates = ["../../config/example.yaml", "../../../config/example.yaml"].map((rel) =>
    fileURLToPath(new URL(rel, import.meta.url)),
  );
  return candidates.find((p) => existsSync(p)) ?? (candidates[0] as string);
})();

export interface FileConfigOptions {
  /** Re-read the file when it changes. Default false. */
  watch?: boolean;
  /** Quiet time after the last file event before re-reading. Default 100 ms. */
  debounceMs?: number;
  /**
   * Also re-read every this many ms (0 = never, the default): a fallback for
   * file systems where change events do not arrive (some network and
   * container bind mounts). Only with `watch`.
   */
  pollIntervalMs?: number;
  log?: ConfigLogger;
}

export interface FileConfigSource extends ConfigDocumentSource {
  readonly path: string;
  /**
   * Re-reads the file now (what a watch event does after the debounce).
   * Resolves to true if a new snapshot was swapped in; never rejects:
   * a bad file is logged and the current snapshot kept.
   */
  reload(): Promise<boolean>;
}

/** Reads, parses and validates a config file. */
export async function readConfigFile(path: string): Promise<ConfigSnapshot> {
  return (await readConfigFileText(path)).snapshot;
}

/** Reads, parses and validates a config file; also returns its text. */
export async function readConfigFileText(path: string): Promise<{ text: string; snapshot: ConfigSnapshot }> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw configError(path, e);
  }
  try {
    return { text, snapshot: buildSnapshot(parseConfigText(text, formatOf(path)), contentRevision(text)) };
  } catch (e) {
    throw configError(path, e);
  }
}

/**
 * Loads a config file (YAML, or JSON for `.json`) and, with `watch`, keeps it
 * current. Rejects when the initial file is missing or invalid.
 */
export async function loadFileConfigSource(path: string, opts: FileConfigOptions = {}): Promise<FileConfigSource> {
  const file = resolve(path);
  const log = opts.log ?? consoleConfigLogger;
  const initial = await readConfigFileText(file);
  const publisher = new ConfigPublisher(initial.snapshot, log);
  // The text of the current snapshot (what `config get` shows).
  let currentText = initial.text;

  let lastRejected: string | null = null;
  let running: Promise<boolean> | null = null;
  let again = false;

  async function reloadOnce(): Promise<boolean> {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (e) {
      // Mid-rename or deleted: keep the current config; the next event retries.
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") log.warn({ err: e, path: file }, "config file unreadable; keeping the current config");
      return false;
    }
    const revision = contentRevision(text);
    if (publisher.closed) return false;
    if (revision === publisher.current().revision) {
      lastRejected = null;
      return false;
    }
    if (revision === lastRejected) return false; // already logged
    let next: ConfigSnapshot;
    try {
      next = buildSnapshot(parseConfigText(text, formatOf(file)), revision);
    } catch (e) {
      lastRejected = revision;
      log.warn(
        {
          path: file,
          revision,
          current: publisher.current().revision,
          error: e instanceof Error ? e.message : String(e),
          violations: isDomainError(e) ? e.violations : [],
        },
        "config file changed but is invalid; keeping the current config",
      );
      return false;
    }
    lastRejected = null;
    const applied = publisher.publish(next);
    if (applied) {
      currentText = text;
      log.info({ path: file, revision }, "config reloaded");
    }
    return applied;
  }

  // Writes are serialized: each one reads, checks and replaces the file whole.
  let writing: Promise<unknown> = Promise.resolve();

  function reload(): Promise<boolean> {
    if (running) {
      // A read is under way and may have missed this change: read once more after it.
      again = true;
      return running;
    }
    running = (async () => {
      let applied = false;
      // Reads and writes of the file take turns: a read started before a
      // write and finished after it would publish the older text over it.
      await writing;
      try {
        do {
          again = false;
          if (await reloadOnce()) applied = true;
        } while (again && !publisher.closed);
      } finally {
        running = null;
      }
      return applied;
    })();
    return running;
  }

  let watcher: FSWatcher | null = null;
  let debounce: NodeJS.Timeout | null = null;
  let poll: NodeJS.Timeout | null = null;
  if (opts.watch) {
    const debounceMs = opts.debounceMs ?? 100;
    const schedule = (): void => {
      if (publisher.closed) return;
      if (debounce) clearTimeout(debounce);
      debounce = setTimeout(() => {
        debounce = null;
        void reload();
      }, debounceMs);
      debounce.unref();
    };
    // Any event, not just ones naming the file: a ConfigMap update names `..data`,
    // and unrelated files in the directory cost one small read and a hash compare.
    watcher = watch(dirname(file), { persistent: false }, () => schedule());
    watcher.on("error", (err) => log.warn({ err, path: file }, "config watch failed; hot reload stopped"));
    if (opts.pollIntervalMs && opts.pollIntervalMs > 0) {
      poll = setInterval(() => void reload(), opts.pollIntervalMs);
      poll.unref();
    }
  }

  /** Validates the text `edit` makes of the file's current text, and writes it whole. */
  async function writeEdited(edit: (text: string) => string, expectedRevision: string, what: object): Promise<ConfigSnapshot> {
    const text = await readFile(file, "utf8").catch((e: unknown) => {
      throw configError(file, e);
    });
    const onDisk = contentRevision(text);
    if (expectedRevision && expectedRevision !== onDisk) throw revisionMismatch(expectedRevision, onDisk);
    const nextText = edit(text);
    const next = buildSnapshot(parseConfigText(nextText, formatOf(file)), contentRevision(nextText));
    // Write-then-rename: a reader (this node's watcher, another process) never sees half a file.
    const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
    await writeFile(tmp, nextText, "utf8");
    await rename(tmp, file);
    if (publisher.publish(next)) {
      currentText = nextText;
      log.info({ path: file, revision: next.revision, ...what }, "config written");
    }
    return publisher.current();
  }

  function putSection(name: string, value: unknown, expectedRevision: string): Promise<ConfigSnapshot> {
    checkSectionName(name);
    // The YAML document model keeps the file's comments and layout around the edited section.
    return writeEdited((text) => setSectionInText(text, formatOf(file), name, value), expectedRevision, { section: name });
  }

  function serialized(write: () => Promise<ConfigSnapshot>): Promise<ConfigSnapshot> {
    const run = Promise.all([writing, running?.catch(() => false)]).then(write);
    writing = run.catch(() => undefined);
    return run;
  }

  return {
    path: file,
    current: () => publisher.current(),
    onChange: (listener) => publisher.onChange(listener),
    store: "file",
    currentText: () => currentText,
    putSection: (name, value, expectedRevision) => serialized(() => putSection(name, value, expectedRevision)),
    replaceDocument: (text: string, format: ConfigFormat, expectedRevision: string) =>
      serialized(() => writeEdited(() => convertConfigText(text, format, formatOf(file)), expectedRevision, { document: "replaced" })),
    reload,
    async close() {
      publisher.close();
      watcher?.close();
      watcher = null;
      if (debounce) clearTimeout(debounce);
      if (poll) clearInterval(poll);
      debounce = poll = null;
      await running?.catch(() => false);
    },
  };
}
