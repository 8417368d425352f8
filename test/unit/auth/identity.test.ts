// Mapping verified credentials to principals, and the auth settings.
import type { PeerCertificate } from "node:tls";
import { describe, expect, it } from "vitest";
import { principalFromCertificate, principalFromClaims } from "../../../services/platform/auth/identity.js";
import { resolveAuthSettings } from "../../../services/platform/auth/settings.js";
import { DomainError } from "../../../services/platform/errors.js";
import { example } from "../access/fixtures.js";

describe("principalFromClaims", () => {
  it("maps sub, tenant, roles and attributes", () => {
    const p = principalFromClaims({
      sub: "li",
      tenant: "acme",
      roles: ["sales", "sales", 7],
      regions: ["east_china"],
      device_class: "mobile",
      attributes: { department: "retail", level: 3, sub: "spoof" },
      other: "ignored",
    });
    expect(p).toEqual({ subject: "li", tenant: "acme", roles: ["sales"], attributes: { department: "retail", regions: ["east_china"], device_class: "mobile" } });
  });

  it("reads space-separated roles, nested role claims and the default tenant", () => {
    expect(principalFromClaims({ sub: "a", roles: "sales  finance" }).roles).toEqual(["sales", "finance"]);
    const kc = principalFromClaims({ sub: "a", realm_access: { roles: ["admin"] } }, { tenantClaim: "org", rolesClaim: "realm_access.roles", attributeClaims: [] });
    expect(kc).toMatchObject({ tenant: "default", roles: ["admin"], attributes: {} });
  });

  it("no roles claim: no roles (deny by default)", () => {
    expect(principalFromClaims({ sub: "a" }).roles).toEqual([]);
  });

  it.each([{}, { sub: "" }, { sub: 5 }, { sub: "a", tenant: "" }, { sub: "a", tenant: ["x"] }])("refuses %j as UNAUTHENTICATED", (claims) => {
    expect(() => principalFromClaims(claims)).toThrow(DomainError);
    try {
      principalFromClaims(claims);
    } catch (e) {
      expect((e as DomainError).kind).toBe("unauthenticated");
    }
  });
});

describe("principalFromCertificate", () => {
  const cert = (subject: Record<string, string>, fingerprint256 = "AA:BB") => ({ subject, fingerprint256 }) as unknown as PeerCertificate;
  const certs = [
    ...example.policy.certificates,
    { match: { cn: "pos", o: "Shop" }, subject: "svc-pos", tenant: "t2", roles: ["service"], attributes: {} },
    { match: { fingerprint256: "CC:DD" }, subject: "pinned", tenant: "default", roles: [], attributes: {} },
  ];

  it("maps a matching subject; every given part must match", () => {
    expect(principalFromCertificate(cert({ CN: "erp-gateway" }), certs)).toMatchObject({ subject: "svc-erp", roles: ["erp_integration"], attributes: { device_class: "server" } });
    expect(principalFromCertificate(cert({ CN: "pos", O: "Shop" }), certs)).toMatchObject({ subject: "svc-pos", tenant: "t2" });
    expect(principalFromCertificate(cert({ CN: "pos", O: "Other" }), certs)).toBeNull();
    expect(principalFromCertificate(cert({ CN: "x" }, "cc:dd"), certs)?.subject).toBe("pinned");
    expect(principalFromCertificate(cert({ CN: "nobody" }), certs)).toBeNull();
  });
});

describe("auth settings", () => {
  it("no JWT settings: tokens are not verified", () => {
    expect(resolveAuthSettings({}).jwt).toBeUndefined();
  });

  it("refuses a half-configured verifier, naming what is missing", () => {
    expect(() => resolveAuthSettings({ jwt: { issuer: "https://i" } })).toThrow(/DELTAMESH_JWT_AUDIENCE.*DELTAMESH_JWT_JWKS_FILE/);
  });

  it("never accepts alg none", () => {
    expect(() => resolveAuthSettings({ jwt: { issuer: "i", audience: ["a"], jwks: { keys: [] }, algorithms: ["RS256", "none"] } })).toThrow(/none/);
  });

  it("fills defaults", () => {
    const s = resolveAuthSettings({ jwt: { issuer: "i", audience: ["a"], jwksFile: "/x.json" } });
    expect(s.jwt).toMatchObject({ algorithms: ["RS256", "PS256", "ES256", "ES384", "EdDSA"], clockToleranceSec: 30, tenantClaim: "tenant", rolesClaim: "roles" });
    expect(s.devRoles).toEqual(["admin"]);
  });
});

describe("development attribute header", () => {
  it("reads strings, bracketed and comma lists; ignores junk", async () => {
    const { parseDevAttributes } = await import("../../../services/platform/auth/authenticate.js");
    expect(parseDevAttributes("regions=[east_china]; device_class=mobile; team=a,b; =x; junk")).toEqual({
      regions: ["east_china"],
      device_class: "mobile",
      team: ["a", "b"],
    });
    expect(parseDevAttributes(null)).toEqual({});
  });
});
