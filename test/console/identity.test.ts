/**
 * identity-authz's console in headless Chromium (it signs in through itself and identity-idp):
 * the tenant's clients (register with a secret shown once, edit, rotate the secret, delete)
 * and its signing keys (rotate); a rotated secret works at the token endpoint and the old one
 * does not; identity-idp's console, reached by single sign-on from it: users (create, reset
 * the password, disable and enable, reset second factors, delete) and the MFA policy; a user
 * without identity:admin is refused, a forged POST too; no sideways scroll.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser } from "playwright-core";
import { chromiumPath } from "../support/chromium.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { contextWithScopes, noSideScroll, openConsole, startConsoleSuite, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(90_000);
const EVE = { username: "eve", password: "walnut glacier thistle 64" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let url: string;

beforeAll(async () => {
  s = await startConsoleSuite([], { authzConsole: true, idpConsole: true });
  url = `${s.authz.publicUrl}/browser/`;
  await s.user(EVE.username, EVE.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

const tokenWith = async (clientId: string, secret: string) =>
  (
    await s.authz.call(`/t/${s.tenant}/token`, {
      method: "POST",
      headers: { authorization: `Basic ${btoa(`${clientId}:${secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
      body: "grant_type=client_credentials",
    })
  ).status;

describe("identity-authz console", () => {
  test("clients: register (secret once), edit, rotate the secret, delete", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, url, EVE);
    expect(await page.locator("#tenants tbody").textContent()).toContain(s.tenant);
    await page.getByRole("link", { name: s.tenant, exact: true }).click();
    await page.waitForURL((u) => u.pathname === `/browser/tenants/${s.tenant}`);
    expect(await page.locator("#clients").textContent()).toContain("identity-authz console");

    const form = page.locator("#register");
    await form.getByLabel("Client name").fill("Billing batch");
    await form.getByLabel("Grant types").fill("client_credentials");
    await form.getByLabel("Scopes").fill("kms:encrypt");
    await form.getByLabel("Audiences").fill("sm-kms");
    await form.getByRole("button", { name: "Register client" }).click();
    const first = (await form.locator("output:not(:empty)").textContent())!;
    expect(first.length).toBeGreaterThan(20);
    await page.locator("#flash", { hasText: "Registered" }).waitFor();
    const clientId = (await page.locator("#flash").textContent())!.match(/Registered (\S+)\./)![1]!;
    expect(await tokenWith(clientId, first)).toBe(200);

    await page.reload();
    await page.getByRole("link", { name: "Billing batch" }).click();
    await page.waitForURL((u) => u.pathname.includes("/clients/"));
    await page.locator("#edit").getByLabel("Scopes").fill("kms:encrypt, kms:decrypt");
    await page.locator("#edit").getByRole("button", { name: "Save" }).click();
    await page.locator("#flash", { hasText: "Saved." }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("kms:encrypt kms:decrypt");
    // A bad redirect URI: the API's error beside the field.
    await page.locator("#edit").getByLabel("Redirect URIs", { exact: true }).fill("not a url");
    await page.locator("#edit").getByRole("button", { name: "Save" }).click();
    await page.locator("#edit-redirect_uris-error").waitFor({ state: "visible" });
    errors.splice(0);

    await page.locator("#rotate-secret").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    const second = (await page.locator("#rotate-secret output:not(:empty)").textContent())!;
    expect(second).not.toBe(first);
    expect(await tokenWith(clientId, second)).toBe(200);
    expect(await tokenWith(clientId, first)).toBe(401);

    await page.locator("#delete").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.waitForURL((u) => u.pathname === `/browser/tenants/${s.tenant}`);
    await page.locator("#flash", { hasText: "Deleted Billing batch." }).waitFor();
    expect(await tokenWith(clientId, second)).toBe(401);

    expect(errors).toEqual([]);
    expect(await noSideScroll(context, [url, `${url}tenants/${s.tenant}`])).toEqual({});
    await context.close();
  });

  test("identity-idp console by single sign-on: users created, password reset (the new one signs in), disabled, enabled, factors reset, deleted; MFA policy", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, url, EVE);
    await page.getByRole("navigation", { name: "Consoles" }).getByRole("link", { name: "identity-idp" }).click();
    await page.waitForURL((u) => u.href.startsWith(`${s.idp.publicUrl}/browser/`) || u.pathname.endsWith("/consent"));
    if (page.url().includes("/consent")) await page.getByRole("button", { name: "Allow" }).click();
    await page.locator("#who", { hasText: "Signed in as eve" }).waitFor();
    expect(await page.locator("#users").textContent()).toContain("eve");

    const create = page.locator("#create");
    await create.getByLabel("Username").fill("frank");
    await create.getByLabel("Display name").fill("Frank");
    await create.getByLabel("Initial password").fill("short");
    await create.getByRole("button", { name: "Create user" }).click();
    await page.locator("#create [data-form-error]").waitFor({ state: "visible" });
    errors.splice(0);
    await create.getByLabel("Initial password").fill("quartz meadow lantern 88");
    await create.getByRole("button", { name: "Create user" }).click();
    await page.waitForURL((u) => u.pathname.startsWith("/browser/users/"));
    await page.locator("#flash", { hasText: "Created frank." }).waitFor();

    await page.locator("#password").getByLabel("New password").fill("granite orchard violet 12");
    await page.locator("#password").getByRole("button", { name: "Set password" }).click();
    await page.locator("#flash", { hasText: "Password set" }).waitFor();
    await page.locator("#disable").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Disabled" }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("disabled");
    await page.locator("#enable").getByRole("button").click();
    await page.locator("#flash", { hasText: "Enabled." }).waitFor();
    await page.locator("#reset-mfa").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Second factors removed." }).waitFor();
    const frankPage = page.url();

    // frank signs in with the new password (a fresh browser).
    const other = await browser.newContext();
    const fp = await other.newPage();
    await openConsole(fp, `${s.idp.publicUrl}/browser/`, { username: "frank", password: "granite orchard violet 12" });
    await other.close();

    await page.goto(`${s.idp.publicUrl}/browser/policy`);
    // Each save reloads the page: wait for that navigation, or the first save's flash (still
    // shown) would let the second look done while its reload is in flight.
    const save = async () => {
      await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Save policy" }).click()]);
      await page.locator("#flash", { hasText: "Policy saved." }).waitFor();
    };
    await page.getByLabel("Second factor").selectOption("required");
    await save();
    expect(await page.getByLabel("Second factor").inputValue()).toBe("required");
    await page.getByLabel("Second factor").selectOption("optional");
    await save();
    expect(await page.getByLabel("Second factor").inputValue()).toBe("optional");

    await page.goto(frankPage);
    await page.locator("#delete").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.waitForURL(`${s.idp.publicUrl}/browser/`);
    await page.locator("#flash", { hasText: "Deleted frank." }).waitFor();
    expect(await page.locator("#users").textContent()).not.toContain("frank");
    expect(errors).toEqual([]);
    expect(await noSideScroll(context, [`${s.idp.publicUrl}/browser/`, `${s.idp.publicUrl}/browser/policy`])).toEqual({});
    await context.close();
  });

  test("a user without identity:admin is refused the console and a forged POST", async () => {
    if (!browser) return;
    const context = await contextWithScopes(browser, s.authz, s.tenant, ["profile"], "plain");
    const page = await context.newPage();
    const res = await page.goto(url);
    expect(res!.status()).toBe(403);
    expect(await page.locator("main").textContent()).toContain("missing scope: identity:admin");
    const forged = await page.evaluate(async (t) => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const r = await fetch(`/browser/api/v1/tenants/${t}/keys/rotate`, { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: "{}" });
      return [r.status, (await r.json()).error.code];
    }, s.tenant);
    expect(forged).toEqual([403, "insufficient_scope"]);
    // An admin of one tenant cannot open another's page.
    const other = await s.authz.ctx.sessions.create({ tenant: "elsewhere", subject: "x", scopes: ["identity:admin"] });
    const r = await s.authz.call(`/browser/tenants/${s.tenant}`, { headers: { cookie: `${SESSION_COOKIE}=${other.id}` } });
    expect(r.status).toBe(403);
    await context.close();
  });

  test("random path parameters and queries never give a 5xx", async () => {
    const r = rng(53);
    const alphabet = "abcXYZ019-_.~%/?&=+;:'\"<>{}[]\\ *@,\u00e9";
    const junk = () => Array.from({ length: r(40) }, () => alphabet[r(alphabet.length)]).join("");
    const sid = (await s.authz.ctx.sessions.create({ tenant: s.tenant, subject: "fuzz", scopes: ["identity:admin"] })).id;
    const pages = [() => `/browser/?sort=${encodeURIComponent(junk())}&page=${encodeURIComponent(junk())}`, () => `/browser/tenants/${encodeURIComponent(junk())}`, () => `/browser/tenants/${s.tenant}/clients/${encodeURIComponent(junk())}`];
    const cases = Array.from({ length: 150 }, (_, i) => pages[i % pages.length]!());
    const out = await fuzz(cases, (path) => s.authz.call(path, { headers: { cookie: `${SESSION_COOKIE}=${sid}` }, redirect: "manual" }), { describe: (p) => p, maxMs: 10_000, concurrency: 4 });
    expect(out.statuses.get(200)).toBeGreaterThan(0);
  });

  // Last: the other services verify tokens and challenges with the keys published before it.
  test("signing key rotation", async () => {
    if (!browser) return;
    const context = await browser.newContext();
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, `${url}tenants/${s.tenant}`, EVE);
    const keyRows = () => page.locator("table").filter({ hasText: "Signing keys" }).locator("tbody tr").count();
    const before = await keyRows();
    await page.locator("#rotate-keys").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Signing key rotated." }).waitFor();
    expect(await keyRows()).toBe(before + 1);
    expect(errors).toEqual([]);
    await context.close();
  });
});
