/**
 * jose-ja's console in headless Chromium: generate keys, sign and verify, encrypt, rotate and
 * decrypt the old JWE, schedule rotation, disable, schedule deletion and restore; the audit
 * log records the console's operations and filters them; read-only without the operation
 * scopes, a forged sign refused; no sideways scroll; page fuzz.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { joseJa } from "../../apps/jose-ja/service.ts";
import { chromiumPath } from "../support/chromium.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { contextWithScopes, noSideScroll, openConsole, startConsoleSuite, tryIt, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(90_000);
const DEE = { username: "dee", password: "cedar lagoon ember 58" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let url: string;

beforeAll(async () => {
  s = await startConsoleSuite([joseJa]);
  url = `${s.svc["jose-ja"]!.publicUrl}/browser/`;
  await s.user(DEE.username, DEE.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

async function generate(page: Page, name: string, algorithm: string) {
  await page.goto(url);
  await page.locator("#create").getByLabel("Name").fill(name);
  await page.locator("#create").getByLabel("Algorithm").selectOption(algorithm);
  await page.locator("#create").getByRole("button", { name: "Generate key" }).click();
  await page.waitForURL((u) => u.pathname.startsWith("/browser/keys/"));
  await page.locator("#flash", { hasText: `Generated key ${name}.` }).waitFor();
}

describe("jose-ja console", () => {
  test("keys: generate, sign, verify, encrypt, rotate, decrypt old data, schedule rotation, disable, delete, restore; the audit log", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, url, DEE);

    await generate(page, "id-tokens", "ES256");
    const signingKey = page.url();
    expect(await page.locator("main pre").first().textContent()).toContain('"kty": "EC"');
    const jws = await tryIt(page, "sign", { Payload: '{"sub":"dee"}' });
    expect(await tryIt(page, "verify", { "JWS (compact)": jws })).toEndWith(".v1");
    await page.locator("#rotate").getByRole("button").click();
    await page.locator("#flash", { hasText: "version 2 is current" }).waitFor();
    // The old signature still verifies (version 1 from its kid).
    expect(await tryIt(page, "verify", { "JWS (compact)": jws })).toEndWith(".v1");
    await page.locator("#rotation").getByLabel("Rotate every (days)").fill("30");
    await page.locator("#rotation").getByRole("button", { name: "Save schedule" }).click();
    await page.locator("#flash", { hasText: "Rotation schedule saved." }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("every 30 days");

    await generate(page, "payloads", "A256GCM");
    const jwe = await tryIt(page, "encrypt", { Plaintext: "the first secret" });
    await page.locator("#rotate").getByRole("button").click();
    await page.locator("#flash", { hasText: "version 2 is current" }).waitFor();
    expect(await tryIt(page, "decrypt", { "JWE (compact)": jwe })).toBe("the first secret");

    await page.locator("#disable").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Disabled." }).waitFor();
    expect(await page.locator("#encrypt").count()).toBe(0);
    await page.locator("#delete").getByRole("button").click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Deletion scheduled." }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("pending deletion");
    await page.locator("#restore").getByRole("button").click();
    await page.locator("#flash", { hasText: "Deletion cancelled." }).waitFor();

    // The audit log: every operation above, filtered by operation and by key.
    await page.getByRole("navigation", { name: "JOSE Authority" }).getByRole("link", { name: "Audit log" }).click();
    await page.waitForURL((u) => u.pathname === "/browser/audit");
    const ops = () => page.locator("#audit tbody tr td:nth-child(3)").allTextContents();
    expect(await ops()).toEqual(expect.arrayContaining(["generate", "sign", "verify", "rotate", "encrypt", "decrypt", "disable", "delete", "restore", "set_rotation", "list", "get"]));
    await page.getByLabel("Operation").fill("rotate");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL((u) => u.searchParams.get("operation") === "rotate");
    expect(await ops()).toEqual(["rotate", "rotate"]);
    await page.goto(`${url}audit?key=${signingKey.split("/").pop()}&operation=verify`);
    expect(await ops()).toEqual(["verify", "verify"]);
    await page.goto(`${url}audit?key=not-a-uuid`);
    expect(await page.locator("main [role=alert]").textContent()).toContain("UUID");
    errors.splice(errors.findIndex((e) => e.startsWith("400 ")), 1);
    expect(errors).toEqual([]);
    expect(await noSideScroll(context, [url, signingKey, `${url}audit`])).toEqual({});
    await context.close();
  });

  test("without jose:sign the try-it panel is closed and a forged sign is refused", async () => {
    if (!browser) return;
    const context = await contextWithScopes(browser, s.svc["jose-ja"]!, s.tenant, ["jose:admin"], "auditor");
    const page = await context.newPage();
    const errors = watch(page);
    await page.goto(url);
    await page.getByRole("link", { name: "id-tokens" }).click();
    await page.waitForURL((u) => u.pathname.startsWith("/browser/keys/"));
    expect(await page.locator("#sign").count()).toBe(0);
    expect(await page.getByRole("note").textContent()).toContain("jose:sign");
    expect(errors).toEqual([]);
    const forged = await page.evaluate(async () => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const r = await fetch(location.pathname.replace("/browser/", "/browser/api/v1/") + "/sign", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ payload: "aGk" }) });
      return [r.status, (await r.json()).error.code];
    });
    expect(forged).toEqual([403, "insufficient_scope"]);
    await context.close();
  });

  test("random path parameters and queries never give a 5xx", async () => {
    const jose = s.svc["jose-ja"]!;
    const r = rng(47);
    const alphabet = "abcdef0123456789XYZ-_.~%/?&=+;:'\"<>{}[]\\ *@,\u00e9";
    const junk = () => Array.from({ length: r(48) }, () => alphabet[r(alphabet.length)]).join("");
    const sid = (await jose.ctx.sessions.create({ tenant: s.tenant, subject: "fuzz", scopes: ["jose:admin"] })).id;
    const q = () => ["key", "operation", "result", "from", "to", "purpose", "status", "tag", "sort", "dir", "page"].map((k) => `${k}=${encodeURIComponent(junk())}`).join("&");
    const pages = [() => `/browser/?${q()}`, () => `/browser/audit?${q()}`, () => `/browser/keys/${encodeURIComponent(junk())}?${q()}`];
    const cases = Array.from({ length: 240 }, (_, i) => pages[i % pages.length]!());
    const out = await fuzz(cases, (path) => jose.call(path, { headers: { cookie: `${SESSION_COOKIE}=${sid}` }, redirect: "manual" }), { describe: (p) => p, maxMs: 10_000, concurrency: 4 });
    expect(out.statuses.get(200)).toBeGreaterThan(0);
  });
});
