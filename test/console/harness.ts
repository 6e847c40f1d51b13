/**
 * The consoles under test: identity-authz and identity-idp plus the given services over
 * HTTPS, each with its browser login through one test tenant (single sign-on) and the suite's
 * console links, on ports chosen up front so each knows the others' URLs.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { expect } from "bun:test";
import { identityIdp } from "../../apps/identity-idp/service.ts";
import { parseBrowserLoginConfig } from "../../src/auth/bff.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import type { ServiceDefinition } from "../../src/service/context.ts";
import { SERVICE_SCOPES } from "../../schemas/scopes.ts";
import { quiet, startTestService, tempDir, trustIdentity, type TestService } from "../support/service.ts";
import { launchChromium, spkiPins } from "../support/chromium.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { freePort } from "../identity/support/authz.ts";
import { startAuthzForSuite } from "../identity/support/e2e-suite.ts";

export interface ConsoleSuite {
  tenant: string;
  ca: string;
  authz: TestService;
  idp: TestService;
  /** The services with consoles, by name. */
  svc: Record<string, TestService>;
  /** The public URL of a console service, on the host name it was given (default 127.0.0.1). */
  urlOf(name: string): string;
  /** An access token for identity-idp's admin API (identity:admin) in the test tenant. */
  idpAdminToken(): Promise<string>;
  /** Creates an idp user (password only; the tenant's MFA is optional). */
  user(username: string, password: string): Promise<string>;
  browser(): Promise<Browser>;
  stop(): Promise<void>;
}

/**
 * `hosts` puts a service's console on another host name (e.g. `localhost` beside the others'
 * `127.0.0.1`): another origin and another cookie jar, as on separate machines.
 */
