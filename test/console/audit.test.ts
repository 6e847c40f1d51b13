/**
 * The audit service's console in headless Chromium: events appended through the service's own
 * browser API appear in the list, filters narrow it, an entry's page shows its fields (a
 * sensitive field only as its keyed HMAC) and its inclusion in the latest signed checkpoint,
 * checked in the page the way an outside verifier checks it, and an entry whose stored row was
 * changed behind the log's back is shown as not verifying; the log page shows the origin, the
 * verifier key and the checkpoint note. Without audit:read the pages are refused. No CSP
 * violation or console error, no sideways scroll.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { createAuditService } from "../../apps/audit/service.ts";
import { chromiumPath } from "../support/chromium.ts";
import { contextWithScopes, noSideScroll, openConsole, startConsoleSuite, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(120_000);
const DORA = { username: "dora", password: "cobalt lantern ridge 8" };
const SECRET_EMAIL = "dora.private@example.test";
let s: ConsoleSuite;
let browser: Browser | undefined;
let base: string;

beforeAll(async () => {
  s = await startConsoleSuite([createAuditService()], {
    configure: (_name, c) => {
      (c as { app?: unknown }).app = { checkpoint_interval_ms: 100, self_check_interval_ms: 0 };
    },
  });
  base = `${s.svc.audit!.publicUrl}/browser/`;
  await s.user(DORA.username, DORA.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

/** Appends events of the user's tenant through /browser/api/v1 (session + CSRF), as another tab of the console could. */
const append = (page: Page, events: unknown[]) =>
  page.evaluate(async (evs) => {
    const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
    const r = await fetch("/browser/api/v1/events", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ events: evs }) });
    return { status: r.status, body: await r.json() };
  }, events);

const event = (n: number, action: string, result = "ok", sensitive?: Record<string, string>) => ({
  id: `console-test-${n}-${crypto.randomUUID().slice(0, 8)}`,
  time: new Date().toISOString(),
  tenant: "acme",
  actor: n % 2 ? "ops-client" : "dora",
  action,
  resource: `key-${n}`,
  result,
  details: { n },
  ...(sensitive ? { sensitive } : {}),
});

describe("audit console", () => {
  test("events listed and filtered; an entry's inclusion in the signed checkpoint verified in the page; a changed row shown as failing", async () => {
    if (!browser) return console.warn("skipped: chromium not installed (Debian package chromium)");
    const writer = await contextWithScopes(browser, s.svc.audit!, s.tenant, ["audit:read", "audit:write"], "writer");
    const wpage = await writer.newPage();
    await wpage.goto(base);
    const appended = await append(wpage, [event(1, "key.encrypt"), event(2, "key.rotate"), event(3, "key.encrypt", "denied"), event(4, "user.sign_in", "ok", { email: SECRET_EMAIL })]);
    expect(appended.status).toBe(200);
    const seqs = appended.body.seqs as number[];
    await writer.close();

    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, base, DORA);
    expect(await page.locator("h1").textContent()).toBe("Events");
    for (const n of [1, 2, 3, 4]) await page.locator("#events", { hasText: `key-${n}` }).waitFor();

    // Filters narrow the list (a plain GET form).
    await page.getByLabel("Action").fill("key.encrypt");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/action=key.encrypt/);
    const text = (await page.locator("#events").textContent())!;
    expect(text).toContain("key-1");
    expect(text).toContain("key-3");
    expect(text).not.toContain("key-2");
    await page.getByLabel("Result").selectOption("denied");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL(/result=denied/);
    expect(await page.locator("#events tbody tr").count()).toBe(1);

    // The sign-in entry: its e-mail only as a keyed HMAC; included in a checkpoint that verifies.
    const signIn = seqs[3]!;
    let verified = false;
    for (let i = 0; i < 50 && !verified; i++) {
      await page.goto(`${base}events/${signIn}`);
      verified = (await page.locator("#inclusion").textContent())!.includes("included");
      if (!verified) await Bun.sleep(200);
    }
    expect(verified).toBe(true);
    expect(await page.locator("#inclusion").textContent()).toContain("signature verifies");
    expect(await page.content()).not.toContain(SECRET_EMAIL);
    expect(await page.locator("main").textContent()).toContain("user.sign_in");

    // The log page: origin, verifier key, the signed note.
    await page.getByRole("link", { name: "The log" }).first().click();
    await page.waitForURL(`${base}log`);
    const log = (await page.locator("main").textContent())!;
    expect(log).toContain("cryptoutil.local/audit");
    expect(await page.locator("pre.checkpoint").textContent()).toMatch(/^cryptoutil\.local\/audit\n\d+\n/);

    // A row changed behind the log's back (the database refuses UPDATE: drop its guard as an attacker with file access would).
    const db = s.svc.audit!.ctx.db;
    const tampered = seqs[1]!;
    const { sql } = await import("kysely");
    const triggers = (await sql<{ name: string; sql: string }>`SELECT name, sql FROM sqlite_master WHERE type = 'trigger'`.execute(db)).rows;
    for (const t of triggers) await sql.raw(`DROP TRIGGER ${t.name}`).execute(db);
    const row = (await sql<{ entry: string }>`SELECT entry FROM audit_events WHERE seq = ${tampered}`.execute(db)).rows[0]!;
    await sql`UPDATE audit_events SET entry = ${row.entry.replace("key.rotate", "key.create")} WHERE seq = ${tampered}`.execute(db);
    for (const t of triggers) await sql.raw(t.sql).execute(db);
    await page.goto(`${base}events/${tampered}`);
    expect(await page.locator("#inclusion").textContent()).toContain("does not verify");

    expect(await noSideScroll(context, [base, `${base}events/${signIn}`, `${base}log`])).toEqual({});
    expect(errors).toEqual([]);
    await context.close();
  });

  test("without audit:read every page is refused", async () => {
    if (!browser) return;
    const context = await contextWithScopes(browser, s.svc.audit!, s.tenant, ["audit:write"], "no-reader");
    const page = await context.newPage();
    for (const p of ["", "log", "events/0"]) {
      const r = await page.goto(`${base}${p}`);
      expect(r!.status()).toBe(403);
    }
    await context.close();
  });
});
