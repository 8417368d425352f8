import { describe, expect, it } from "vitest";
import { compareRank, decideField, laterWins, type MergeRules } from "../../../services/conflicts/merge.js";
import { HybridClock, hlcLogical, hlcPhysicalMs, packHlc } from "../../../services/conflicts/hlc.js";
import type { FieldClock } from "../../../services/records/model.js";
import { storedEquals } from "../../../services/schema/values.js";
import type { ConflictPolicy, StoredValue } from "../../../services/schema/types.js";

const clock = (version: number, ms: number, source = "crm-desktop", actor = "alice", device = "pc"): FieldClock => ({
  version,
  hlc: packHlc(ms),
  source,
  actor,
  device,
});
const rules = (policy: ConflictPolicy, sourcePriority: string[] = ["erp", "crm-desktop", "sales-app"]): MergeRules => ({ policy, sourcePriority });
const decide = (
  r: MergeRules,
  current: { value: StoredValue | undefined; clock: FieldClock | undefined },
  incoming: { value: StoredValue | undefined; clock: FieldClock },
  base: number,
) => decideField(r, current, incoming, base, storedEquals);

describe("decideField", () => {
  const current = { value: "old", clock: clock(3, 1000) };

  it("applies an edit of a field nobody changed since the writer's base, whatever the policy", () => {
    for (const p of ["lww", "source_priority", "keep_original", "manual_review", "reject"] as const) {
      expect(decide(rules(p), current, { value: "new", clock: clock(5, 10) }, 3)).toEqual({ kind: "apply" });
    }
  });

  it("reports an unchanged value without consulting the policy", () => {
    expect(decide(rules("reject"), current, { value: "old", clock: clock(5, 10) }, 0)).toEqual({ kind: "unchanged" });
    expect(decide(rules("reject"), { value: undefined, clock: clock(2, 5) }, { value: undefined, clock: clock(5, 10) }, 0)).toEqual({
      kind: "unchanged",
    });
  });

  it("treats deep-equal lists and JSON as unchanged", () => {
    const c = { value: ["a", "b"], clock: clock(3, 1000) };
    expect(decide(rules("reject"), c, { value: ["a", "b"], clock: clock(5, 10) }, 0)).toEqual({ kind: "unchanged" });
  });

  it("applies any edit to a field that has never been set", () => {
    expect(decide(rules("reject"), { value: undefined, clock: undefined }, { value: "x", clock: clock(1, 1) }, 0)).toEqual({ kind: "apply" });
  });

  describe("lww", () => {
    it("the later HLC wins a concurrent edit", () => {
      expect(decide(rules("lww"), current, { value: "new", clock: clock(4, 2000) }, 2)).toEqual({ kind: "apply", policy: "lww" });
      expect(decide(rules("lww"), current, { value: "new", clock: clock(4, 500) }, 2)).toEqual({
        kind: "superseded",
        policy: "lww",
        winner: current.clock,
      });
    });

    it("breaks HLC ties by source, actor, device, then value, the same way whichever edit arrives first", () => {
      const a = { value: "a" as StoredValue, clock: clock(4, 1000, "erp") };
      const b = { value: "b" as StoredValue, clock: clock(4, 1000, "sales-app") };
      expect(laterWins(b, a)).toBe(true);
      expect(laterWins(a, b)).toBe(false);
      const sameSource = [
        [clock(1, 1000, "s", "bob"), clock(1, 1000, "s", "amy")],
        [clock(1, 1000, "s", "amy", "z"), clock(1, 1000, "s", "amy", "a")],
      ] as const;
      for (const [hi, lo] of sameSource) {
        expect(laterWins({ value: 1, clock: hi }, { value: 1, clock: lo })).toBe(true);
        expect(laterWins({ value: 1, clock: lo }, { value: 1, clock: hi })).toBe(false);
      }
      const c = clock(1, 1000);
      expect(laterWins({ value: "y", clock: c }, { value: "x", clock: c })).toBe(true);
      expect(laterWins({ value: "x", clock: c }, { value: "x", clock: c })).toBe(false);
    });

    it("a blind write (no base) competes with every existing field", () => {
      expect(decide(rules("lww"), current, { value: "new", clock: clock(4, 900) }, 0).kind).toBe("superseded");
    });

    it("clearing is an edit: a later clear wins, an earlier one loses", () => {
      expect(decide(rules("lww"), current, { value: undefined, clock: clock(4, 2000) }, 1)).toEqual({ kind: "apply", policy: "lww" });
      expect(decide(rules("lww"), current, { value: undefined, clock: clock(4, 10) }, 1).kind).toBe("superseded");
    });
  });

  describe("source_priority", () => {
    it("a higher-ranked source wins even with an older edit; a lower one loses even with a newer edit", () => {
      const byCrm = { value: "crm", clock: clock(3, 5000, "crm-desktop") };
      expect(decide(rules("source_priority"), byCrm, { value: "erp", clock: clock(4, 1, "erp") }, 1)).toEqual({
        kind: "apply",
        policy: "source_priority",
      });
      expect(decide(rules("source_priority"), byCrm, { value: "app", clock: clock(4, 9999, "sales-app") }, 1)).toEqual({
        kind: "superseded",
        policy: "source_priority",
        winner: byCrm.clock,
      });
    });

    it("equal rank falls back to last-writer-wins; unlisted sources rank below all listed ones", () => {
      const byApp = { value: "a", clock: clock(3, 5000, "sales-app") };
      expect(decide(rules("source_priority"), byApp, { value: "b", clock: clock(4, 6000, "sales-app") }, 1).kind).toBe("apply");
      expect(decide(rules("source_priority"), byApp, { value: "b", clock: clock(4, 4000, "sales-app") }, 1).kind).toBe("superseded");
      expect(decide(rules("source_priority"), byApp, { value: "b", clock: clock(4, 9000, "pos") }, 1).kind).toBe("superseded");
      expect(compareRank(["erp"], "pos", "ecommerce")).toBe(0);
      expect(compareRank(["erp", "crm"], "erp", "crm")).toBeGreaterThan(0);
    });
  });

  describe("keep_original", () => {
    it("keeps the first value against a concurrent edit, and takes a value when the field is empty", () => {
      expect(decide(rules("keep_original"), current, { value: "new", clock: clock(4, 9999) }, 1)).toEqual({ kind: "kept", winner: current.clock });
      expect(decide(rules("keep_original"), { value: undefined, clock: clock(3, 1) }, { value: "new", clock: clock(4, 2) }, 1)).toEqual({
        kind: "apply",
        policy: "keep_original",
      });
    });
  });

  it("manual_review queues a concurrent edit; reject refuses it naming the winner", () => {
    expect(decide(rules("manual_review"), current, { value: "new", clock: clock(4, 9999) }, 1)).toEqual({ kind: "review" });
    expect(decide(rules("reject"), current, { value: "new", clock: clock(4, 9999) }, 1)).toEqual({ kind: "reject", winner: current.clock });
  });
});

describe("HybridClock", () => {
  it("packs milliseconds and a logical counter", () => {
    const h = packHlc(1_700_000_000_123, 7);
    expect(hlcPhysicalMs(h)).toBe(1_700_000_000_123);
    expect(hlcLogical(h)).toBe(7);
  });

  it("never goes backwards, even when the wall clock does", () => {
    let wall = 10_000;
    const c = new HybridClock(() => wall);
    const a = c.now();
    wall = 5_000;
    const b = c.now();
    const d = c.now();
    expect(b > a && d > b).toBe(true);
  });

  it("orders local time after observed remote time", () => {
    const c = new HybridClock(() => 1_000);
    c.observe(packHlc(50_000, 3));
    expect(c.now() > packHlc(50_000, 3)).toBe(true);
  });

  it("clamps a device's edit time to server time plus the allowed skew, and keeps past edit times", () => {
    const c = new HybridClock(() => 100_000);
    expect(hlcPhysicalMs(c.editTime(100_000 + 3_600_000, 60_000))).toBe(160_000);
    expect(hlcPhysicalMs(c.editTime(40_000, 60_000))).toBe(40_000);
    expect(hlcPhysicalMs(c.editTime(undefined, 60_000))).toBe(100_000);
  });
});
