/**
 * learn-ps's console in headless Chromium (Debian `chromium`, playwright-core): sign in
 * through identity-authz and identity-idp, add a pet (with an inline validation error first),
 * sort, edit and delete it (with confirmation); read-only for a user without pets:write,
 * whose forged POST is refused, as is a POST without the CSRF token; no sideways scroll.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser } from "playwright-core";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { chromiumPath } from "../support/chromium.ts";
import { contextWithScopes, noSideScroll, openConsole, startConsoleSuite, watch, type ConsoleSuite } from "./harness.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";

setDefaultTimeout(60_000);
const ADA = { username: "ada", password: "copper lantern meadow 42" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let url: string;

beforeAll(async () => {
  s = await startConsoleSuite([learnPs]);
  url = `${s.svc["learn-ps"]!.publicUrl}/browser/`;
  await s.user(ADA.username, ADA.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

describe("learn-ps console", () => {
  test("signs in, adds a pet (after an inline error), sorts, edits and deletes it", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, url, ADA);
    expect(await page.locator("#who").textContent()).toContain("Signed in as ada");
    expect(await page.getByRole("navigation", { name: "Consoles" }).getByRole("link", { name: "learn-ps" }).getAttribute("aria-current")).toBe("page");

    const add = page.locator("#add");
    await add.getByLabel("Name").fill("Biscuit");
    await add.getByLabel("Species").selectOption("dog");
    await add.getByLabel("Age").fill("3");
    await add.getByLabel("Tags").fill("Friendly Dog!");
    await add.getByRole("button", { name: "Add" }).click();
    // The API's validation error, beside the field it names.
    const tagError = page.locator("#add-tags-error");
    await tagError.waitFor({ state: "visible" });
    expect(await tagError.textContent()).toContain("lowercase");
    expect(await add.getByLabel("Tags").getAttribute("aria-invalid")).toBe("true");
    errors.splice(0); // that 400 was the point

    await add.getByLabel("Tags").fill("friendly, small");
    await add.getByRole("button", { name: "Add" }).click();
    await page.locator("#flash", { hasText: "Added Biscuit." }).waitFor();
    await add.getByLabel("Name").fill("Alfie");
    await add.getByLabel("Species").selectOption("cat");
    await add.getByRole("button", { name: "Add" }).click();
    await page.locator("#flash", { hasText: "Added Alfie." }).waitFor();
    const names = () => page.locator("#pets tbody tr td:first-child").allTextContents();
    expect(await names()).toEqual(["Alfie", "Biscuit"]);
    expect(await page.locator("#pets tbody").textContent()).toContain("friendly, small");
    // Sorting by a header link, descending on the second press.
    await page.locator("#pets thead").getByRole("link", { name: /^Name/ }).click();
    await page.waitForURL((u) => u.searchParams.get("dir") === "desc");
    expect(await names()).toEqual(["Biscuit", "Alfie"]);
    expect(await page.locator('#pets th[aria-sort="descending"]').count()).toBe(1);
    // Filtering keeps the page's query.
    await page.getByLabel("Show species").selectOption("cat");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL((u) => u.searchParams.get("species") === "cat");
    expect(await names()).toEqual(["Alfie"]);

    await page.goto(url);
    await page.getByRole("link", { name: "Biscuit" }).click();
    await page.waitForURL((u) => u.pathname.startsWith("/browser/pets/"));
    const edit = page.locator("#edit");
    expect(await edit.getByLabel("Name").inputValue()).toBe("Biscuit");
    await edit.getByLabel("Name").fill("Biscuit Senior");
    await edit.getByLabel("Age").fill("");
    await edit.getByLabel("Owner note").fill("Likes the park");
    await edit.getByRole("button", { name: "Save" }).click();
    await page.locator("#flash", { hasText: "Saved Biscuit Senior." }).waitFor();
    expect(await page.locator("h1").textContent()).toBe("Biscuit Senior");
    expect(await page.locator("dl.details").textContent()).toContain("Likes the park");

    // Delete asks first: Cancel keeps the pet, Confirm deletes it.
    await page.getByRole("button", { name: "Delete this pet" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain("Delete Biscuit Senior?");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    expect(page.url()).toContain("/browser/pets/");
    await page.getByRole("button", { name: "Delete this pet" }).click();
    await dialog.getByRole("button", { name: "Confirm" }).click();
    await page.waitForURL(url);
    await page.locator("#flash", { hasText: "Deleted Biscuit Senior." }).waitFor();
    expect(await names()).toEqual(["Alfie"]);
    expect(errors).toEqual([]);

    // Keyboard: the skip link is the first stop and the add form is reachable by Tab.
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Skip to content");

    // A POST without the CSRF token is refused, with the session cookie.
    const noCsrf = await page.evaluate(async () => {
      const r = await fetch("/browser/api/v1/pets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "Forged", species: "cat" }) });
      return [r.status, (await r.json()).error.code];
    });
    expect(noCsrf).toEqual([403, "csrf_failed"]);
    const over = await noSideScroll(context, [url, page.url()]);
    expect(over).toEqual({});
    await context.close();
  });

  test("a user without pets:write sees the page read-only, and a forged POST is refused", async () => {
    if (!browser) return;
    const context = await contextWithScopes(browser, s.svc["learn-ps"]!, s.tenant, ["pets:read"]);
    const page = await context.newPage();
    const errors = watch(page);
    await page.goto(url);
    await page.locator("#who").waitFor();
    expect(await page.locator("#add").count()).toBe(0);
    expect(await page.getByRole("note").textContent()).toContain("pets:write");
    await page.getByRole("link", { name: "Alfie" }).click();
    await page.waitForURL((u) => u.pathname.startsWith("/browser/pets/"));
    expect(await page.locator("#edit").count()).toBe(0);
    expect(await page.getByRole("button", { name: "Delete this pet" }).count()).toBe(0);
    expect(errors).toEqual([]);
    // The API refuses what the page does not offer, even with a valid CSRF token.
    const forged = await page.evaluate(async () => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const r = await fetch("/browser/api/v1/pets", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ name: "Forged", species: "cat" }) });
      return [r.status, (await r.json()).error.code];
    });
    expect(forged).toEqual([403, "insufficient_scope"]);
    await context.close();
  });

  test("without a session the page says so and offers the sign-in; an unknown session goes to sign in", async () => {
    const ps = s.svc["learn-ps"]!;
    const none = await ps.call("/browser/");
    expect(none.status).toBe(200);
    expect(none.headers.get("content-security-policy")).toContain("script-src 'self'");
    const body = await none.text();
    expect(body).toContain("You are not signed in.");
    expect(body).not.toContain("<script>");
    expect(body).not.toMatch(/style=/);
    const stale = await ps.call("/browser/pets/x", { headers: { cookie: `${SESSION_COOKIE}=${"A".repeat(43)}` }, redirect: "manual" });
    expect(stale.status).toBe(303);
    expect(stale.headers.get("location")).toBe("/browser/login?return_to=%2Fbrowser%2Fpets%2Fx");
    const js = await ps.call("/browser/ui/console.js");
    expect(js.headers.get("content-type")).toContain("javascript");
  });
});
