// What `deltamesh verify` reports for one bucket whose digest differs: the
// records the local copy lacks, has in excess, or holds at another version.
import { bucketOf } from "../../changes/digest.js";

export type RecordDiff =
  | { id: string; kind: "missing_locally"; serverVersion: bigint }
  | { id: string; kind: "not_on_server"; localVersion: bigint }
  | { id: string; kind: "version_differs"; localVersion: bigint; serverVersion: bigint };

export function bucketDiffs(
  local: ReadonlyMap<string, bigint>,
  server: readonly { id: string; version: bigint }[],
  bucket: number,
  bucketCount: number,
): RecordDiff[] {
  const out: RecordDiff[] = [];
  const onServer = new Set<string>();
  for (const r of server) {
    onServer.add(r.id);
    const mine = local.get(r.id);
    if (mine === undefined) out.push({ id: r.id, kind: "missing_locally", serverVersion: r.version });
    else if (mine !== r.version) out.push({ id: r.id, kind: "version_differs", localVersion: mine, serverVersion: r.version });
  }
  for (const [id, version] of local) {
    if (!onServer.has(id) && bucketOf(id, bucketCount) === bucket) out.push({ id, kind: "not_on_server", localVersion: version });
  }
  return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

export function describeDiff(d: RecordDiff): string {
  switch (d.kind) {
    case "missing_locally":
      return `${d.id}: missing locally (server has version ${d.serverVersion})`;
    case "not_on_server":
      return `${d.id}: not on the server (local version ${d.localVersion})`;
    case "version_differs":
      return `${d.id}: local version ${d.localVersion}, server version ${d.serverVersion}`;
  }
}
