/** Unit tests of pki-ca's policy rules, lint and config validation (no HTTP). */
import { describe, expect, test } from "bun:test";
import { dnsMatches, ipInRange, lint, type TbsSummary } from "../../apps/pki-ca/policy.ts";
import { parsePkiCaConfig } from "../../apps/pki-ca/config.ts";
import { defaultConfig } from "../../src/service/config.ts";
import { AppError } from "../../src/service/errors.ts";
import { PROFILES } from "./helpers.ts";

describe("name rules", () => {
  test("DNS wildcards match subdomains only", () => {
    expect(dnsMatches("*.example.com", "a.example.com")).toBe(true);
    expect(dnsMatches("*.example.com", "a.b.example.com")).toBe(true);
    expect(dnsMatches("*.example.com", "*.example.com")).toBe(true);
    expect(dnsMatches("*.example.com", "example.com")).toBe(false);
    expect(dnsMatches("*.example.com", "badexample.com")).toBe(false);
    expect(dnsMatches("example.com", "example.com")).toBe(true);
    expect(dnsMatches("example.com", "a.example.com")).toBe(false);
  });
  test("IP ranges, v4 and v6", () => {
    expect(ipInRange("10.0.0.0/8", "10.200.3.4")).toBe(true);
    expect(ipInRange("10.0.0.0/8", "11.0.0.1")).toBe(false);
    expect(ipInRange("192.168.1.0/25", "192.168.1.127")).toBe(true);
    expect(ipInRange("192.168.1.0/25", "192.168.1.128")).toBe(false);
    expect(ipInRange("fd00::/8", "fd12:3456::1")).toBe(true);
    expect(ipInRange("fd00::/8", "fe80::1")).toBe(false);
    expect(ipInRange("::ffff:0:0/96", "::ffff:10.0.0.1")).toBe(true);
    expect(ipInRange("10.0.0.0/8", "fd00::1")).toBe(false);
    expect(ipInRange("10.0.0.0/8", "10.0.0.256")).toBe(false);
    expect(ipInRange("0.0.0.0/0", "1.2.3.4")).toBe(true);
  });
});

describe("lint", () => {
  const base: TbsSummary = {
    serialHex: "7f" + "01".repeat(15),
    notBefore: new Date("2026-01-01T00:00:00Z"),
    notAfter: new Date("2026-02-01T00:00:00Z"),
    maxValidityDays: 90,
    sanCount: 1,
    commonName: "a.example.com",
    isCa: false,
    keyType: "P-256",
    keyUsage: ["digitalSignature"],
  };
  const codes = (t: Partial<TbsSummary>) => lint({ ...base, ...t }).map((r) => r.code);
  test("a good leaf passes", () => expect(codes({})).toEqual([]));
  test("serial: negative, too long, zero, odd digits", () => {
    expect(codes({ serialHex: "80" + "00".repeat(15) })).toEqual(["lint_serial"]);
    expect(codes({ serialHex: "01".repeat(21) })).toEqual(["lint_serial"]);
    expect(codes({ serialHex: "00" })).toEqual(["lint_serial"]);
    expect(codes({ serialHex: "abc" })).toEqual(["lint_serial"]);
  });
  test("validity order and cap", () => {
    expect(codes({ notAfter: base.notBefore })).toEqual(["lint_validity"]);
    expect(codes({ notAfter: new Date("2026-06-01T00:00:00Z") })).toEqual(["lint_validity"]);
  });
  test("SAN, CA flag, key usage", () => {
    expect(codes({ sanCount: 0 })).toEqual(["lint_san", "lint_san"]);
    expect(codes({ isCa: true })).toEqual(["lint_ca_flag"]);
    expect(codes({ keyUsage: ["digitalSignature", "keyEncipherment"] })).toEqual(["lint_key_usage"]);
    expect(codes({ keyType: "RSA-2048", keyUsage: ["keyAgreement"] })).toEqual(["lint_key_usage"]);
    expect(codes({ keyType: "RSA-2048", keyUsage: ["digitalSignature", "keyEncipherment"] })).toEqual([]);
  });
});

