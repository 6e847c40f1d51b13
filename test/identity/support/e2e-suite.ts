/**
 * The Identity suite for end-to-end tests: identity-authz, identity-idp and learn-ps (with the
 * browser login of src/auth/bff.ts mounted) started in-process over HTTPS, on ports chosen up
 * front so each knows the others' URLs, in one temp root so they share the suite CA.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { identityAuthz } from "../../../apps/identity-authz/service.ts";
import { identityIdp } from "../../../apps/identity-idp/service.ts";
import { learnPs } from "../../../apps/learn-ps/service.ts";
import { parseBrowserLoginConfig } from "../../../src/auth/bff.ts";
import type { ServiceConfig } from "../../../src/service/config.ts";
import type { ServiceDefinition } from "../../../src/service/context.ts";
import { quiet, startTestService, tempDir, trustIdentity, type TestService } from "../../support/service.ts";
import { spkiPins } from "../../support/chromium.ts";
import { freePort } from "./authz.ts";
import { ScriptedBrowser, enrolmentSecret } from "./browser.ts";
import { base32Decode, totp } from "../../../apps/identity-idp/domain/otp.ts";

export interface IdentitySuite {
  root: string;
  tenant: string;
  authz: TestService;
  idp: TestService;
  ps: TestService;
  ca: string;
  issuer: string;
  /** The learn-ps browser client (the BFF) and a plain test client, both confidential. */
  webClient: { client_id: string; client_secret: string };
  cliClient: { client_id: string; client_secret: string };
  cliRedirect: string;
  /** POSTs to identity-authz's admin API as the suite administrator (expects 201). */
  authzAdmin(path: string, body: unknown): Promise<any>;
  /** Calls identity-idp's admin API with a token authz issued for it. */
  idpAdmin(method: string, path: string, body?: unknown): Promise<Response>;
  /** Creates an idp user with a confirmed TOTP factor; `nextCode()` gives a code not used before. */
  userWithTotp(username: string, password: string): Promise<{ id: string; seed: Uint8Array; nextCode(): Promise<string> }>;
  /**
   * Starts another app in the suite, its pages signing in through a new web client of the
   * tenant (scope: what the client asks for), as `npm start` wires learn-ps and sm-im.
   */
  withBrowserApp(def: ServiceDefinition, scope: string): Promise<TestService>;
  /** SHA-256 of each service's TLS public key (SPKI), base64: Chromium's pinning allowlist. */
  spkiPins(): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startIdentitySuite(opts: { tenant?: string; corsOrigins?: string[]; idpOverrides?: (c: ServiceConfig) => void } = {}): Promise<IdentitySuite> {
  const tenant = opts.tenant ?? "acme";
  const root = tempDir("cryptoutil-e2e-");
  const [authzPort, idpPort, psPort] = [await freePort(), await freePort(), await freePort()];
  const authzUrl = `https://127.0.0.1:${authzPort}`;
  const idpUrl = `https://127.0.0.1:${idpPort}`;
  const psUrl = `https://127.0.0.1:${psPort}`;
  const issuer = `${authzUrl}/t/${tenant}`;
  const bundle = (svc: string) => join(root, svc, "trust-bundle.pem");
  const verifyTokensOf = (svc: string) => (c: ServiceConfig) => trustIdentity(c, authzUrl, bundle(svc), svc);

  // Pages of `corsOrigins` may call the token, JWKS and discovery endpoints (a single-page app).
  // The suite's relying parties (their back-channel logout URIs) run on loopback ports picked later.
  const appConfig = (c: ServiceConfig) => {
    const app = (c as { app: Record<string, unknown> }).app;
    app.client_urls_allow_private_addresses = true;
    if (opts.corsOrigins) app.cors_origins = opts.corsOrigins;
  };
  const { authz, ca, f, clientCredentials, authzAdmin } = await startAuthzForSuite(root, authzPort, idpUrl, appConfig);
  await authzAdmin("/tenants", { id: tenant });
  const scopes = ["openid", "profile", "email", "pets:read", "pets:write"];
  const webClient = await authzAdmin(`/tenants/${tenant}/clients`, {
    client_name: "Pet Store",
    grant_types: ["authorization_code", "refresh_token"],
    redirect_uris: [`${psUrl}/browser/callback`],
    post_logout_redirect_uris: [`${psUrl}/browser/`],
    scopes,
    audiences: ["learn-ps"],
  });
  const cliRedirect = "https://client.example/cb";
  const cliClient = await authzAdmin(`/tenants/${tenant}/clients`, {
    client_name: "Pet CLI",
    grant_types: ["authorization_code", "refresh_token"],
    redirect_uris: [cliRedirect],
    scopes,
    audiences: ["learn-ps"],
  });
  const idpAdminClient = await authzAdmin(`/tenants/${tenant}/clients`, {
    client_name: "idp admin",
    grant_types: ["client_credentials"],
    scopes: ["identity:admin"],
    audiences: ["identity-idp"],
  });

  const idp = await startTestService(identityIdp, {
    root,
    overrides: (c) => {
      quiet(c);
      verifyTokensOf("identity-idp")(c);
      c.server.port = idpPort;
      (c as { app?: unknown }).app = { authz_url: authzUrl, lockout_user_threshold: 3, lockout_ip_threshold: 10_000 };
      opts.idpOverrides?.(c);
    },
  });

  const secretFile = join(root, "pets-web.secret");
  writeFileSync(secretFile, webClient.client_secret + "\n", { mode: 0o600 });
  const login = parseBrowserLoginConfig({ issuer, client_id: webClient.client_id, client_secret_file: secretFile, scope: "openid profile pets:read pets:write" });
  const ps = await startTestService(learnPs, {
    root,
    overrides: (c) => {
      quiet(c);
      verifyTokensOf("learn-ps")(c);
      c.server.port = psPort;
      c.browser.login = login;
    },
  });

  const extraPorts: number[] = [];
  const extras: TestService[] = [];
  let idpToken: string | undefined;
  const suite: IdentitySuite = {
    root,
    tenant,
    authz,
    idp,
    ps,
    ca,
    issuer,
    webClient,
    cliClient,
    cliRedirect,
    authzAdmin,
    async idpAdmin(method, path, body) {
      idpToken ??= await clientCredentials(tenant, idpAdminClient.client_id, idpAdminClient.client_secret);
      const headers: Record<string, string> = { authorization: `Bearer ${idpToken}` };
      if (body !== undefined) headers["content-type"] = "application/json";
      return f(`${idpUrl}/service/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    },
    async userWithTotp(username, password) {
      const r = await suite.idpAdmin("POST", "/users", { username, password, name: `Name of ${username}`, email: `${username}@example.test`, email_verified: true });
      if (r.status !== 201) throw new Error(`create user: ${r.status} ${await r.text()}`);
      const { id } = (await r.json()) as { id: string };
      const b = new ScriptedBrowser(ca);
      await b.submit(await b.get(`${idpUrl}/t/${tenant}/login`), "/login", { username, password });
      const enrol = await b.get(`${idpUrl}/t/${tenant}/enroll/totp`);
      const seed = base32Decode(enrolmentSecret(enrol));
      let last = Math.floor(Date.now() / 30_000);
      const done = await b.submit(enrol, "/enroll/totp", { code: await totp(seed, last * 30) });
      if (!done.html.includes("recovery-codes")) throw new Error("TOTP enrolment failed: " + done.html.slice(0, 300));
      return {
        id,
        seed,
        // Each login needs a step not used before; the ±1 drift window allows the next one.
        async nextCode() {
          last = Math.max(last + 1, Math.floor(Date.now() / 30_000) - 1);
          // Past the drift window's end: wait for the clock to reach it (at most one step).
          while (last > Math.floor(Date.now() / 30_000) + 1) await Bun.sleep(500);
          return totp(seed, last * 30);
        },
      };
    },
    async withBrowserApp(def, scope) {
      const port = await freePort();
      const url = `https://127.0.0.1:${port}`;
      const client = await authzAdmin(`/tenants/${tenant}/clients`, {
        client_name: def.name,
        grant_types: ["authorization_code", "refresh_token"],
        redirect_uris: [`${url}/browser/callback`],
        post_logout_redirect_uris: [`${url}/browser/`],
        scopes: scope.split(" "),
        audiences: [def.name],
      });
      const file = join(root, `${def.name}-web.secret`);
      writeFileSync(file, client.client_secret + "\n", { mode: 0o600 });
      const svc = await startTestService(def, {
        root,
        overrides: (c) => {
          quiet(c);
          verifyTokensOf(def.name)(c);
          c.server.port = port;
          c.browser.login = parseBrowserLoginConfig({ issuer, client_id: client.client_id, client_secret_file: file, scope });
        },
      });
      extraPorts.push(port);
      extras.push(svc);
      return svc;
    },
    spkiPins: () => spkiPins([authzPort, idpPort, psPort, ...extraPorts], ca),
    async stop() {
      for (const e of extras) await e.stop();
      await ps.stop();
      await idp.stop();
      await authz.stop();
    },
  };
  return suite;
}

/**
 * identity-authz on `port` (in `root`, trusting itself), with the root tenant's bootstrap
 * client's token: `authzAdmin` POSTs to its admin API, `clientCredentials` gets a token.
 */
export async function startAuthzForSuite(root: string, port: number, idpUrl: string, extra?: (c: ServiceConfig) => void) {
  const authzUrl = `https://127.0.0.1:${port}`;
  const authz = await startTestService(identityAuthz, {
    root,
    overrides: (c) => {
      quiet(c);
      trustIdentity(c, authzUrl, join(root, "identity-authz", "trust-bundle.pem"), "identity-authz");
      c.server.port = port;
      (c as { app?: unknown }).app = { idp_url: idpUrl };
      extra?.(c);
    },
  });
  const ca = authz.ca;
  const f = (url: string, init: RequestInit = {}) => fetch(url, { ...init, tls: { ca } } as RequestInit);
  // The root tenant (and its bootstrap client) is made at the first request.
  await f(`${authzUrl}/t/root/.well-known/openid-configuration`);
  const bootSecret = readFileSync(join(root, "identity-authz", "bootstrap-admin.secret"), "utf8").trim();
  const clientCredentials = async (tok: string, id: string, secret: string) => {
    const r = await f(`${authzUrl}/t/${tok}/token`, {
      method: "POST",
      headers: { authorization: `Basic ${btoa(`${id}:${secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=client_credentials",
    });
    if (r.status !== 200) throw new Error(`token for ${id}: ${r.status} ${await r.text()}`);
    return ((await r.json()) as { access_token: string }).access_token;
  };
  const rootToken = await clientCredentials("root", "bootstrap-admin", bootSecret);
  const authzAdmin = async (path: string, body: unknown) => {
    const r = await f(`${authzUrl}/service/api/v1${path}`, { method: "POST", headers: { authorization: `Bearer ${rootToken}`, "content-type": "application/json" }, body: JSON.stringify(body) });
    if (r.status !== 201) throw new Error(`authz admin ${path}: ${r.status} ${await r.text()}`);
    return r.json() as Promise<any>;
  };
  return { authz, ca, f, clientCredentials, authzAdmin };
}
