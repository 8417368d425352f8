// The expectations of the records interop scenario, shared by every client
// stack that runs it (Python grpcio, grpc-js with proto-loader).
import { expect, it } from "vitest";
import type { RecordsObserved } from "../../interop/records-observed.js";

export interface ScenarioRun {
  /** Key prefix the scenario was run with. */
  prefix: string;
  /** The `device` its mutations named. */
  device: string;
}

/** Registers the scenario's tests; `observed` is read when they run (after beforeAll). */
export function recordsScenarioTests(observed: () => RecordsObserved, run: ScenarioRun): void {
  it("writes a batch, and a retried client_mutation_id replays the first outcome", () => {
    const { created, retry, updated_version } = observed();
    expect(created.map((r) => [r.version, r.created])).toEqual([
      [1, true],
      [1, true],
    ]);
    expect(retry).toEqual({ id: created[0]!.id, version: 1, replayed: true });
    expect(updated_version).toBe(2);
  });

  it("reads a version conflict's ErrorInfo (reason, current version) from grpc-status-details-bin", () => {
    const { conflict, created } = observed();
    expect(conflict.code).toBe("ABORTED");
    expect(conflict.error_info).toMatchObject({
      reason: "VERSION_MISMATCH",
      domain: "deltamesh.dev",
      metadata: { current_version: "2", expected_version: "1", id: created[0]!.id },
    });
    expect(conflict.resource_info).toEqual({ type: "record", name: `customers/${created[0]!.id}` });
  });

  it("reads every field violation of a bad write as BadRequest", () => {
    const { invalid, not_found } = observed();
    expect(invalid.code).toBe("INVALID_ARGUMENT");
    // Map entries (and so violations) come in whatever order the client's map iterates.
    expect(invalid.bad_request?.map((v) => [v.field, v.reason]).sort()).toEqual([
      ["mutations[0].set.phone", "PHONE_INVALID"],
      ["mutations[0].set.region", "NOT_IN_ENUM"],
    ]);
    expect(not_found).toMatchObject({ code: "NOT_FOUND", error_info: { reason: "RECORD_NOT_FOUND" } });
  });

  it("reads records back by id, identity key, batch, filter and history", () => {
    const r = observed();
    const id = r.created[0]!.id;
    expect(r.get_by_id).toEqual({
      id,
      version: 2,
      deleted: false,
      fields: { erp_id: `${run.prefix}-A`, level: "key", name: "Li Lei", phone: "+8613800138000", region: "east_china" },
    });
    expect(r.get_by_phone).toEqual(r.get_by_id);
    expect(r.batch_get).toEqual({ found: [id], missing: [`${run.prefix}-missing`] });
    expect(r.list_north).toEqual(["Han Meimei"]);
    expect(r.history).toEqual([
      { old: 0, new: 1, set: ["erp_id", "name", "phone", "region"], source: "crm-desktop", device: run.device },
      { old: 1, new: 2, set: ["level"], source: "crm-desktop", device: run.device },
    ]);
  });
}
