/** Config: defaults < YAML < CRYPTOUTIL_* env < flags; one clear message naming a bad key. */
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { defaultConfig, loadConfig, ServiceConfigSchema } from "../../src/service/config.ts";
import { AppError } from "../../src/service/errors.ts";
import { tempDir } from "../support/service.ts";

const load = (argv: string[] = [], env: Record<string, string> = {}) =>
  loadConfig({ schema: ServiceConfigSchema, defaults: defaultConfig("svc", 1234) as never, argv, env });

function failure(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).code).toBe("config_invalid");
    return (e as AppError).message;
  }
  throw new Error("expected a config error");
}

describe("config precedence", () => {
  test("defaults apply with nothing given", () => {
    const c = load();
    expect(c.server.port).toBe(1234);
    expect(c.server.bind).toBe("127.0.0.1");
    expect(c.tls.mode).toBe("auto");
  });

  test("YAML, then env, then flags", () => {
    const dir = tempDir();
    const file = join(dir, "c.yaml");
    writeFileSync(file, "server:\n  port: 2000\n  admin_port: 2001\nlog:\n  level: warn\nsecurity:\n  ip_allowlist: [10.0.0.0/8]\n");
    const yamlOnly = load(["--config", file]);
    expect(yamlOnly.server.port).toBe(2000);
    expect(yamlOnly.security.ip_allowlist).toEqual(["10.0.0.0/8"]);
    const withEnv = load(["--config", file], { CRYPTOUTIL_SERVER_PORT: "3000", CRYPTOUTIL_SECURITY_IP_ALLOWLIST: "1.2.3.0/24, ::1", CRYPTOUTIL_LOG_ACCESS: "false" });
    expect(withEnv.server.port).toBe(3000);
    expect(withEnv.server.admin_port).toBe(2001);
    expect(withEnv.security.ip_allowlist).toEqual(["1.2.3.0/24", "::1"]);
    expect(withEnv.log.access).toBe(false);
    const withFlags = load(["--config", file, "--server.port=4000", "--log.level", "debug"], { CRYPTOUTIL_SERVER_PORT: "3000" });
    expect(withFlags.server.port).toBe(4000);
    expect(withFlags.log.level).toBe("debug");
  });

  test("CRYPTOUTIL_CONFIG names the file; env keys with underscores map to the schema's keys", () => {
    const dir = tempDir();
    const file = join(dir, "c.yaml");
    writeFileSync(file, "server:\n  body_limit: 99\n");
    const c = load([], { CRYPTOUTIL_CONFIG: file, CRYPTOUTIL_SERVER_ADMIN_PORT: "7", CRYPTOUTIL_BROWSER_SESSION_IDLE_S: "60" });
    expect(c.server.body_limit).toBe(99);
    expect(c.server.admin_port).toBe(7);
    expect(c.browser.session_idle_s).toBe(60);
  });
});

test("nested env keys and app-section flags", () => {
  const c = load(["--app.anything=1"], {
    CRYPTOUTIL_BROWSER_LOGIN_ISSUER: "https://id.example/t/acme",
    CRYPTOUTIL_BROWSER_LOGIN_CLIENT_ID: "learn-ps",
    CRYPTOUTIL_BROWSER_LOGIN_CLIENT_SECRET_FILE: "secret.txt",
  });
  expect(c.browser.login).toMatchObject({ issuer: "https://id.example/t/acme", client_id: "learn-ps", client_secret_file: "secret.txt" });
  expect((c as { app?: Record<string, unknown> }).app).toEqual({ anything: "1" });
});

test("env reaches the app section's top-level keys (as strings) and lists of objects as JSON", () => {
  const principals = [{ uri: "spiffe://cryptoutil/sm-kms", tenant: "root", subject: "sm-kms", scopes: ["audit:ingest"] }];
  const c = load([], {
    CRYPTOUTIL_APP_AUTHZ_URL: "https://identity-authz:18000",
    CRYPTOUTIL_APP_IDP_JWKS_URL: "https://identity-idp:18100/t/{tenant}/jwks",
    CRYPTOUTIL_MTLS_PRINCIPALS: JSON.stringify(principals),
    CRYPTOUTIL_APP_CLIENT_URLS_ALLOWED_ORIGINS: '["https://sm-kms:8080", "https://pki-ca:8443"]',
  });
  expect((c as { app?: Record<string, unknown> }).app).toEqual({
    authz_url: "https://identity-authz:18000",
    idp_jwks_url: "https://identity-idp:18100/t/{tenant}/jwks",
    // A JSON list (or object) in the app's section is parsed.
    client_urls_allowed_origins: ["https://sm-kms:8080", "https://pki-ca:8443"],
  });
  expect(c.mtls.principals).toEqual(principals);
  // A flag still wins over the environment, in the app section too.
  const f = load(["--app.authz_url=https://a.example"], { CRYPTOUTIL_APP_AUTHZ_URL: "https://b.example" });
  expect((f as { app?: Record<string, unknown> }).app).toEqual({ authz_url: "https://a.example" });
});

describe("bad config stops start-up with one message naming the key", () => {
  const cases: Array<[string, () => unknown, string]> = [
    ["port out of range (flag)", () => load(["--server.port=70000"]), "server.port"],
    ["port not a number (env)", () => load([], { CRYPTOUTIL_SERVER_PORT: "eighty" }), "server.port"],
    ["unknown tls mode", () => load(["--tls.mode=magic"]), "tls.mode"],
    ["unknown flag", () => load(["--server.prot=1"]), "server.prot"],
    ["flag without value", () => load(["--server.port"]), "server.port"],
    ["bad log level", () => load([], { CRYPTOUTIL_LOG_LEVEL: "loud" }), "log.level"],
    ["bad boolean", () => load([], { CRYPTOUTIL_LOG_ACCESS: "maybe" }), "log.access"],
    ["bad issuer URL", () => load(["--auth.issuer=not a url"]), "auth.issuer"],
    ["list of objects not JSON (env)", () => load([], { CRYPTOUTIL_MTLS_PRINCIPALS: "[{uri: x}]" }), "mtls.principals"],
    ["list of objects with a bad member (env)", () => load([], { CRYPTOUTIL_MTLS_PRINCIPALS: '[{"uri":"spiffe://x","tenant":"root"}]' }), "mtls.principals.0.scopes"],
  ];
  for (const [name, fn, key] of cases) {
    test(name, () => {
      expect(failure(fn)).toStartWith(`${key}:`);
    });
  }

  test("unknown key in the YAML file", () => {
    const dir = tempDir();
    const file = join(dir, "c.yaml");
    writeFileSync(file, "server:\n  prot: 1\n");
    expect(failure(() => load(["--config", file]))).toContain("prot");
  });

  test("YAML that does not parse, or is not a mapping", () => {
    const dir = tempDir();
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "server: [unclosed\n");
    expect(failure(() => load(["--config", bad]))).toContain("bad.yaml");
    const list = join(dir, "list.yaml");
    writeFileSync(list, "- 1\n- 2\n");
    expect(failure(() => load(["--config", list]))).toContain("not a mapping");
  });
});
