/**
 * sm-kms's console in headless Chromium with learn-ps beside it: one sign-in covers both
 * (single sign-on through identity-authz and identity-idp); create a key, encrypt, rotate and
 * decrypt the old ciphertext; sign and verify; disable/enable; schedule and cancel deletion;
 * read-only without the operation scopes; a forged POST refused; signing out of one console
 * ends the session in the other.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { smKms } from "../../apps/sm-kms/service.ts";
import { chromiumPath } from "../support/chromium.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { confirmDialog, contextWithScopes, noSideScroll, openConsole, startConsoleSuite, tryIt, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(90_000);
const BEA = { username: "bea", password: "amber falcon orchard 7" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let kmsUrl: string;
let psUrl: string;

beforeAll(async () => {
  s = await startConsoleSuite([learnPs, smKms]);
  kmsUrl = `${s.svc["sm-kms"]!.publicUrl}/browser/`;
  psUrl = `${s.svc["learn-ps"]!.publicUrl}/browser/`;
  await s.user(BEA.username, BEA.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

async function createKey(page: Page, name: string, algorithm: string) {
  await page.goto(kmsUrl);
  const form = page.locator("#create");
  await form.getByLabel("Name").fill(name);
  await form.getByLabel("Algorithm").selectOption(algorithm);
  await form.getByRole("button", { name: "Create key" }).click();
  await page.waitForURL((u) => u.pathname.startsWith("/browser/keys/"));
  await page.locator("#flash", { hasText: `Created key ${name}.` }).waitFor();
}

describe("sm-kms console", () => {
  test("one sign-in covers learn-ps and sm-kms; keys: create, encrypt, rotate, decrypt old data, sign, verify, disable, delete, restore; sign-out everywhere", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, psUrl, BEA);
    // The navigation bar links the suite's consoles; sm-kms signs in without a password.
    await page.getByRole("navigation", { name: "Consoles" }).getByRole("link", { name: "sm-kms" }).click();
    let asked = false;
    page.on("framenavigated", (f) => {
      if (f === page.mainFrame() && new URL(f.url()).pathname.endsWith("/login") && f.url().includes("login_challenge")) asked = true;
    });
    await page.waitForURL((u) => u.href.startsWith(kmsUrl) || u.pathname.endsWith("/consent"));
    if (page.url().includes("/consent")) await page.getByRole("button", { name: "Allow" }).click();
    await page.waitForURL(kmsUrl);
    await page.locator("#who", { hasText: "Signed in as bea" }).waitFor();
    expect(await page.getByRole("link", { name: "Sign in" }).count()).toBe(0);
    expect(asked).toBe(false); // no second password prompt
    expect(await page.locator("h1").textContent()).toBe("Keys");

    // An invalid name: the API's error beside the field.
    await page.locator("#create").getByLabel("Name").fill("no spaces allowed");
    await page.locator("#create").getByRole("button", { name: "Create key" }).click();
    await page.locator("#create-name-error").waitFor({ state: "visible" });
    expect(await page.locator("#create-name-error").textContent()).toContain("names are");
    errors.splice(0);

    // Encrypt, rotate, then decrypt the first version's ciphertext.
    await createKey(page, "payments", "A256GCM");
    const jwe = await tryIt(page, "encrypt", { Plaintext: "card 4111 on file" });
    expect(jwe.split(".")).toHaveLength(5);
    await page.locator("#rotate").getByRole("button", { name: "Rotate now" }).click();
    await page.locator("#flash", { hasText: "Rotated: version 2 is current." }).waitFor();
    expect(await page.locator("table tbody tr").count()).toBe(2);
    const plain = await tryIt(page, "decrypt", { "JWE (compact)": jwe });
    expect(plain).toBe("card 4111 on file");
    const jwe2 = await tryIt(page, "encrypt", { Plaintext: "second" });
    expect(JSON.parse(Buffer.from(jwe2.split(".")[0]!, "base64url").toString()).kid).toEndWith(".v2");
    // A wrong ciphertext: the API's error in the form.
    await page.locator("#decrypt").getByLabel("JWE (compact)").fill(jwe.slice(0, -4) + "AAAA");
    await page.locator("#decrypt").getByRole("button").click();
    await page.locator("#decrypt [data-form-error]", { hasText: "decryption_failed" }).waitFor();
    errors.splice(0);

    // Disable (asks first), enable, schedule deletion (asks first), cancel it.
    await page.locator("#disable").getByRole("button").click();
    await confirmDialog(page);
    await page.locator("#flash", { hasText: "Disabled." }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("disabled");
    await page.locator("#enable").getByRole("button").click();
    await page.locator("#flash", { hasText: "Enabled." }).waitFor();
    await page.locator("#delete").getByLabel("Waiting period (days)").fill("7");
    await page.locator("#delete").getByRole("button", { name: "Schedule deletion" }).click();
    await confirmDialog(page);
    await page.locator("#flash", { hasText: "Deletion scheduled for" }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("pending deletion");
    await page.locator("#restore").getByRole("button").click();
    await page.locator("#flash", { hasText: "Deletion cancelled" }).waitFor();

    // Edit: rotation schedule.
    await page.locator("#edit").getByLabel("Rotate every (days)").fill("90");
    await page.locator("#edit").getByRole("button", { name: "Save" }).click();
    await page.locator("#flash", { hasText: "Saved." }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("every 90 days");

    // Sign and verify.
    await createKey(page, "release-signing", "ES256");
    const jws = await tryIt(page, "sign", { Payload: "build 1.2.3" });
    expect(jws.split(".")).toHaveLength(3);
    const kid = await tryIt(page, "verify", { "JWS (compact)": jws });
    expect(kid).toEndWith(".v1");

    // The list filters by purpose and sorts.
    await page.goto(kmsUrl);
    await page.getByLabel("Purpose").selectOption("sign");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL((u) => u.searchParams.get("purpose") === "sign");
    expect(await page.locator("#keys tbody tr td:first-child").allTextContents()).toEqual(["release-signing"]);
    expect(errors).toEqual([]);

    const keyPage = await page.evaluate(() => document.querySelector<HTMLAnchorElement>("#keys tbody a")!.href);
    expect(await noSideScroll(context, [kmsUrl, keyPage, psUrl])).toEqual({});

    // Signing out at sm-kms ends the session at learn-ps too, and the next sign-in asks for the password.
    await page.goto(kmsUrl);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(kmsUrl);
    await page.locator("#status", { hasText: "You are not signed in." }).waitFor();
    await page.goto(psUrl);
    await page.locator("#status", { hasText: "You are not signed in." }).waitFor();
    expect(await page.evaluate(async () => (await fetch("/browser/api/v1/pets")).status)).toBe(401);
    await page.getByRole("link", { name: "Sign in" }).click();
    await page.waitForURL((u) => u.pathname === `/t/${s.tenant}/login`);
    expect(await page.getByLabel("Password").count()).toBe(1);
    await context.close();
  });

  test("without operation scopes the try-it panel is closed and a forged encrypt is refused; without kms:admin the console is refused", async () => {
    if (!browser) return;
    const kms = s.svc["sm-kms"]!;
    const context = await contextWithScopes(browser, kms, s.tenant, ["kms:admin"], "auditor");
    const page = await context.newPage();
    const errors = watch(page);
    await page.goto(kmsUrl);
    await page.getByRole("link", { name: "payments" }).click();
    await page.waitForURL((u) => u.pathname.startsWith("/browser/keys/"));
    expect(await page.locator("#encrypt").count()).toBe(0);
    expect(await page.locator("#decrypt").count()).toBe(0);
    expect(await page.getByRole("note").textContent()).toContain("kms:encrypt");
    expect(errors).toEqual([]);
    const forged = await page.evaluate(async () => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const r = await fetch(location.pathname.replace("/browser/", "/browser/api/v1/") + "/encrypt", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ plaintext: "aGk" }) });
      const noCsrf = await fetch(location.pathname.replace("/browser/", "/browser/api/v1/") + "/rotate", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
      return [r.status, (await r.json()).error.code, noCsrf.status, (await noCsrf.json()).error.code];
    });
    expect(forged).toEqual([403, "insufficient_scope", 403, "csrf_failed"]);

    const encryptOnly = await kms.ctx.sessions.create({ tenant: s.tenant, subject: "app-dev", scopes: ["openid", "kms:encrypt"], name: "dev" });
    const res = await kms.call("/browser/", { headers: { cookie: `${SESSION_COOKIE}=${encryptOnly.id}` } });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("missing scope: kms:admin");
    await context.close();
  });
});

describe("console pages under fuzz", () => {
  test("random path parameters and queries never give a 5xx", async () => {
    const kms = s.svc["sm-kms"]!;
    const ps = s.svc["learn-ps"]!;
    const r = rng(20);
    const alphabet = "abcXYZ019-_.~%/?&=+;:'\"<>{}[]\\ \u00e9\u2603";
    const junk = () => Array.from({ length: r(40) }, () => alphabet[r(alphabet.length)]).join("");
    const kmsSession = (await kms.ctx.sessions.create({ tenant: s.tenant, subject: "fuzz", scopes: ["kms:admin", "kms:encrypt", "kms:decrypt"] })).id;
    const psSession = (await ps.ctx.sessions.create({ tenant: s.tenant, subject: "fuzz", scopes: ["pets:read", "pets:write"] })).id;
    const cases = Array.from({ length: 300 }, (_, i) => {
      const svc = i % 2 ? kms : ps;
      const q = `purpose=${encodeURIComponent(junk())}&status=${encodeURIComponent(junk())}&tag=${encodeURIComponent(junk())}&species=${encodeURIComponent(junk())}&sort=${encodeURIComponent(junk())}&dir=${encodeURIComponent(junk())}&page=${encodeURIComponent(junk())}`;
      const path = r(2) ? `/browser/?${q}` : `/browser/${svc === kms ? "keys" : "pets"}/${encodeURIComponent(junk())}?${q}`;
      return { svc, path, cookie: `${SESSION_COOKIE}=${svc === kms ? kmsSession : psSession}` };
    });
    const out = await fuzz(cases, (c) => c.svc.call(c.path, { headers: { cookie: c.cookie }, redirect: "manual" }), { describe: (c) => c.path, maxMs: 10_000, concurrency: 4 });
    expect(out.statuses.get(200)).toBeGreaterThan(0);
    expect(out.statuses.get(404)).toBeGreaterThan(0);
  });
});
