import { describe, expect, it } from "vitest";
import { coalesced } from "../../../services/cluster/coalesce.js";

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("coalesced", () => {
  it("never overlaps runs and folds calls made during a run into one more run", async () => {
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const run = coalesced(async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs++;
      await tick();
      active--;
    }, () => undefined);
    const first = run();
    const during = [run(), run(), run()];
    await Promise.all([first, ...during]);
    expect(maxActive).toBe(1);
    expect(runs).toBe(2);
    await run();
    expect(runs).toBe(3);
  });

  it("hands failures to onError and keeps working", async () => {
    const errors: unknown[] = [];
    let fail = true;
    const run = coalesced(async () => {
      if (fail) throw new Error("boom");
    }, (e) => errors.push(e));
    await expect(run()).resolves.toBeUndefined();
    fail = false;
    await run();
    expect(errors).toHaveLength(1);
  });

  it("runs again for a call made when a run returns without awaiting", async () => {
    let runs = 0;
    const run = coalesced(async () => {
      runs++;
    }, () => undefined);
    await run();
    await run();
    expect(runs).toBe(2);
  });
});