export async function startConsoleSuite(defs: ServiceDefinition[], opts: { configure?: (name: string, c: ServiceConfig) => void; authzConsole?: boolean; idpConsole?: boolean; hosts?: Record<string, string> } = {}): Promise<ConsoleSuite> {
  const tenant = "acme";
  const root = tempDir("cryptoutil-console-");
  const authzPort = await freePort();
  const idpPort = await freePort();
  const ports = new Map<string, number>();
  for (const d of defs) ports.set(d.name, await freePort());
  const authzUrl = `https://127.0.0.1:${authzPort}`;
  const idpUrl = `https://127.0.0.1:${idpPort}`;
  const urlOf = (name: string) => `https://${opts.hosts?.[name] ?? "127.0.0.1"}:${ports.get(name)}`;
  const issuer = `${authzUrl}/t/${tenant}`;
  const bundle = (svc: string) => join(root, svc, "trust-bundle.pem");

  // As the launcher does: identity-authz may send logout tokens to the suite's own consoles, on loopback.
  const suiteOrigins = [authzUrl, idpUrl, ...defs.map((d) => urlOf(d.name))];
  const allowSuite = (c: ServiceConfig) => Object.assign((c as { app: Record<string, unknown> }).app, { client_urls_allowed_origins: suiteOrigins });
  const { authz, ca, f, clientCredentials: token, authzAdmin } = await startAuthzForSuite(root, authzPort, idpUrl, allowSuite);
  await authzAdmin("/tenants", { id: tenant });
  const idpAdminClient = await authzAdmin(`/tenants/${tenant}/clients`, { client_name: "idp admin", grant_types: ["client_credentials"], scopes: ["identity:admin"], audiences: ["identity-idp"] });
  // The consoles of the suite, for every navigation bar; identity-idp's console signs in like the others.
  const consoles = defs.map((d) => ({ name: d.name, url: `${urlOf(d.name)}/browser/` }));
  if (opts.authzConsole) consoles.push({ name: "identity-authz", url: `${authzUrl}/browser/` });
  if (opts.idpConsole) consoles.push({ name: "identity-idp", url: `${idpUrl}/browser/` });
  const consoleLogin = async (name: string, url: string, scope: string[]) => {
    const web = await authzAdmin(`/tenants/${tenant}/clients`, {
      client_name: `${name} console`,
      grant_types: ["authorization_code", "refresh_token"],
      redirect_uris: [`${url}/browser/callback`],
      post_logout_redirect_uris: [`${url}/browser/`],
      backchannel_logout_uri: `${url}/browser/backchannel-logout`,
      backchannel_logout_session_required: true,
      scopes: scope,
      audiences: [name],
    });
    const secretFile = join(root, `${name}-web.secret`);
    writeFileSync(secretFile, web.client_secret + "\n", { mode: 0o600 });
    return parseBrowserLoginConfig({ issuer, client_id: web.client_id, client_secret_file: secretFile, scope: scope.join(" ") });
  };
  const idpLogin = opts.idpConsole ? await consoleLogin("identity-idp", idpUrl, ["openid", "profile", "identity:admin"]) : undefined;
  const idp = await startTestService(identityIdp, {
    root,
    overrides: (c) => {
      quiet(c);
      trustIdentity(c, authzUrl, bundle("identity-idp"), "identity-idp");
      c.server.port = idpPort;
      (c as { app?: unknown }).app = { authz_url: authzUrl, lockout_user_threshold: 50, lockout_ip_threshold: 10_000 };
      if (idpLogin) {
        c.browser.login = idpLogin;
        c.browser.consoles = consoles;
      }
    },
  });

  const svc: Record<string, TestService> = {};
  let authzService = authz;
  if (opts.authzConsole) {
    // identity-authz's own console signs in through itself: its client exists only once it runs,
    // so it starts again with the login configured.
    const login = await consoleLogin("identity-authz", authzUrl, ["openid", "profile", "identity:admin"]);
    await authz.stop();
    authzService = (await startAuthzForSuite(root, authzPort, idpUrl, (c) => {
      allowSuite(c);
      c.browser.login = login;
      c.browser.consoles = consoles;
    })).authz;
  }
  for (const d of defs) {
    const login = await consoleLogin(d.name, urlOf(d.name), ["openid", "profile", ...(SERVICE_SCOPES[d.name] ?? [])]);
    svc[d.name] = await startTestService(d, {
      root,
      overrides: (c) => {
        quiet(c);
        trustIdentity(c, authzUrl, bundle(d.name), d.name);
        c.server.port = ports.get(d.name)!;
        c.browser.login = login;
        c.browser.consoles = consoles;
        opts.configure?.(d.name, c);
      },
    });
  }

  let idpToken: string | undefined;
  return {
    tenant,
    ca,
    authz: authzService,
    idp,
    svc,
    urlOf: (name) => (name === "identity-authz" ? authzUrl : name === "identity-idp" ? idpUrl : urlOf(name)),
    async idpAdminToken() {
      return (idpToken ??= await token(tenant, idpAdminClient.client_id, idpAdminClient.client_secret));
    },
    async user(username, password) {
      idpToken ??= await token(tenant, idpAdminClient.client_id, idpAdminClient.client_secret);
      const r = await f(`${idpUrl}/service/api/v1/users`, {
        method: "POST",
        headers: { authorization: `Bearer ${idpToken}`, "content-type": "application/json" },
        body: JSON.stringify({ username, password, name: `Name of ${username}` }),
      });
      if (r.status !== 201) throw new Error(`create user: ${r.status} ${await r.text()}`);
      return ((await r.json()) as { id: string }).id;
    },
    async browser() {
      return launchChromium(process.env.CHROMIUM_PATH ?? Bun.which("chromium")!, await spkiPins([authzPort, idpPort, ...ports.values()], ca));
    },
    async stop() {
      for (const s of Object.values(svc)) await s.stop();
      await idp.stop();
      await authzService.stop();
    },
  };
}

