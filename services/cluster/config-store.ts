// The cluster's config in etcd: the whole document (schemas, policies,
// retention, stream settings, ...) as YAML text in one key,
// `<prefix>config/document`. One key means every change is atomic: a node
// sees the old document or the new one, never a mix. The snapshot revision is
// the etcd revision that wrote the document, the same on every node.
//
// Writes (putSection, replaceDocument) validate the new document whole with
// buildSnapshot before anything is written, then store it compare-and-set on
// the key's revision. Every node watches the key and hot-reloads; a document
// that does not validate (written around deltamesh, e.g. with etcdctl) is
// logged and ignored, the last good one stays current. The watch is backed by
// a re-read after every reconnect and every few seconds.
//
// Seeding: when the key does not exist, the first node to start stores its
// own config file there (create-if-absent, so concurrent first starts agree on
// one document); from then on etcd is the truth and nodes' files are unused.
// Operators replace it with `deltamesh config apply -f <file>`.
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { invalidArgument, isDomainError, type DomainError } from "../platform/errors.js";
import { readConfigFileText } from "../config/file-source.js";
import { convertConfigText, formatOf, parseConfigText, setSectionInText, type ConfigFormat } from "../config/parse.js";
import {
  ConfigPublisher,
  buildSnapshot,
  checkSectionName,
  revisionMismatch,
  type ConfigDocumentSource,
  type ConfigLogger,
  type ConfigSnapshot,
} from "../config/source.js";
import { KEYS, etcdUnavailable } from "./etcd-client.js";

export interface EtcdConfigOptions {
  client: Etcd3;
  prefix: string;
  /** Seeds an empty store. */
  seedFile: string;
  log: ConfigLogger;
  /** Re-read interval backing the watch (default 5 s). */
  resyncMs?: number;
  /** Pause between attempts while etcd is unreachable at start or holds no valid document (default 1 s). */
  retryMs?: number;
  /** Gives up waiting at start when aborted. */
  signal?: AbortSignal;
}

export interface EtcdConfigSource extends ConfigDocumentSource {
  /** Re-reads the key now; resolves true when a newer good document was swapped in. Never rejects. */
  resync(): Promise<boolean>;
}

interface Stored {
  text: string;
  revision: bigint;
}

/** How many times an unconditional write retries when another write slipped in between. */
const UNCONDITIONAL_ATTEMPTS = 5;
/**
 * Largest config document stored: etcd refuses requests over 1.5 MiB by
 * default (--max-request-bytes), with an error that looks like an outage.
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;

function documentTooLarge(bytes: number): DomainError {
  return invalidArgument(`the config document is ${bytes} bytes; at most ${MAX_CONFIG_BYTES} are stored`, [
    { field: "document", description: `at most ${MAX_CONFIG_BYTES} bytes (UTF-8); got ${bytes}`, reason: "TOO_LARGE" },
  ]);
}

/**
 * Loads the document (seeding it from `seedFile` when absent), waiting while
 * etcd is unreachable or holds no valid document, then watches it.
 */
