/**
 * sm-secrets's console in headless Chromium: browse by prefix, create a secret (create-only),
 * write a new version with check-and-set and see a stale one refused, reveal a version's value
 * only on request (never in the page's HTML), soft-delete, undelete and destroy versions after
 * a confirmation; read-only with secrets:read alone (a forged write refused); a path outside
 * the user's path-scoped grant refused; no CSP violation or console error, no sideways scroll.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { smSecrets } from "../../apps/sm-secrets/service.ts";
import { chromiumPath } from "../support/chromium.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { confirmDialog, contextWithScopes, noSideScroll, openConsole, startConsoleSuite, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(120_000);
const CAL = { username: "cal", password: "cobalt heron meadow 4" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let base: string;
const secretUrl = (path: string) => `${base}secret?path=${encodeURIComponent(path)}`;

beforeAll(async () => {
  s = await startConsoleSuite([smSecrets]);
  base = `${s.svc["sm-secrets"]!.publicUrl}/browser/`;
  await s.user(CAL.username, CAL.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

const flash = (page: Page, text: string) => page.locator("#flash", { hasText: text }).waitFor();
const stateOf = async (page: Page, version: number) => (await page.locator("#versions tbody tr", { has: page.locator(`td:first-child`, { hasText: new RegExp(`^${version}( current)?$`) }) }).locator("td").nth(2).textContent())?.trim();

/** A write through the browser API with the page's session and CSRF token (another tab, say). */
const apiPut = (page: Page, path: string, body: unknown) =>
  page.evaluate(
    async ([p, b]) => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const r = await fetch(`/browser/api/v1/secrets/data/${p}`, { method: "PUT", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify(b) });
      return r.status;
    },
    [path, body] as const,
  );

