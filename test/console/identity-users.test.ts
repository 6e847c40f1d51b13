/**
 * identity-idp's console for a user's sign-in state, in headless Chromium, with identity-authz's
 * console beside it: a client's back-channel logout URI shown and edited; a locked user unlocked; a user's sessions listed and ended (the console the
 * user had open is signed out by back-channel logout); the user's grants at identity-authz
 * revoked; the tenant's password policy (minimum length, enforced on the next password set),
 * self-registration and passkey user verification; each page without console errors and without
 * sideways scroll at 1400x900 and 390x844; without identity:admin the API refuses a forged POST,
 * and without the CSRF token so does it.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser } from "playwright-core";
import { chromiumPath } from "../support/chromium.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import type { TestService } from "../support/service.ts";
import { contextWithScopes, noSideScroll, openConsole, startConsoleSuite, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(90_000);
const EVE = { username: "eve", password: "walnut glacier thistle 64" };
const SAM = { username: "sam", password: "pebble harvest cobalt 39" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let idp: string;
let authzUrl: string;
let samId: string;

beforeAll(async () => {
  s = await startConsoleSuite([], { authzConsole: true, idpConsole: true });
  idp = `${s.urlOf("identity-idp")}/browser/`;
  authzUrl = `${s.urlOf("identity-authz")}/browser/`;
  await s.user(EVE.username, EVE.password);
  samId = await s.user(SAM.username, SAM.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

const policy = async () => (await (await s.idp.call("/service/api/v1/policy", { headers: { authorization: `Bearer ${await s.idpAdminToken()}` } })).json()) as Record<string, unknown>;

describe("identity-idp console: a user's sign-in state", () => {
  test("sessions ended from the console sign the user out of the console they had open; grants revoked at identity-authz", async () => {
    if (!browser) return;
    // sam signs in to identity-authz's console in a browser of their own.
    const samContext = await browser.newContext();
    const samPage = await samContext.newPage();
    await openConsole(samPage, authzUrl, SAM);

    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, `${idp}users/${samId}`, EVE);
    const rows = page.locator("#sessions tbody tr");
    expect(await rows.count()).toBe(1);
    expect(await page.locator("#sessions").textContent()).toContain("pwd");

    // The grants page at identity-authz (single sign-on), reached from the user page.
    await page.getByRole("link", { name: "Grants of sam at identity-authz" }).click();
    await page.waitForURL((u) => u.pathname === `/browser/tenants/${s.tenant}/users/${samId}` || u.pathname.endsWith("/consent"));
    if (page.url().includes("/consent")) await page.getByRole("button", { name: "Allow" }).click();
    await page.locator("#grants").waitFor();
    expect(await page.locator("#grants tbody").textContent()).toContain("identity-authz console");
    await page.locator("#grants form").first().getByRole("button", { name: "Revoke" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Grant revoked." }).waitFor();
    expect(await page.locator("#grants").textContent()).toContain("No live grant.");

    await page.goto(`${idp}users/${samId}`);
    await page.locator("#sessions form").first().getByRole("button", { name: "End session" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Session ended." }).waitFor();
    expect(await page.locator("#sessions").textContent()).toContain("No session");
    expect(errors).toEqual([]);

    // sam's console session ended over the back channel: the next page asks for the password.
    for (let i = 0; i < 60 && (await samPage.reload(), await samPage.locator("#who").count()) > 0; i++) await samPage.waitForTimeout(500);
    await samPage.getByLabel("Password").waitFor({ timeout: 15_000 });
    await samContext.close();

    expect(await noSideScroll(context, [`${idp}users/${samId}`, `${authzUrl}tenants/${s.tenant}/users/${samId}`, `${idp}policy`])).toEqual({});
    await context.close();
  });

  test("identity-authz's client page shows and edits the back-channel logout URI", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, `${authzUrl}tenants/${s.tenant}`, EVE);
    await page.getByRole("link", { name: "identity-idp console" }).click();
    await page.waitForURL((u) => u.pathname.includes("/clients/"));
    const uri = `${s.urlOf("identity-idp")}/browser/backchannel-logout`;
    expect(await page.locator("dl.details").textContent()).toContain(`${uri} (sid required)`);
    const field = page.locator("#edit").getByLabel("Back-channel logout URI");
    expect(await field.inputValue()).toBe(uri);
    // Plain http is refused, beside the field.
    await field.fill("http://app.example/logout");
    await page.locator("#edit").getByRole("button", { name: "Save" }).click();
    await page.locator("#edit-backchannel_logout_uri-error").waitFor({ state: "visible" });
    errors.splice(0);
    await field.fill(uri);
    await page.locator("#edit").getByRole("button", { name: "Save" }).click();
    await page.locator("#flash", { hasText: "Saved." }).waitFor();
    expect(await page.locator("#edit").getByLabel("Logout tokens must carry sid").isChecked()).toBe(true);
    expect(errors).toEqual([]);
    expect(await noSideScroll(context, [page.url()])).toEqual({});
    await context.close();
  });

  test("a locked user is unlocked", async () => {
    if (!browser) return;
    // Failed sign-ins past the threshold, as the lockout records them.
    const t = Math.floor(Date.now() / 1000);
    await (s.idp.ctx.db as any).insertInto("login_throttle").values({ key: `u:${s.tenant}:sam`, failures: 80, locked_until: t + 900, updated_at: t }).execute();
    const login = async () => {
      const r = await s.idp.call(`/service/api/v1/users/${samId}`, { headers: { authorization: `Bearer ${await s.idpAdminToken()}` } });
      return ((await r.json()) as { locked_until: number | null }).locked_until;
    };
    expect(await login()).toBeGreaterThan(t);

    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, `${idp}users/${samId}`, EVE);
    expect(await page.locator("dl.details").textContent()).toContain("locked until");
    await page.locator("#unlock").getByRole("button", { name: "Unlock" }).click();
    await page.locator("#flash", { hasText: "Unlocked." }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("not locked");
    expect(await page.locator("#unlock").count()).toBe(0);
    expect(await login()).toBeNull();
    expect(errors).toEqual([]);
    await context.close();
  });

  test("the tenant's password policy, self-registration, passkey user verification and certificate sign-in by UPN", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, `${idp}policy`, EVE);
    const save = async () => {
      await Promise.all([page.waitForNavigation(), page.getByRole("button", { name: "Save policy" }).click()]);
      await page.locator("#flash", { hasText: "Policy saved." }).waitFor();
    };
    await page.getByLabel("Minimum password length").fill("20");
    await page.getByLabel(/create their own account/).check();
    await page.getByLabel("Passkey user verification").selectOption("required");
    await page.getByLabel(/username is its UPN SAN/).check();
    await save();
    expect(await page.getByLabel("Minimum password length").inputValue()).toBe("20");
    expect(await page.getByLabel(/create their own account/).isChecked()).toBe(true);
    expect(await page.getByLabel(/username is its UPN SAN/).isChecked()).toBe(true);
    expect(await policy()).toMatchObject({ password_min_length: 20, self_registration: true, user_verification: "required", certificate_email: false, certificate_upn: true });
    // Out of range: the API's error beside the field.
    await page.getByLabel("Minimum password length").fill("4");
    await page.getByRole("button", { name: "Save policy" }).click();
    await page.locator("#policy-password_min_length-error").waitFor({ state: "visible" });
    errors.splice(0);

    // The next password set in this tenant follows it: 19 characters are refused, 24 accepted.
    await page.goto(`${idp}users/${samId}`);
    await page.locator("#password").getByLabel("New password").fill("amber sorrel wick 7");
    await page.locator("#password").getByRole("button", { name: "Set password" }).click();
    await page.locator("#password").getByText(/at least 20/).waitFor({ state: "visible" });
    errors.splice(0);
    await page.locator("#password").getByLabel("New password").fill("amber sorrel wicket lantern 7");
    await page.locator("#password").getByRole("button", { name: "Set password" }).click();
    await page.locator("#flash", { hasText: "Password set" }).waitFor();

    await page.goto(`${idp}policy`);
    await page.getByLabel("Minimum password length").fill("12");
    await page.getByLabel(/create their own account/).uncheck();
    await page.getByLabel("Passkey user verification").selectOption("preferred");
    await page.getByLabel(/username is its UPN SAN/).uncheck();
    await save();
    expect(await policy()).toMatchObject({ password_min_length: 12, self_registration: false, user_verification: "preferred", certificate_upn: false });
    expect(errors).toEqual([]);
    await context.close();
  });

  test("without identity:admin, or without the CSRF token, the new actions are refused", async () => {
    if (!browser) return;
    const plain = await contextWithScopes(browser, s.idp, s.tenant, ["profile"], "plain");
    const page = await plain.newPage();
    const res = await page.goto(`${idp}users/${samId}`);
    expect(res!.status()).toBe(403);
    const tries = await page.evaluate(async (id) => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const out: [number, string][] = [];
      for (const [method, path] of [["POST", `/browser/api/v1/users/${id}/unlock`], ["POST", `/browser/api/v1/users/${id}/sessions/revoke`], ["PUT", "/browser/api/v1/policy"]] as const) {
        const r = await fetch(path, { method, headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: "{}" });
        out.push([r.status, (await r.json()).error.code]);
      }
      return out;
    }, samId);
    expect(tries).toEqual([[403, "insufficient_scope"], [403, "insufficient_scope"], [403, "insufficient_scope"]]);
    await plain.close();

    const admin = await contextWithScopes(browser, s.idp, s.tenant, ["identity:admin"], "admin");
    const ap = await admin.newPage();
    await ap.goto(`${idp}users/${samId}`);
    const noCsrf = await ap.evaluate(async (id) => {
      const r = await fetch(`/browser/api/v1/users/${id}/sessions/revoke`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      return [r.status, (await r.json()).error.code];
    }, samId);
    expect(noCsrf).toEqual([403, "csrf_failed"]);
    await admin.close();
  });

  test("random ids, sids and policy bodies at the new endpoints never give a 5xx", async () => {
    const r = rng(97);
    const alphabet = "abcXYZ019-_.~%'\"<>{}[] *@,\u00e9";
    const junk = (n = 60) => Array.from({ length: r(n) }, () => alphabet[r(alphabet.length)]).join("");
    const enc = encodeURIComponent;
    const session = async (svc: TestService) => {
      const { id, csrfToken } = await svc.ctx.sessions.create({ tenant: s.tenant, subject: "fuzz", scopes: ["identity:admin"] });
      return { cookie: `${SESSION_COOKIE}=${id}`, "x-csrf-token": csrfToken, "content-type": "application/json" };
    };
    const idpH = await session(s.idp);
    const authzH = await session(s.authz);
    const uuid = () => (r(2) ? samId : crypto.randomUUID());
    const cases: Array<[TestService, string, string, string | undefined]> = [];
    for (let i = 0; i < 40; i++) {
      cases.push([s.idp, "POST", `/browser/api/v1/users/${r(3) ? enc(junk()) : uuid()}/unlock`, undefined]);
      cases.push([s.idp, "DELETE", `/browser/api/v1/users/${uuid()}/sessions/${enc(r(2) ? junk() : "A".repeat(43))}`, undefined]);
      cases.push([s.idp, "PUT", "/browser/api/v1/policy", JSON.stringify({ password_min_length: r(3) ? junk(5) : r(200) - 50, self_registration: r(2) ? "yes" : true })]);
      cases.push([s.authz, r(2) ? "GET" : "DELETE", `/browser/api/v1/tenants/${r(4) ? s.tenant : enc(junk(10))}/users/${enc(junk() || "x")}/grants${r(2) ? `/${enc(junk(70) || "y")}` : ""}`, undefined]);
    }
    const out = await fuzz(cases, ([svc, method, path, body]) => svc.call(path, { method, headers: svc === s.idp ? idpH : authzH, body }), { describe: ([, m, p, b]) => `${m} ${p} ${b ?? ""}`, maxMs: 10_000, concurrency: 4 });
    expect(out.statuses.get(400) ?? 0).toBeGreaterThan(0);
    // Back to the policy the other tests expect, whatever a valid fuzz body set.
    await s.idp.call("/browser/api/v1/policy", { method: "PUT", headers: idpH, body: JSON.stringify({ password_min_length: 12, self_registration: false }) });
  });
});