export async function openEtcdConfigSource(opts: EtcdConfigOptions): Promise<EtcdConfigSource> {
  const { client, log } = opts;
  const key = opts.prefix + KEYS.config;
  const retryMs = opts.retryMs ?? 1000;

  const read = async (): Promise<Stored | null> => {
    const res = await client.get(key).exec();
    const kv = res.kvs[0];
    return kv ? stored(kv) : null;
  };

  const validate = (s: Stored): ConfigSnapshot => buildSnapshot(parseConfigText(s.text, "yaml"), s.revision.toString());
  const loadable = (s: Stored): boolean => {
    try {
      validate(s);
      return true;
    } catch {
      return false;
    }
  };

  // Start: the stored document, or our file as the seed.
  let initial: { stored: Stored; snapshot: ConfigSnapshot } | null = null;
  let warned = "";
  while (!initial) {
    if (opts.signal?.aborted) throw etcdUnavailable(opts.signal.reason, "the config store (etcd)");
    try {
      let s = await read();
      if (!s) {
        const seed = await readConfigFileText(opts.seedFile);
        const text = convertConfigText(seed.text, formatOf(opts.seedFile), "yaml");
        const res = await client.if(key, "Create", "==", 0).then(client.put(key).value(text)).commit();
        if (res.succeeded) log.info({ key, seed: opts.seedFile, revision: res.header.revision }, "config store was empty: seeded it from this node's config file");
        s = await read();
      }
      if (s) initial = { stored: s, snapshot: validate(s) };
    } catch (e) {
      const why = isDomainError(e) ? `the stored config is invalid: ${e.message}` : "etcd is unreachable";
      if (why !== warned) log.warn({ key, err: isDomainError(e) ? undefined : e, error: why }, "waiting for a good config in etcd");
      warned = why;
      // A bad seed file is a configuration error of this node: report it.
      if (isDomainError(e) && e.metadata.config === opts.seedFile) throw e;
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  const publisher = new ConfigPublisher(initial.snapshot, log);
  let currentText = initial.stored.text;
  // The highest revision looked at (applied or rejected): events arrive again after reconnects.
  let seen = initial.stored.revision;

  /** Swaps in a stored document newer than any seen; `checked` is its snapshot when already validated. */
  const apply = (s: Stored, origin: string, checked?: ConfigSnapshot): boolean => {
    if (s.revision <= seen) return false;
    seen = s.revision;
    let next: ConfigSnapshot;
    try {
      // Built again under its stored revision: the policy carries the revision
      // too, and views and stream groups are keyed by it (policy.ts).
      next = checked ? buildSnapshot(checked.doc, s.revision.toString()) : validate(s);
    } catch (e) {
      log.warn(
        { key, revision: s.revision.toString(), current: publisher.current().revision, error: e instanceof Error ? e.message : String(e), violations: isDomainError(e) ? e.violations : [] },
        "config in etcd changed but is invalid; keeping the current config",
      );
      return false;
    }
    if (!publisher.publish(next)) return false;
    currentText = s.text;
    log.info({ revision: next.revision, origin }, "config reloaded from etcd");
    return true;
  };

  let resyncing: Promise<boolean> | null = null;
  const resync = (): Promise<boolean> => {
    resyncing ??= read()
      .then((s) => (s ? apply(s, "resync") : false))
      .catch(() => false)
      .finally(() => (resyncing = null));
    return resyncing;
  };

  const watcher: Watcher = client.watch().key(key).startRevision((initial.stored.revision + 1n).toString()).watcher();
  watcher.on("put", (kv) => void apply(stored(kv), "watch"));
  watcher.on("delete", () => log.warn({ key }, "config document deleted from etcd; keeping the current config"));
  watcher.on("connected", () => void resync());
  watcher.on("error", (e) => log.warn({ err: e }, "config watch failed; relying on periodic re-reads"));
  const timer = setInterval(() => void resync(), opts.resyncMs ?? 5000);
  timer.unref();

  /** Validates and stores the text `edit` makes of the stored one, compare-and-set. */
  const write = async (edit: (text: string) => string, expectedRevision: string, what: object): Promise<ConfigSnapshot> => {
    for (let attempt = 1; ; attempt++) {
      let s: Stored | null;
      try {
        s = await read();
      } catch (e) {
        throw etcdUnavailable(e, "the config store (etcd)");
      }
      const current = s?.revision.toString() ?? "0";
      // A stored document no node can load (written around the API, e.g. by
      // etcdctl) is not what GetConfig shows: callers hold the revision of
      // the config in force, and a change based on it replaces the bad one.
      const basedOnInForce = expectedRevision === publisher.current().revision && s !== null && s.revision.toString() !== expectedRevision && !loadable(s);
      if (expectedRevision && expectedRevision !== current && !basedOnInForce) throw revisionMismatch(expectedRevision, current);
      const nextText = edit(basedOnInForce || !s ? currentText : s.text);
      const bytes = Buffer.byteLength(nextText);
      if (bytes > MAX_CONFIG_BYTES) throw documentTooLarge(bytes);
      // Validate before anything is written: a bad document is refused here.
      const checked = buildSnapshot(parseConfigText(nextText, "yaml"), "");
      if (s && nextText === s.text) {
        apply(s, "write", checked);
        return publisher.current();
      }
      let res;
      try {
        res = await client.if(key, "Mod", "==", s ? s.revision.toString() : 0).then(client.put(key).value(nextText)).commit();
      } catch (e) {
        throw etcdUnavailable(e, "the config store (etcd)");
      }
      if (res.succeeded) {
        apply({ text: nextText, revision: BigInt(res.header.revision) }, "write", checked);
        log.info({ revision: res.header.revision, ...what }, "config written to etcd");
        return publisher.current();
      }
      if (expectedRevision || attempt >= UNCONDITIONAL_ATTEMPTS) {
        const now = await read().catch(() => null);
        throw revisionMismatch(expectedRevision || current, now?.revision.toString() ?? "?");
      }
    }
  };

  let writing: Promise<unknown> = Promise.resolve();
  const serialized = (run: () => Promise<ConfigSnapshot>): Promise<ConfigSnapshot> => {
    const p = writing.then(run);
    writing = p.catch(() => undefined);
    return p;
  };

  return {
    store: "etcd",
    current: () => publisher.current(),
    currentText: () => currentText,
    onChange: (listener) => publisher.onChange(listener),
    putSection(name, value, expectedRevision) {
      checkSectionName(name);
      return serialized(() => write((text) => setSectionInText(text, "yaml", name, value), expectedRevision, { section: name }));
    },
    replaceDocument(text: string, format: ConfigFormat, expectedRevision: string) {
      const yaml = convertConfigText(text, format, "yaml");
      return serialized(() => write(() => yaml, expectedRevision, { document: "replaced" }));
    },
    resync,
    async close() {
      publisher.close();
      clearInterval(timer);
      await watcher.cancel().catch(() => undefined);
    },
  };
}

function stored(kv: IKeyValue): Stored {
  return { text: kv.value.toString("utf8"), revision: BigInt(kv.mod_revision) };
}
