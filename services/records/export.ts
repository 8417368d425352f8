// ExportRecords: a collection streamed in pages, as the caller may read it.
// Needs the export right; the export is in the audit log before the first
// record leaves (no audit, no export).
import { create } from "@bufbuild/protobuf";
import { ExportRecordsResponseSchema, type ExportRecordsResponse } from "../../gen/deltamesh/v1/records_pb.js";
import type { CallAccess } from "../access/control.js";
import { shownRecord } from "../access/project.js";
import { scanPage } from "../platform/page-token.js";
import type { CollectionSchema, StoredValue } from "../schema/types.js";
import type { RecordStore } from "../store/record-store.js";
import { encodeRecord } from "./convert.js";

/** Records per stream message. */
export const EXPORT_PAGE = 500;

export async function* exportRecords(
  store: RecordStore,
  access: CallAccess,
  collection: CollectionSchema,
  q: { equals: Record<string, StoredValue>; includeDeleted: boolean },
): AsyncGenerator<ExportRecordsResponse> {
  access.require("export", collection.name);
  const view = access.readable(collection);
  const exportable = access.grants(collection, "export");
  // The sensitive fields some read grant may show in clear: what the export can reveal.
  const reads = access.grants(collection, "read");
  const sensitive = [...reads.fieldsOf(reads.grants, "readFields")].filter((f) => collection.fields.get(f)!.sensitive);
  await access.recordNow("export", {
    collection: collection.name,
    fields: sensitive,
    details: { filters: Object.keys(q.equals).sort().join(","), include_deleted: String(q.includeDeleted) },
  });
  const { tenant } = access.principal;
  const filtered = Object.keys(q.equals);
  let after = "";
  let exported = 0;
  for (;;) {
    const page = await scanPage(
      (afterId, limit) => store.list({ tenant, collection: collection.name, equals: q.equals, afterId, limit, includeDeleted: q.includeDeleted }),
      (r) => r.id,
      // A record hiding a filtered field must not match: that would confirm its value.
      (r) => exportable.admits(r.fields) && view.reveals(r.fields, filtered),
      after,
      EXPORT_PAGE,
    );
    if (page.items.length > 0) {
      exported += page.items.length;
      yield create(ExportRecordsResponseSchema, {
        records: page.items.map((r) => {
          const shown = shownRecord(view, view.rulesFor(r.fields)!, r);
          return encodeRecord(collection, shown.value, shown.masked);
        }),
      });
    }
    if (page.next === null) break;
    after = page.next;
  }
  access.record("export", { collection: collection.name, reason: "COMPLETED", details: { records: String(exported) } });
}
