/**
 * The suite for the CLI tests: identity-authz (the issuer, tenant `demo`) and the services a
 * test file needs, started in-process over real HTTPS in one temp root (one suite CA), the
 * clients made through identity-authz's admin API as `npm start` makes them, and a
 * suite.json in the launcher's format. `cli(...)` runs `bun cli/main.ts` as a subprocess,
 * exactly as a user would, with its own CRYPTOUTIL_HOME.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { identityAuthz } from "../../../apps/identity-authz/service.ts";
import { identityIdp } from "../../../apps/identity-idp/service.ts";
import { joseJa } from "../../../apps/jose-ja/service.ts";
import { pkiCa } from "../../../apps/pki-ca/service.ts";
import { smKms } from "../../../apps/sm-kms/service.ts";
import { smSecrets } from "../../../apps/sm-secrets/service.ts";
import type { ServiceConfig } from "../../../src/service/config.ts";
import type { ServiceDefinition } from "../../../src/service/context.ts";
import { quiet, startTestService, tempDir, trustIdentity, type TestService } from "../../support/service.ts";
import { freePort } from "../../identity/support/authz.ts";
import { scopesOf } from "../../../schemas/scopes.ts";

export const REPO = resolve(import.meta.dir, "../../..");
export const TENANT = "demo";

export const TLS_SERVER_PROFILE = {
  issuing_ca: "P-256",
  key_types: ["P-256", "P-384", "RSA-2048", "RSA-3072", "Ed25519"],
  max_validity_days: 90,
  default_validity_days: 30,
  key_usage: ["digitalSignature", "keyEncipherment"],
  extended_key_usage: ["serverAuth"],
  dns: { allow: ["*.example.com", "example.com"] },
  ip_ranges: ["10.0.0.0/8"],
};

/** A client certificate profile admitting e-mail and UPN names of example.com. */
export const TLS_CLIENT_PROFILE = { ...TLS_SERVER_PROFILE, key_types: ["P-256"], key_usage: ["digitalSignature"], extended_key_usage: ["clientAuth"], dns: { allow: [] }, ip_ranges: [], email_domains: ["example.com"], upn_domains: ["example.com"] };

type Optional = "sm-kms" | "sm-secrets" | "jose-ja" | "pki-ca" | "identity-idp";
const DEFS: Record<Optional, ServiceDefinition> = { "sm-kms": smKms, "sm-secrets": smSecrets, "jose-ja": joseJa, "pki-ca": pkiCa, "identity-idp": identityIdp };

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  bytes: Uint8Array;
}

export interface CliSuite {
  root: string;
  suiteFile: string;
  ca: string;
  authzUrl: string;
  services: Record<string, TestService>;
  /** A fresh CRYPTOUTIL_HOME. */
  newHome(): string;
  /** A fresh CRYPTOUTIL_HOME after `cryptoutil login` (context demo). */
  loggedInHome(): Promise<string>;
  /** Runs the CLI with `home` as CRYPTOUTIL_HOME. */
  cli(home: string, args: string[], opts?: { stdin?: string | Uint8Array; env?: Record<string, string>; cwd?: string }): Promise<CliRun>;
  /** A token of the suite administrator (tenant root) for identity-authz's admin API. */
  rootToken(): Promise<string>;
  stop(): Promise<void>;
}

