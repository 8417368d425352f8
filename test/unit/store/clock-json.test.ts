// Field clocks serialized by hand for the write path must be the very JSON
// the generic serializer gives, so stored clocks read back the same.
import { describe, expect, it } from "vitest";
import { clocksFromJson, clocksJsonText, clocksToJson } from "../../../services/store/clock-json.js";
import type { FieldClock } from "../../../services/records/model.js";

const clock = (version: number, hlc: bigint, source: string, actor = "li.lei", device = ""): FieldClock => ({ version, hlc, source, actor, device });

describe("clocksJsonText", () => {
  it("writes no fields as an empty object", () => {
    expect(clocksJsonText({})).toBe("{}");
  });

  it("writes what JSON.stringify(clocksToJson(...)) writes, names and texts escaped, HLCs beyond 2^53 exact", () => {
    const clocks: Record<string, FieldClock> = {
      name: clock(1, 0n, "crm-desktop"),
      'we"ird\\name\u001e': clock(7, 2n ** 63n - 1n, 'erp "main"\n', "张三 😀", "dev\u0000ice"),
      phone: clock(2 ** 40, 117669945448726528n, "sales-app", "", "iPhone 15"),
    };
    const text = clocksJsonText(clocks);
    expect(text).toBe(JSON.stringify(clocksToJson(clocks)));
    expect(clocksFromJson(JSON.parse(text) as ReturnType<typeof clocksToJson>)).toEqual(clocks);
  });
});