describe("config", () => {
  const cfg = (app: unknown) => ({ ...defaultConfig("pki-ca", 8443), app: app as Record<string, unknown> });
  const err = (app: unknown) => {
    try {
      parsePkiCaConfig(cfg(app));
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      return (e as AppError).message;
    }
    throw new Error("expected config_invalid");
  };
  test("valid profiles parse with defaults", () => {
    const c = parsePkiCaConfig(cfg({ issuing_cas: ["P-256", "P-384"], profiles: PROFILES, base_url: "http://ca.test/" }));
    expect(c.base_url).toBe("http://ca.test");
    expect(c.profiles.server!.approval).toBe("auto");
    expect(c.profiles.manual!.approval).toBe("manual");
    expect(c.crl_validity_hours).toBe(24);
  });
  test("bad values name the key", () => {
    expect(err({ issuing_cas: ["P-521"] })).toContain("app.issuing_cas.0");
    expect(err({ profiles: { x: { ...PROFILES.server, key_types: ["RSA-1024"] } } })).toContain("app.profiles.x.key_types.0");
    expect(err({ profiles: { x: { ...PROFILES.server, max_validity_days: 5000 } } })).toContain("app.profiles.x.max_validity_days");
    expect(err({ profiles: { x: { ...PROFILES.server, issuing_ca: "Ed25519" } } })).toContain("app.profiles.x.issuing_ca");
    expect(err({ profiles: { x: { ...PROFILES.server, surprise: 1 } } })).toContain("app.profiles.x");
    expect(err({ profiles: { x: { ...PROFILES.server, ip_ranges: ["not-a-range"] } } })).toContain("app.profiles.x.ip_ranges.0");
  });
  test("SCEP RA key size: RSA-3072 unless app.scep or a SCEP profile says RSA-2048; other values name the key", () => {
    const scep = (s: Record<string, unknown>) => ({ issuing_cas: ["P-256", "P-384"], profiles: PROFILES, scep: { tenants: { t: { profiles: { server: {} } } }, ...s } });
    expect(parsePkiCaConfig(cfg(scep({}))).scep.ra_key).toBe("RSA-3072");
    expect(parsePkiCaConfig(cfg(scep({ ra_key: "RSA-2048" }))).scep.ra_key).toBe("RSA-2048");
    const own = parsePkiCaConfig(cfg(scep({ tenants: { t: { profiles: { server: { ra_key: "RSA-2048", ra_signing_key: "P-256" } } } } })));
    expect(own.scep.tenants.t!.profiles.server).toEqual({ ra_key: "RSA-2048", ra_signing_key: "P-256" });
    expect(own.scep.ra_key).toBe("RSA-3072");
    for (const bad of ["RSA-1024", "RSA-4096", "P-256", "rsa-2048", 2048]) {
      expect(err(scep({ ra_key: bad }))).toContain("app.scep.ra_key");
      expect(err(scep({ tenants: { t: { profiles: { server: { ra_key: bad } } } } }))).toContain("app.scep.tenants.t.profiles.server.ra_key");
    }
  });
});