/** Records console errors (CSP violations included) and failed responses of a page. */
export function watch(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) errors.push(`${r.status()} ${r.url()}`);
  });
  return errors;
}

/**
 * Opens a console page, passing the sign-in on the way: the password at identity-idp the
 * first time, then single sign-on (consent once per console).
 */
export async function openConsole(page: Page, url: string, creds: { username: string; password: string }): Promise<void> {
  await page.goto(url);
  const target = new URL(url);
  for (let i = 0; i < 6; i++) {
    await page.waitForLoadState("load");
    const at = new URL(page.url());
    if (at.origin === target.origin && at.pathname.startsWith("/browser/") && !at.pathname.startsWith("/browser/login") && !at.pathname.startsWith("/browser/callback")) {
      if (await page.locator("#who").count()) return;
      const signIn = page.getByRole("link", { name: "Sign in" });
      if (await signIn.count()) {
        await signIn.click();
        continue;
      }
    }
    if (at.pathname.endsWith("/login") && (await page.getByLabel("Password").count())) {
      await page.getByLabel("Username").fill(creds.username);
      await page.getByLabel("Password").fill(creds.password);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
    } else if (at.pathname.endsWith("/consent")) {
      await page.getByRole("button", { name: "Allow" }).click();
    }
    await page.waitForURL((u) => !(u.href === at.href), { timeout: 15_000 }).catch(() => undefined);
  }
  await page.locator("#who").waitFor({ timeout: 15_000 }).catch(async (e) => {
    throw new Error(`not signed in at ${page.url()}: ${(await page.locator("body").textContent())?.slice(0, 300)}`, { cause: e });
  });
  expect(new URL(page.url()).origin).toBe(target.origin);
}

/** Neither viewport scrolls the page body sideways. */
export async function noSideScroll(context: BrowserContext, urls: string[]): Promise<Record<string, number>> {
  const over: Record<string, number> = {};
  const page = await context.newPage();
  for (const size of [{ width: 1400, height: 900 }, { width: 390, height: 844 }]) {
    await page.setViewportSize(size);
    for (const u of urls) {
      await page.goto(u);
      // Another console's session on the same host signs in again here (single sign-on).
      await page.waitForURL(u);
      await page.locator("#who").waitFor();
      const excess = await page.evaluate(() =>
        Math.max(document.body.scrollWidth - document.body.clientWidth, document.documentElement.scrollWidth - document.documentElement.clientWidth),
      );
      if (excess > 0) over[`${size.width}x${size.height} ${u}`] = excess;
    }
  }
  await page.close();
  return over;
}

/**
 * A browser context holding a session of `svc` with only these scopes: a user whose grant
 * lacks the admin scopes (the identity services grant scopes per client, not per user yet).
 */
export async function contextWithScopes(browser: Browser, svc: TestService, tenant: string, scopes: string[], name = "viewer"): Promise<BrowserContext> {
  const { id } = await svc.ctx.sessions.create({ tenant, subject: `${name}-subject`, scopes: ["openid", ...scopes], name });
  const context = await browser.newContext();
  await context.addCookies([{ name: SESSION_COOKIE, value: id, url: svc.publicUrl, secure: true, httpOnly: true, sameSite: "Strict" }]);
  return context;
}

/** Fills a "try it" form by its labels, submits it and returns its output (the script empties it when it sends). */
export async function tryIt(page: Page, id: string, fields: Record<string, string>): Promise<string> {
  const form = page.locator(`#${id}`);
  for (const [label, value] of Object.entries(fields)) await form.getByLabel(label).fill(value);
  await form.getByRole("button").click();
  const out = form.locator("output:not(:empty)");
  await out.waitFor({ timeout: 15_000 });
  return (await out.textContent())!;
}

/** Confirms the console's confirmation dialog (destructive actions ask first). */
export async function confirmDialog(page: Page): Promise<void> {
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  await dialog.getByRole("button", { name: "Confirm" }).click();
}
