// Change-log entries for unit tests of the stream logic.
import type { FieldClock } from "../../../services/records/model.js";
import type { StoredValue } from "../../../services/schema/types.js";
import { changeImage } from "../../../services/store/change-image.js";
import type { LogChange } from "../../../services/store/change-reader.js";

export const clock = (version: number): FieldClock => ({ version, hlc: BigInt(version) << 16n, source: "test", actor: "t", device: "d" });

export interface ChangeInit {
  seq: number;
  id?: string;
  tenant?: string;
  collection?: string;
  /** Fields before (null: the record did not exist). */
  before: Record<string, StoredValue> | null;
  set?: Record<string, StoredValue>;
  cleared?: string[];
  oldVersion?: number;
  deleted?: boolean;
  restored?: boolean;
}

/** A change as the log reader returns it, with image and prior built as the write path builds them. */
export function change(c: ChangeInit): LogChange {
  const set = c.set ?? {};
  const cleared = c.cleared ?? [];
  const oldVersion = c.oldVersion ?? (c.before ? 1 : 0);
  const after: Record<string, StoredValue> = { ...(c.before ?? {}), ...set };
  for (const f of cleared) delete after[f];
  const newVersion = oldVersion + 1;
  const clocks: Record<string, FieldClock> = {};
  for (const f of [...Object.keys(set), ...cleared]) clocks[f] = clock(newVersion);
  if (c.deleted || c.restored) clocks._deleted = clock(newVersion);
  const { image, prior } = changeImage(c.before, after, set, cleared);
  return {
    seq: BigInt(c.seq),
    tenant: c.tenant ?? "default",
    collection: c.collection ?? "customers",
    recordId: c.id ?? "r1",
    oldVersion,
    newVersion,
    set,
    cleared,
    clocks,
    created: c.before === null,
    deleted: c.deleted ?? false,
    commitTime: new Date(1_700_000_000_000 + c.seq),
    image: () => image,
    prior: () => prior,
    size: JSON.stringify({ set, cleared }).length + JSON.stringify(image).length + JSON.stringify(prior).length,
  };
}