describe("URI and extension rules", () => {
  test("URI patterns: scheme, host wildcard, port, path glob", async () => {
    const { uriMatches, uriProblem } = await import("../../apps/pki-ca/policy.ts");
    expect(uriMatches("spiffe://example.org/*", "spiffe://example.org/ns/a/sa/b")).toBe(true);
    expect(uriMatches("spiffe://example.org/*", "SPIFFE://Example.ORG/x")).toBe(true);
    expect(uriMatches("spiffe://example.org/*", "spiffe://example.org.evil/x")).toBe(false);
    expect(uriMatches("spiffe://example.org/*", "spiffe://evil.example.org/x")).toBe(false);
    expect(uriMatches("spiffe://example.org/*", "https://example.org/x")).toBe(false);
    expect(uriMatches("https://*.example.com/api/*", "https://a.b.example.com/api/v1?x=1")).toBe(true);
    expect(uriMatches("https://*.example.com/api/*", "https://example.com/api/v1")).toBe(false);
    expect(uriMatches("https://*.example.com/api/*", "https://a.example.com/API/v1")).toBe(false);
    expect(uriMatches("https://*.example.com/api/*", "https://a.example.com:8443/api/v1")).toBe(false);
    expect(uriMatches("https://a.example.com:8443/api/*", "https://a.example.com:8443/api/v1")).toBe(true);
    expect(uriMatches("https://a.example.com", "https://a.example.com/")).toBe(true);
    expect(uriMatches("https://a.example.com", "https://a.example.com/x")).toBe(false);
    expect(uriMatches("urn://a.example.com/x.y", "urn://a.example.com/xzy")).toBe(false); // '.' is literal
    expect(uriProblem("spiffe://example.org/a")).toBeUndefined();
    expect(uriProblem("https://u:p@example.org/a")).toContain("userinfo");
    expect(uriProblem("https://example.org/a#frag")).toContain("fragment");
    expect(uriProblem("https://exa mple.org/")).toContain("ASCII");
    expect(uriProblem("mailto:a@example.org")).toContain("scheme://");
    expect(uriProblem("https://*.example.org/")).toContain("host");
  });
  test("config: URI patterns and extension names are validated", () => {
    const cfg = (p: Record<string, unknown>) => ({ ...defaultConfig("pki-ca", 8443), app: { profiles: { x: { ...PROFILES.server, ...p } } } as Record<string, unknown> });
    const message = (p: Record<string, unknown>) => {
      try {
        parsePkiCaConfig(cfg(p));
      } catch (e) {
        expect(e).toBeInstanceOf(AppError);
        expect((e as AppError).code).toBe("config_invalid");
        return (e as AppError).message;
      }
      throw new Error("expected config_invalid");
    };
    const c = parsePkiCaConfig(cfg({ uri: { allow: ["spiffe://example.org/*"] }, required_extensions: ["subjectAltName"], forbidden_extensions: ["basicConstraints:CA", "2.5.29.30"] }));
    expect(c.profiles.x!.uri.allow).toEqual(["spiffe://example.org/*"]);
    expect(parsePkiCaConfig(cfg({})).profiles.x!.forbidden_extensions).toEqual([]);
    expect(message({ uri: { allow: ["not a uri"] } })).toContain("app.profiles.x.uri.allow.0");
    expect(message({ uri: { allow: ["https://a.example.com/#x"] } })).toContain("app.profiles.x.uri.allow.0");
    expect(message({ forbidden_extensions: ["noSuchExtension"] })).toContain("app.profiles.x.forbidden_extensions.0");
    expect(message({ required_extensions: ["basicConstraints:CA"] })).toContain("app.profiles.x.required_extensions");
    expect(message({ required_extensions: ["nameConstraints"], forbidden_extensions: ["2.5.29.30"] })).toContain("also forbidden");
  });
});

describe("UPN rules", () => {
  test("a UPN is name@domain: one @, no spaces or controls, a DNS domain", async () => {
    const { upnProblem } = await import("../../apps/pki-ca/policy.ts");
    const cases: Array<[string, string | undefined]> = [
      ["alice@example.com", undefined],
      ["jürgen.o'neil@corp.example.org", undefined],
      ["alice", "name@domain"],
      ["@example.com", "name@domain"],
      ["a@b@example.com", "name@domain"],
      ["al ice@example.com", "spaces"],
      ["al\u200bice@example.com", "control"],
      ["alice@example.com.", "DNS domain"],
      ["alice@-example.com", "DNS domain"],
      [`${"a".repeat(129)}@example.com`, "128"],
    ];
    for (const [upn, problem] of cases) {
      if (problem === undefined) expect(upnProblem(upn)).toBeUndefined();
      else expect(upnProblem(upn)).toContain(problem);
    }
  });
  test("config: upn_domains default to none, are lowercased, and must be domains; the development tls-client profile admits the e-mail domains", async () => {
    const { developmentProfiles } = await import("../../apps/pki-ca/config.ts");
    const cfg = (p: Record<string, unknown>) => ({ ...defaultConfig("pki-ca", 8443), app: { profiles: { x: { ...PROFILES.server, ...p } } } as Record<string, unknown> });
    expect(parsePkiCaConfig(cfg({})).profiles.x!.upn_domains).toEqual([]);
    expect(parsePkiCaConfig(cfg({ upn_domains: ["Corp.Example.COM"] })).profiles.x!.upn_domains).toEqual(["corp.example.com"]);
    expect(() => parsePkiCaConfig(cfg({ upn_domains: ["*.example.com"] }))).toThrow("app.profiles.x.upn_domains.0");
    const dev = developmentProfiles();
    expect(dev["tls-client"]!.upn_domains).toEqual(dev["tls-client"]!.email_domains);
    expect(dev["tls-server"]!.upn_domains).toEqual([]);
  });
});
