import { describe, expect, it } from "vitest";
import {
  applyNormalizers,
  normalize,
  normalizeEmail,
  normalizeLowercase,
  normalizePhone,
  normalizeTrim,
} from "../../../services/schema/normalize.js";

const ok = (value: string) => ({ ok: true, value });

describe("trim", () => {
  it.each([
    ["  a b  ", "a b"],
    ["", ""],
    ["   ", ""],
    ["\t\na\r\n", "a"],
    ["\u3000张三\u3000", "张三"], // ideographic space
    ["\u00a0x\ufeff", "x"],
  ])("%j -> %j", (input, out) => {
    expect(normalizeTrim(input)).toEqual(ok(out));
  });
});

describe("lowercase", () => {
  it.each([
    ["ABC", "abc"],
    ["", ""],
    ["Straße ÄÖ", "straße äö"],
    ["İ", "i̇"], // locale-independent
    ["张三 ABC", "张三 abc"],
  ])("%j -> %j", (input, out) => {
    expect(normalizeLowercase(input)).toEqual(ok(out));
  });
});

describe("email", () => {
  it.each([
    ["Zhang.San@Example.COM", "zhang.san@example.com"],
    ["  li@corp.cn  ", "li@corp.cn"],
    ["ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "zhang@example.com"], // full-width from an IME
    ["a+tag@sub.example.com.cn", "a+tag@sub.example.com.cn"],
    ["o'brien@example.ie", "o'brien@example.ie"],
    ["用户@例子.中国", "用户@例子.中国"],
    ["x@a-b.io", "x@a-b.io"],
  ])("%j -> %j", (input, out) => {
    expect(normalizeEmail(input)).toEqual(ok(out));
  });

  it.each([
    ["", "it is empty"],
    ["   ", "it is empty"],
    ["plainaddress", 'no "@"'],
    ["a@b@c.com", 'more than one "@"'],
    ["@example.com", 'nothing before the "@"'],
    ["a@", 'nothing after the "@"'],
    ["a@localhost", "has no dot"],
    ["a b@example.com", "characters an address cannot have"],
    [".a@example.com", "characters an address cannot have"],
    ["a..b@example.com", "characters an address cannot have"],
    ["a.@example.com", "characters an address cannot have"],
    ["a@-example.com", "not a valid host name"],
    ["a@example..com", "not a valid host name"],
    ["a@example.com.", "not a valid host name"],
    ["a@1.2.3.4", "not a valid host name"],
    ["a@exa mple.com", "not a valid host name"],
    ["x".repeat(65) + "@example.com", "longer than 64"],
    ["a@" + "b".repeat(250) + ".com", "longer than 254"],
  ])("refuses %j (%s)", (input, why) => {
    const r = normalizeEmail(input);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toBe("EMAIL_INVALID");
    expect(r.description).toContain("is not a valid email address");
    expect(r.description).toContain(why);
  });
});

describe("phone", () => {
  it.each([
    ["138 0013 8000", "CN", "+8613800138000"],
    ["13800138000", "CN", "+8613800138000"],
    ["+1 415 555 2671", "CN", "+14155552671"],
    ["+86 138 0013 8000", "CN", "+8613800138000"],
    ["+86-138-0013-8000", "CN", "+8613800138000"],
    ["0086 138 0013 8000", "CN", "+8613800138000"],
    ["8613800138000", "CN", "+8613800138000"],
    ["(+86) 138 0013 8000", "CN", "+8613800138000"],
    ["（+86）13800138000", "CN", "+8613800138000"],
    ["tel:+8613800138000", "CN", "+8613800138000"],
    ["  138.0013.8000 ", "CN", "+8613800138000"],
    ["１３８００１３８０００", "CN", "+8613800138000"], // full-width digits
    ["１３８－００１３－８０００", "CN", "+8613800138000"],
    ["＋８６ １３８００１３８０００", "CN", "+8613800138000"],
    ["199 1234 5678", "CN", "+8619912345678"],
    ["166 1234 5678", "CN", "+8616612345678"],
    ["010-6552 9988", "CN", "+861065529988"], // Beijing landline
    ["(021) 6234 5678", "CN", "+862162345678"], // Shanghai landline
    ["0755-8888 8888", "CN", "+8675588888888"], // Shenzhen landline
    ["400 810 8888", "CN", "+864008108888"], // shared-cost service number
    ["+852 9123 4567", "CN", "+85291234567"],
    ["9123 4567", "HK", "+85291234567"],
    ["(415) 555-2671", "US", "+14155552671"],
    ["+8613800138000", "", "+8613800138000"],
  ])("%j in %s -> %s", (input, region, out) => {
    expect(normalizePhone(input, region)).toEqual(ok(out));
  });

  it("reports an invalid number naming the region", () => {
    expect(normalizePhone("12345", "CN")).toEqual({
      ok: false,
      reason: "PHONE_INVALID",
      description: '"12345" is not a valid phone number for region CN',
    });
  });

  it.each([
    ["", "CN", "it is empty"],
    ["   ", "CN", "it is empty"],
    ["abc", "CN", ""],
    ["11111111111", "CN", ""], // right length, unassigned range
    ["10012345678", "CN", ""],
    ["138 0013 800", "CN", ""], // one digit short
    ["138 0013 80000", "CN", ""],
    ["call 138 0013 8000 now", "CN", ""], // no guessing from text
    ["13800138000 ext. 12", "CN", "extensions are not supported"],
    ["13800138000转123", "CN", ""],
    ["+1 234", "CN", ""],
    ["13800138000", "", "must start with + and a country code"],
    ["1".repeat(300), "CN", ""],
  ])("refuses %j in %j", (input, region, why) => {
    const r = normalizePhone(input, region);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.reason).toBe("PHONE_INVALID");
    expect(r.description).toContain("is not a valid phone number");
    expect(r.description).toContain(why);
  });

  it("says which region an unprefixed number was read in, but not for +numbers", () => {
    const a = normalizePhone("555", "US");
    const b = normalizePhone("+1 555", "CN");
    expect(!a.ok && a.description).toBe('"555" is not a valid phone number for region US');
    expect(!b.ok && b.description).toBe('"+1 555" is not a valid phone number');
  });

  it("answers a repeated number the same way, per region, also once many others were seen", () => {
    expect(normalizePhone("13800138000", "CN")).toEqual(ok("+8613800138000"));
    expect(normalizePhone("13800138000", "")).toMatchObject({ ok: false, reason: "PHONE_INVALID" });
    expect(normalizePhone("13800138000", "CN")).toEqual(ok("+8613800138000"));
    for (let i = 0; i < 12_000; i++) normalizePhone(`+86138${String(i).padStart(8, "0")}`, "CN");
    expect(normalizePhone("13800138000", "")).toMatchObject({ ok: false, reason: "PHONE_INVALID" });
    expect(normalizePhone("+8613800000007", "CN")).toEqual(ok("+8613800000007"));
  });

  it("shortens very long input in messages", () => {
    const r = normalizePhone("9".repeat(500), "CN");
    expect(!r.ok && r.description.length).toBeLessThan(120);
  });
});

describe("normalize / applyNormalizers", () => {
  const opts = { defaultPhoneRegion: "CN" };
  it("dispatches by name", () => {
    expect(normalize("trim", " a ", opts)).toEqual(ok("a"));
    expect(normalize("lowercase", "A", opts)).toEqual(ok("a"));
    expect(normalize("email", "A@B.CO", opts)).toEqual(ok("a@b.co"));
    expect(normalize("phone", "13800138000", opts)).toEqual(ok("+8613800138000"));
  });

  it("applies in order and stops at the first failure", () => {
    expect(applyNormalizers(["trim", "lowercase"], "  AbC ", opts)).toEqual(ok("abc"));
    expect(applyNormalizers([], "  AbC ", opts)).toEqual(ok("  AbC "));
    const r = applyNormalizers(["trim", "phone", "lowercase"], " 12345 ", opts);
    expect(r).toEqual({ ok: false, reason: "PHONE_INVALID", description: '"12345" is not a valid phone number for region CN' });
  });
});