describe("sm-secrets console", () => {
  test("create, new versions with cas, reveal on request, delete/undelete/destroy, browse by prefix", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, base, CAL);
    expect(await page.locator("h1").textContent()).toBe("Secrets");
    expect(await page.locator("#secrets").textContent()).toContain("No secrets here.");

    // A new path: the form creates it only if nobody did meanwhile (cas 0).
    await page.locator("#open").getByLabel("Path").fill("team-a/db");
    await page.locator("#open").getByRole("button", { name: "Open" }).click();
    await page.locator("#status", { hasText: "No secret at team-a/db yet." }).waitFor();
    expect(await page.locator("#write").getByLabel("Only if the current version is (cas)").inputValue()).toBe("0");
    // Not JSON: refused beside the field, nothing sent.
    await page.locator("#write").getByLabel("Value (a JSON object)").fill("{not json");
    await page.locator("#write").getByRole("button", { name: "Create secret" }).click();
    await page.locator("#write-data-error", { hasText: "not valid JSON" }).waitFor();
    await page.locator("#write").getByLabel("Value (a JSON object)").fill('{"user": "app", "password": "pw-one-9f3a"}');
    await page.locator("#write").getByRole("button", { name: "Create secret" }).click();
    await flash(page, "Version 1 written.");
    expect(await page.locator("h1").textContent()).toBe("team-a/db");
    // The value is not in the page until revealed, and then only in the output.
    expect(await page.content()).not.toContain("pw-one-9f3a");
    await page.locator("#reveal-1").getByRole("button", { name: "Reveal v1" }).click();
    const revealed = page.locator("#reveal-1 output:not(:empty)");
    await revealed.waitFor();
    expect(JSON.parse((await revealed.textContent())!)).toEqual({ user: "app", password: "pw-one-9f3a" });

    // A new version with cas = the current version.
    await page.locator("#write").getByLabel("Value (a JSON object)").fill('{"user": "app", "password": "pw-two-77c1"}');
    await page.locator("#write").getByRole("button", { name: "Write new version" }).click();
    await flash(page, "Version 2 written.");
    expect(await page.locator("#versions tbody tr").count()).toBe(2);
    expect(await page.content()).not.toContain("pw-two-77c1");
    // Someone else writes version 3: this page's cas (2) is stale and the write is refused.
    expect(await apiPut(page, "team-a/db", { data: { user: "app", password: "pw-three" }, cas: 2 })).toBe(200);
    await page.locator("#write").getByLabel("Value (a JSON object)").fill('{"user": "app", "password": "pw-stale"}');
    await page.locator("#write").getByRole("button", { name: "Write new version" }).click();
    await page.locator("#write [data-form-error]", { hasText: "cas_mismatch" }).waitFor();
    errors.splice(0); // the refused writes' 400/409 answers, expected

    // Soft delete (asks first), undelete, destroy (asks first).
    await page.reload();
    await page.locator("#delete-3").getByRole("button", { name: "Delete" }).click();
    await confirmDialog(page);
    await flash(page, "Version 3 deleted.");
    expect(await stateOf(page, 3)).toBe("deleted");
    expect(await page.locator("#reveal-3").count()).toBe(0);
    await page.locator("#undelete-3").getByRole("button", { name: "Undelete" }).click();
    await flash(page, "Version 3 undeleted.");
    expect(await stateOf(page, 3)).toBe("live");
    await page.locator("#destroy-1").getByRole("button", { name: "Destroy" }).click();
    await confirmDialog(page);
    await flash(page, "Version 1 destroyed.");
    expect(await stateOf(page, 1)).toBe("destroyed");
    expect(await page.locator("#destroy-1").count()).toBe(0);

    // Browse: the root lists the folder, the folder the key.
    expect(await apiPut(page, "team-a/api/token", { data: { token: "t" } })).toBe(200);
    await page.goto(base);
    await page.locator("#secrets").getByRole("link", { name: "team-a/" }).click();
    await page.waitForURL((u) => u.searchParams.get("prefix") === "team-a/");
    expect(await page.locator("#secrets tbody td:first-child").allTextContents()).toEqual(["api/", "db"]);
    await page.locator("#secrets").getByRole("link", { name: "db" }).click();
    await page.waitForURL((u) => u.pathname === "/browser/secret");
    expect(await page.locator("h1").textContent()).toBe("team-a/db");
    expect(errors).toEqual([]);

    expect(await noSideScroll(context, [base, `${base}?prefix=${encodeURIComponent("team-a/")}`, secretUrl("team-a/db")])).toEqual({});
    await context.close();
  });

  test("secrets:read alone: read-only page, reveal allowed, a forged write refused; a path outside a path-scoped grant refused", async () => {
    if (!browser) return;
    const svc = s.svc["sm-secrets"]!;
    const context = await contextWithScopes(browser, svc, s.tenant, ["secrets:read"], "reader");
    const page = await context.newPage();
    const errors = watch(page);
    await page.goto(secretUrl("team-a/db"));
    expect(await page.locator("h1").textContent()).toBe("team-a/db");
    expect(await page.locator("#write").count()).toBe(0);
    expect(await page.locator("[id^=delete-], [id^=destroy-], [id^=undelete-]").count()).toBe(0);
    expect((await page.getByRole("note").allTextContents()).join(" ")).toContain("secrets:write");
    await page.locator("#reveal-2").getByRole("button").click();
    await page.locator("#reveal-2 output:not(:empty)").waitFor();
    expect(errors).toEqual([]);
    expect(await apiPut(page, "team-a/db", { data: { forged: "yes" } })).toBe(403);
    const noCsrf = await page.evaluate(async () => (await fetch("/browser/api/v1/secrets/destroy/team-a/db", { method: "POST", headers: { "content-type": "application/json" }, body: '{"versions":[2]}' })).status);
    expect(noCsrf).toBe(403);
    await context.close();

    const scoped = await svc.ctx.sessions.create({ tenant: s.tenant, subject: "team-b-dev", scopes: ["openid", "secrets:read:team-b/*", "secrets:write:team-b/*"], name: "team-b" });
    const cookie = { cookie: `${SESSION_COOKIE}=${scoped.id}` };
    const outside = await svc.call(`/browser/secret?path=${encodeURIComponent("team-a/db")}`, { headers: cookie });
    expect(outside.status).toBe(403);
    expect(await outside.text()).not.toContain("pw-");
    const root = await svc.call("/browser/", { headers: cookie });
    expect(root.status).toBe(200);
    expect(await root.text()).not.toContain("team-a/");
  });
});

describe("console pages under fuzz", () => {
  test("random paths and prefixes never give a 5xx", async () => {
    const svc = s.svc["sm-secrets"]!;
    const r = rng(21);
    const alphabet = "abcXYZ019-_.~%/?&=+;:'\"<>{}[]\\ \u00e9\u2603";
    const junk = () => Array.from({ length: r(60) }, () => alphabet[r(alphabet.length)]).join("");
    const session = (await svc.ctx.sessions.create({ tenant: s.tenant, subject: "fuzz", scopes: ["secrets:read", "secrets:write", "secrets:delete"] })).id;
    const cases = Array.from({ length: 400 }, (_, i) =>
      i % 2 ? `/browser/secret?path=${encodeURIComponent(junk())}&sort=${encodeURIComponent(junk())}&page=${encodeURIComponent(junk())}` : `/browser/?prefix=${encodeURIComponent(junk())}&sort=${encodeURIComponent(junk())}&dir=${encodeURIComponent(junk())}`,
    );
    const out = await fuzz(cases, (path) => svc.call(path, { headers: { cookie: `${SESSION_COOKIE}=${session}` }, redirect: "manual" }), { describe: (p) => p, maxMs: 10_000, concurrency: 4 });
    expect(out.statuses.get(200)).toBeGreaterThan(0);
    expect(out.statuses.get(400)).toBeGreaterThan(0);
  });
});
