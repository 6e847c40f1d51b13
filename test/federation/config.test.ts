/** The `federation` config section: defaults, environment variables, and bad values named by key. */
import { describe, expect, test } from "bun:test";
import { defaultConfig, loadConfig, ServiceConfigSchema, type ServiceConfig } from "../../src/service/config.ts";
import { checkFederationConfig } from "../../src/federation/config.ts";
import { Federation, identityEndpoints } from "../../src/federation/federation.ts";
import { resolveConfig } from "../../src/service/service.ts";
import { learnPs } from "../../apps/learn-ps/service.ts";

const load = (env: Record<string, string> = {}, argv: string[] = []) =>
  loadConfig({ schema: ServiceConfigSchema, defaults: defaultConfig("sm-kms", 8080) as never, argv, env }) as ServiceConfig;

const message = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected a config error");
};

describe("federation config", () => {
  test("defaults: identity falls back to its cached JWKS, nothing is federated without a URL", () => {
    const c = load();
    expect(c.federation.identity).toMatchObject({ fallback: "cached_jwks", timeout_ms: 5000, retries: 2, breaker_failures: 5, health_path: "/livez" });
    expect(c.federation.jose.fallback).toBe("local_crypto");
    expect(c.federation.ca.fallback).toBe("cached_certificates");
    const f = Federation.fromConfig(c);
    expect(f.client("identity")).toBeUndefined();
    expect(f.readiness()).toEqual({ ok: true, peers: {} });
  });

  test("environment variables and flags reach every key", () => {
    const c = load(
      {
        CRYPTOUTIL_FEDERATION_IDENTITY_URL: "https://identity-authz:18000",
        CRYPTOUTIL_FEDERATION_IDENTITY_TIMEOUT_MS: "2500",
        CRYPTOUTIL_FEDERATION_IDENTITY_BREAKER_FAILURES: "3",
        CRYPTOUTIL_FEDERATION_IDENTITY_FALLBACK: "reject_all",
        CRYPTOUTIL_FEDERATION_CA_URL: "https://pki-ca.cryptoutil.svc.cluster.local:8443",
      },
      ["--federation.jose.url=https://jose-ja:9443", "--federation.jose.retries=0"],
    );
    expect(c.federation.identity).toMatchObject({ url: "https://identity-authz:18000", timeout_ms: 2500, breaker_failures: 3, fallback: "reject_all" });
    expect(c.federation.ca.url).toBe("https://pki-ca.cryptoutil.svc.cluster.local:8443");
    expect(c.federation.jose).toMatchObject({ url: "https://jose-ja:9443", retries: 0 });
    const f = Federation.fromConfig(c);
    expect(f.client("identity")?.baseUrl).toBe("https://identity-authz:18000");
    expect(f.client("jose")?.baseUrl).toBe("https://jose-ja:9443");
    expect(f.client("ca")?.baseUrl).toBe("https://pki-ca.cryptoutil.svc.cluster.local:8443");
  });

  test("identity's URL alone gives the per-tenant issuer and JWKS; auth.* wins when set", () => {
    const c = load({ CRYPTOUTIL_FEDERATION_IDENTITY_URL: "https://identity-authz:18000/" });
    expect(identityEndpoints(c)).toEqual({ issuer: "https://identity-authz:18000/t/{tenant}", jwksUrl: "https://identity-authz:18000/t/{tenant}/jwks", baseUrl: "https://identity-authz:18000", caFile: undefined });
    const wired = load({ CRYPTOUTIL_AUTH_ISSUER: "https://127.0.0.1:18000/t/{tenant}", CRYPTOUTIL_AUTH_JWKS_URL: "https://127.0.0.1:18000/t/{tenant}/jwks", CRYPTOUTIL_AUTH_CA_FILE: "ca.pem" });
    expect(identityEndpoints(wired)).toEqual({ issuer: "https://127.0.0.1:18000/t/{tenant}", jwksUrl: "https://127.0.0.1:18000/t/{tenant}/jwks", baseUrl: "https://127.0.0.1:18000", caFile: "ca.pem" });
  });

  test("a bad value names its key", () => {
    expect(message(() => load({ CRYPTOUTIL_FEDERATION_IDENTITY_TIMEOUT_MS: "soon" }))).toMatch(/^federation\.identity\.timeout_ms: /);
    expect(message(() => load({ CRYPTOUTIL_FEDERATION_IDENTITY_RETRIES: "-1" }))).toMatch(/^federation\.identity\.retries: /);
    expect(message(() => load({ CRYPTOUTIL_FEDERATION_IDENTITY_FALLBACK: "hope" }))).toMatch(/^federation\.identity\.fallback: /);
    expect(message(() => load({ CRYPTOUTIL_FEDERATION_JOSE_URL: "http://jose-ja:9443" }))).toMatch(/^federation\.jose\.url: must be an https:\/\/ URL/);
    expect(message(() => load({}, ["--federation.ca.jitter=2"]))).toMatch(/^federation\.ca\.jitter: /);
    expect(message(() => load({}, ["--federation.identity.colour=blue"]))).toMatch(/^federation\.identity\.colour: unknown setting/);
  });

  test("checks across keys, and the fallbacks that trust anything only in development", () => {
    const f = load().federation;
    expect(() => checkFederationConfig({ ...f, identity: { ...f.identity, fallback: "allow_all" } }, true)).not.toThrow();
    expect(message(() => checkFederationConfig({ ...f, identity: { ...f.identity, fallback: "allow_all" } }, false))).toMatch(/^federation\.identity\.fallback: allow_all .* development mode/);
    expect(message(() => checkFederationConfig({ ...f, ca: { ...f.ca, fallback: "self_signed" } }, false))).toMatch(/^federation\.ca\.fallback: /);
    expect(message(() => checkFederationConfig({ ...f, jose: { ...f.jose, timeout_ms: 9000, max_timeout_ms: 1000 } }, true))).toMatch(/^federation\.jose\.max_timeout_ms: /);
    expect(message(() => checkFederationConfig({ ...f, identity: { ...f.identity, backoff_base_ms: 900, backoff_max_ms: 100 } }, true))).toMatch(/^federation\.identity\.backoff_max_ms: /);
  });

  test("a service refuses to start with allow_all outside development mode", () => {
    const env = { CRYPTOUTIL_FEDERATION_IDENTITY_FALLBACK: "allow_all" };
    expect(resolveConfig(learnPs, { argv: [], env }).federation.identity.fallback).toBe("allow_all");
    expect(message(() => resolveConfig(learnPs, { argv: [], env: { ...env, CRYPTOUTIL_BARRIER_UNSEAL_FILES: "unseal.secret" } }))).toMatch(
      /^federation\.identity\.fallback: allow_all/,
    );
  });
});
