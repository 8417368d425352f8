// Every mask, with ordinary, short and odd input: a mask may degrade to more
// hiding, never to less.
import { describe, expect, it } from "vitest";
import { applyMask, maskEmail, maskIdNumber, maskPhone, REDACTED, tenantHasher } from "../../../services/access/masks.js";

const secret = new TextEncoder().encode("test-secret");
const hash = tenantHasher(secret, "acme");

describe("phone mask", () => {
  it.each([
    ["13812345678", "138****5678"],
    ["+8613812345678", "+86 138****5678"],
    ["+86 138 1234 5678", "+86 138****5678"],
    ["138-1234-5678", "138****5678"],
    ["+12025550123", "+1 20****0123"],
    ["+85291234567", "+852 ****4567"],
    ["１３８１２３４５６７８", "138****5678"], // full-width digits typed through an IME
  ])("%s -> %s", (input, out) => expect(maskPhone(input)).toBe(out));

  it.each(["", "1", "12", "123", "1234", "+", "+86", "abc", "电话", "+８６"])("hides short or digit-less input entirely: %j", (input) => {
    expect(maskPhone(input)).toBe("****");
  });

  it("never shows more than the last four digits of a short number", () => {
    expect(maskPhone("12345")).toBe("****5");
    expect(maskPhone("1234567")).toBe("****567");
    expect(maskPhone("12345678")).toBe("****5678");
  });

  it("drops letters of a malformed number instead of echoing them", () => {
    expect(maskPhone("138abcd5678")).toBe("****678");
    expect(maskPhone("call 138 1234 5678 now")).toBe("138****5678");
  });

  it("treats an unknown calling code as part of the number", () => {
    expect(maskPhone("+99912345678")).toBe("999****5678");
  });
});

describe("id number mask", () => {
  it.each([
    ["110105199001011234", "110105********1234"],
    ["11010519900101123X", "110105********123X"],
    ["110105900101123", "110105*****1123"], // 15-digit first-generation card
    ["E12345678", "E1*****78"], // passport
    ["12345", "1***5"],
    ["1234", "****"],
    ["", "****"],
    ["  110105199001011234 ", "110105********1234"],
  ])("%j -> %j", (input, out) => expect(maskIdNumber(input)).toBe(out));

  it("counts characters, not UTF-16 units (never splits a surrogate pair)", () => {
    expect(maskIdNumber("😀abcdef😀")).toBe("😀a****f😀");
    const masked = maskIdNumber("𠀀𠀁𠀂𠀃𠀄𠀅𠀆𠀇");
    expect(Array.from(masked)).toEqual(["𠀀", "𠀁", "*", "*", "*", "*", "𠀆", "𠀇"]);
    expect(Buffer.from(masked, "utf8").toString("utf8")).toBe(masked); // no lone surrogate (would become U+FFFD)
  });
});

describe("email mask", () => {
  it.each([
    ["zhangsan@example.com", "z***@example.com"],
    ["zs@example.com", "z***@example.com"],
    ["z@example.com", "***@example.com"],
    ["张三@例子.中国", "张***@例子.中国"],
    ["😀x@example.com", "😀***@example.com"],
    ["a@b@example.com", "a***@example.com"],
  ])("%j -> %j", (input, out) => expect(maskEmail(input)).toBe(out));

  it.each(["", "@", "no-at-sign", "@example.com", "user@", "   "])("redacts what is not local@domain: %j", (input) => {
    expect(maskEmail(input)).toBe(REDACTED);
  });
});

describe("keyed hash", () => {
  it("is stable per tenant and differs across tenants and keys", () => {
    const again = tenantHasher(secret, "acme");
    const other = tenantHasher(secret, "globex");
    const otherKey = tenantHasher(new TextEncoder().encode("another"), "acme");
    expect(hash("oWx_openid")).toBe(again("oWx_openid"));
    expect(hash("oWx_openid")).not.toBe(other("oWx_openid"));
    expect(hash("oWx_openid")).not.toBe(otherKey("oWx_openid"));
    expect(hash("oWx_openid")).toMatch(/^[0-9a-f]{32}$/);
  });

  it("hashes empty and non-ASCII text", () => {
    expect(hash("")).toMatch(/^[0-9a-f]{32}$/);
    expect(hash("微信")).not.toBe(hash("微"));
  });
});

describe("applyMask", () => {
  it("none returns the value unchanged, whatever its type", () => {
    for (const v of ["x", 3, true, null, ["a"], { a: 1 }]) expect(applyMask("none", v, hash)).toEqual(v);
  });

  it("redact hides every type behind the same text", () => {
    for (const v of ["", "secret", 12345, false, "1990-01-01T00:00:00Z", ["a", "b"], { deep: { x: 1 } }]) {
      expect(applyMask("redact", v, hash)).toBe(REDACTED);
    }
  });

  it("text masks redact values that are not text", () => {
    expect(applyMask("phone", 13812345678, hash)).toBe(REDACTED);
    expect(applyMask("email", ["a@b.c"], hash)).toBe(REDACTED);
    expect(applyMask("id_number", null, hash)).toBe(REDACTED);
  });

  it("hash covers any type, by its JSON text", () => {
    expect(applyMask("hash", 42, hash)).toBe(hash("42"));
    expect(applyMask("hash", ["a"], hash)).toBe(hash('["a"]'));
    expect(applyMask("hash", "42", hash)).toBe(hash("42"));
  });

  it("dispatches to each text mask", () => {
    expect(applyMask("phone", "+8613812345678", hash)).toBe("+86 138****5678");
    expect(applyMask("id_number", "110105199001011234", hash)).toBe("110105********1234");
    expect(applyMask("email", "li@example.com", hash)).toBe("l***@example.com");
  });
});