/** Runs `bun cli/main.ts args...`; asynchronous, so the in-process services keep answering. */
export async function runCli(home: string, args: string[], opts: { stdin?: string | Uint8Array; env?: Record<string, string>; cwd?: string } = {}): Promise<CliRun> {
  const p = Bun.spawn([process.execPath, join(REPO, "cli/main.ts"), ...args], {
    cwd: opts.cwd ?? home,
    env: { ...process.env, CRYPTOUTIL_HOME: home, CRYPTOUTIL_SUITE: "", NO_COLOR: "1", ...opts.env },
    stdin: opts.stdin === undefined ? "ignore" : typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = await Promise.all([new Response(p.stdout).arrayBuffer(), new Response(p.stderr).text(), p.exited]);
  const bytes = new Uint8Array(out);
  return { code, stdout: new TextDecoder().decode(bytes), stderr: err, bytes };
}

export async function startCliSuite(wanted: Optional[]): Promise<CliSuite> {
  const root = tempDir("cryptoutil-cli-");
  const authzPort = await freePort();
  const authzUrl = `https://127.0.0.1:${authzPort}`;
  const idpPort = wanted.includes("identity-idp") ? await freePort() : 0;
  const pkiPort = wanted.includes("pki-ca") ? await freePort() : 0;
  const bundle = (svc: string) => join(root, svc, "trust-bundle.pem");
  const verifyTokensOf = (svc: string) => (c: ServiceConfig) => trustIdentity(c, authzUrl, bundle(svc), svc);

  const services: Record<string, TestService> = {};
  services["identity-authz"] = await startTestService(identityAuthz, {
    root,
    overrides: (c) => {
      quiet(c);
      verifyTokensOf("identity-authz")(c);
      c.server.port = authzPort;
      (c as { app?: unknown }).app = idpPort ? { idp_url: `https://127.0.0.1:${idpPort}` } : {};
    },
  });
  const ca = services["identity-authz"].ca;
  const f = (url: string, init: RequestInit = {}) => fetch(url, { ...init, tls: { ca } } as RequestInit);
  await f(`${authzUrl}/t/root/.well-known/openid-configuration`);
  const bootSecretFile = join(root, "identity-authz", "bootstrap-admin.secret");
  const token = async (tenant: string, id: string, secret: string, resource?: string) => {
    const r = await f(`${authzUrl}/t/${tenant}/token`, {
      method: "POST",
      headers: { authorization: `Basic ${btoa(`${id}:${secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "client_credentials", ...(resource ? { resource } : {}) }),
    });
    if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${await r.text()}`);
    return ((await r.json()) as { access_token: string }).access_token;
  };
  const rootToken = () => token("root", "bootstrap-admin", readFileSync(bootSecretFile, "utf8").trim());
  const admin = async (path: string, body: unknown) => {
    const r = await f(`${authzUrl}/service/api/v1${path}`, { method: "POST", headers: { authorization: `Bearer ${await rootToken()}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    if (r.status !== 201) throw new Error(`authz admin ${path}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<{ client_id: string; client_secret: string | null }>;
  };

  const names = ["identity-authz", ...wanted];
  const audiences = [...names];
  const scopes = scopesOf(audiences);
  await admin("/tenants", { id: TENANT });
  const cliClient = await admin(`/tenants/${TENANT}/clients`, { client_id: "demo-cli", client_name: "cryptoutil CLI", grant_types: ["client_credentials"], scopes, audiences });
  await admin(`/tenants/${TENANT}/clients`, {
    client_id: "cryptoutil-cli",
    client_name: "cryptoutil CLI (browser login)",
    grant_types: ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
    redirect_uris: ["http://127.0.0.1/callback"],
    scopes: ["openid", "profile", "offline_access", ...scopes],
    audiences,
    token_endpoint_auth_method: "none",
  });
  mkdirSync(join(root, "demo"), { recursive: true, mode: 0o700 });
  writeFileSync(join(root, "demo", "demo-cli.secret"), cliClient.client_secret + "\n", { mode: 0o600 });

  for (const name of wanted) {
    services[name] = await startTestService(DEFS[name], {
      root,
      overrides: (c) => {
        quiet(c);
        verifyTokensOf(name)(c);
        if (name === "identity-idp") {
          c.server.port = idpPort;
          (c as { app?: unknown }).app = { authz_url: authzUrl, lockout_user_threshold: 100, lockout_ip_threshold: 10_000 };
        }
        if (name === "pki-ca") {
          c.server.port = pkiPort;
          c.app = { base_url: `https://127.0.0.1:${pkiPort}`, issuing_cas: ["P-256"], profiles: { "tls-server": TLS_SERVER_PROFILE, "tls-client": TLS_CLIENT_PROFILE } };
        }
      },
    });
  }

  const suiteFile = join(root, "suite.json");
  writeFileSync(
    suiteFile,
    JSON.stringify(
      {
        version: 1,
        development: true,
        trust_bundle: "identity-authz/trust-bundle.pem",
        services: Object.fromEntries(
          names.map((n) => [n, { public: services[n]!.publicUrl, admin: services[n]!.adminUrl, docs: `${services[n]!.publicUrl}/docs`, audience: n, admin_token_file: `${n}/admin.token` }]),
        ),
        contexts: {
          demo: { tenant: TENANT, issuer: `${authzUrl}/t/${TENANT}`, client_id: "demo-cli", client_secret_file: "demo/demo-cli.secret", browser_client_id: "cryptoutil-cli" },
          admin: { tenant: "root", issuer: `${authzUrl}/t/root`, client_id: "bootstrap-admin", client_secret_file: "identity-authz/bootstrap-admin.secret" },
        },
      },
      null,
      2,
    ),
  );

  return {
    root,
    suiteFile,
    ca,
    authzUrl,
    services,
    newHome: () => mkdtempSync(join(tmpdir(), "cryptoutil-cli-home-")),
    async loggedInHome() {
      const home = mkdtempSync(join(tmpdir(), "cryptoutil-cli-home-"));
      const r = await runCli(home, ["login"], { env: { CRYPTOUTIL_SUITE: suiteFile } });
      if (r.code !== 0) throw new Error(`login failed: ${r.stderr}`);
      return home;
    },
    cli: (home, args, opts = {}) => runCli(home, args, { ...opts, env: { CRYPTOUTIL_SUITE: suiteFile, ...opts.env } }),
    rootToken,
    async stop() {
      for (const name of [...wanted].reverse()) await services[name]!.stop();
      await services["identity-authz"]!.stop();
    },
  };
}

/** One line on stderr, no stack trace: what every refusal of the CLI must look like. */
export function oneErrorLine(stderr: string): string {
  const lines = stderr.trimEnd().split("\n");
  if (lines.length !== 1 || !lines[0]!.startsWith("error: ") || /\bat .+:\d+:\d+/.test(stderr)) throw new Error(`expected one error line on stderr, got:\n${stderr}`);
  return lines[0]!;
}
