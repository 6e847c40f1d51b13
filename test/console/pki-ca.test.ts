/**
 * pki-ca's console in headless Chromium: the dashboard's charts and search, the approval
 * queue (findings, reject with a reason, approve, then `openssl verify` of the downloaded
 * chain), certificate detail and revocation with a reason (the CRL's number moves), the CA
 * hierarchy and profiles; read-only for a user without pki:revoke, whose forged revoke is
 * refused; no sideways scroll.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { pkiCa } from "../../apps/pki-ca/service.ts";
import { chromiumPath } from "../support/chromium.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { haveOpenssl, makeCsr, openssl, PROFILES } from "../pki-ca/helpers.ts";
import { contextWithScopes, noSideScroll, openConsole, startConsoleSuite, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(90_000);
const CY = { username: "cy", password: "slate heron bramble 19" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let url: string;
const dir = mkdtempSync(join(tmpdir(), "cryptoutil-console-pki-"));

beforeAll(async () => {
  if (process.env.CI === "true" && !haveOpenssl()) throw new Error("openssl is required");
  s = await startConsoleSuite([pkiCa], {
    configure: (_, c) => {
      c.app = { base_url: `https://127.0.0.1:${c.server.port}`, issuing_cas: ["P-256"], profiles: { server: PROFILES.server, manual: PROFILES.manual } };
    },
  });
  url = `${s.svc["pki-ca"]!.publicUrl}/browser/`;
  await s.user(CY.username, CY.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

/** Submits a CSR through the browser API (session + CSRF), as an RA operator's tool would. */
async function submit(page: Page, csr: string, profile: string) {
  return page.evaluate(
    async ([csr, profile]) => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const r = await fetch("/browser/api/v1/certificates", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ csr, profile }) });
      return { status: r.status, body: await r.json() };
    },
    [csr, profile],
  );
}

describe("pki-ca console", () => {
  test("approval queue: findings, reject with a reason, approve and openssl verify; revoke with a reason; dashboard, hierarchy, profiles", async () => {
    if (!browser || !haveOpenssl()) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, url, CY);
    expect(await page.locator("h1").textContent()).toBe("Certificates");

    // One issued at once (auto profile), two queued (manual profile).
    const auto = makeCsr(dir, "auto", { subj: "/CN=www.example.com", san: "DNS:www.example.com" });
    expect((await submit(page, auto.csr, "server")).status).toBe(201);
    const good = makeCsr(dir, "good", { subj: "/CN=api.example.com", san: "DNS:api.example.com" });
    const queued = await submit(page, good.csr, "manual");
    expect(queued.status).toBe(202);
    const bad = makeCsr(dir, "bad", { subj: "/CN=mallory.example.com", san: "DNS:mallory.example.com" });
    expect((await submit(page, bad.csr, "manual")).status).toBe(202);

    await page.getByRole("navigation", { name: "Certificate Authority" }).getByRole("link", { name: "Approval queue" }).click();
    await page.waitForURL((u) => u.pathname === "/browser/requests");
    const rows = page.locator("#requests tbody tr");
    expect(await rows.count()).toBe(2);
    expect(await page.locator("#requests").textContent()).toContain("Policy findings");

    // Reject mallory with a reason.
    const malloryRow = rows.filter({ hasText: "mallory.example.com" });
    await malloryRow.getByLabel("Reason for rejecting").fill("not a host we run");
    await malloryRow.getByRole("button", { name: "Reject" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Rejected." }).waitFor();
    expect(await rows.count()).toBe(1);

    // Approve api.example.com: the certificate page follows.
    await rows.filter({ hasText: "api.example.com" }).getByRole("button", { name: "Approve" }).click();
    await page.waitForURL((u) => u.pathname.startsWith("/browser/certificates/"));
    await page.locator("#flash", { hasText: "Approved: certificate" }).waitFor();
    const serial = page.url().split("/").pop()!;
    expect(await page.locator("dl.details").textContent()).toContain("api.example.com");

    // Downloads (the page's links, with the session) and openssl verify against the root.
    const get = async (path: string) => {
      const [status, b64] = await page.evaluate(async (p) => {
        const r = await fetch(p);
        const bytes = new Uint8Array(await r.arrayBuffer());
        return [r.status, btoa(String.fromCharCode(...bytes))] as const;
      }, path);
      expect(status).toBe(200);
      return Buffer.from(b64, "base64");
    };
    const chain = await get(`/browser/certificates/${serial}/chain.pem`);
    const pem = await get(`/browser/certificates/${serial}/certificate.pem`);
    const der = await get(`/browser/certificates/${serial}/certificate.der`);
    expect(der[0]).toBe(0x30);
    const root = await get("/pki/ca/root.pem");
    writeFileSync(join(dir, "root.pem"), root);
    writeFileSync(join(dir, "chain.pem"), chain);
    writeFileSync(join(dir, "leaf.pem"), pem);
    writeFileSync(join(dir, "leaf.der"), der);
    const verified = openssl(["verify", "-CAfile", join(dir, "root.pem"), "-untrusted", join(dir, "chain.pem"), join(dir, "leaf.pem")]);
    expect(verified.out).toContain("leaf.pem: OK");
    expect(verified.code).toBe(0);
    expect(openssl(["x509", "-inform", "DER", "-in", join(dir, "leaf.der"), "-noout", "-serial"]).out.toLowerCase()).toContain(serial.toLowerCase());
    // The key of the CSR matches the certificate.
    expect(openssl(["x509", "-in", join(dir, "leaf.pem"), "-noout", "-pubkey"]).out).toBe(openssl(["pkey", "-in", good.keyFile, "-pubout"]).out);

    // The CA hierarchy with CRL status, before and after a revocation.
    await page.goto(`${url}cas`);
    const crlNumber = async () => Number((await page.locator("dl.details").filter({ hasText: "CRL number" }).first().textContent())!.match(/CRL number\s*(\d+)/)?.[1] ?? "0");
    const before = await crlNumber();
    expect(await page.locator("main").textContent()).toContain("CRL next update");

    await page.goto(`${url}certificates/${serial}`);
    await page.locator("#revoke").getByLabel("Reason").selectOption("keyCompromise");
    await page.locator("#revoke").getByRole("button", { name: "Revoke certificate" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator("#flash", { hasText: "Revoked (keyCompromise)." }).waitFor();
    expect(await page.locator("dl.details").textContent()).toContain("revoked");
    expect(await page.locator("#revoke").count()).toBe(0);
    await page.goto(`${url}cas`);
    expect(await crlNumber()).toBeGreaterThan(before);

    // Dashboard: charts, search by SAN, status and profile; rejected requests listed.
    await page.goto(url);
    expect(await page.locator("#issued-chart desc").textContent()).toContain("2 in total");
    expect(await page.locator("#expiring-chart desc").textContent()).toContain("1 in total");
    await page.getByLabel("SAN contains").fill("api.example");
    await page.getByRole("button", { name: "Apply" }).click();
    await page.waitForURL((u) => u.searchParams.get("san") === "api.example");
    expect(await page.locator("#certificates tbody tr").count()).toBe(1);
    await page.goto(`${url}?status=valid&profile=server`);
    expect(await page.locator("#certificates tbody").textContent()).toContain("www.example.com");
    expect(await page.locator("#certificates tbody tr").count()).toBe(1);
    // Each certificate names the front end its request came through (these: the REST API).
    expect(await page.locator("#certificates thead").textContent()).toContain("Came through");
    expect(await page.locator("#certificates tbody").textContent()).toContain("REST API");
    await page.goto(`${url}?origin=est`);
    expect(await page.locator("main").textContent()).toContain("No certificates match.");
    await page.goto(`${url}?expires_before=2000-01-01`);
    expect(await page.locator("main").textContent()).toContain("No certificates match.");
    await page.goto(`${url}requests?status=rejected`);
    expect(await page.locator("#requests").textContent()).toContain("mallory.example.com");
    await page.goto(`${url}profiles`);
    expect(await page.locator("table").textContent()).toContain("manual");
    expect(errors).toEqual([]);
    expect(await noSideScroll(context, [url, `${url}requests?status=rejected`, `${url}certificates/${serial}`, `${url}cas`, `${url}profiles`])).toEqual({});
    await context.close();
  });

  test("without pki:revoke and pki:approve the pages are read-only and a forged revoke is refused", async () => {
    if (!browser) return;
    const ca = s.svc["pki-ca"]!;
    const reader = await ca.ctx.sessions.create({ tenant: s.tenant, subject: "auditor", scopes: ["openid", "pki:read"], name: "auditor" });
    const context = await contextWithScopes(browser, ca, s.tenant, ["pki:read"], "auditor");
    const page = await context.newPage();
    const errors = watch(page);
    await page.goto(`${url}?status=valid`);
    await page.locator("#certificates tbody a").first().click();
    await page.waitForURL((u) => u.pathname.startsWith("/browser/certificates/"));
    expect(await page.locator("#revoke").count()).toBe(0);
    expect(await page.getByRole("note").textContent()).toContain("pki:revoke");
    expect(errors).toEqual([]);
    const forged = await page.evaluate(async () => {
      const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const r = await fetch(location.pathname.replace("/browser/", "/browser/api/v1/") + "/revoke", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: "{}" });
      return [r.status, (await r.json()).error.code];
    });
    expect(forged).toEqual([403, "insufficient_scope"]);
    const queue = await ca.call("/browser/requests", { headers: { cookie: `${SESSION_COOKIE}=${reader.id}` } });
    expect(queue.status).toBe(403);
    expect(await queue.text()).toContain("missing scope: pki:approve");
    // A malformed serial is a 400 page, not a failure.
    expect((await ca.call("/browser/certificates/not-hex", { headers: { cookie: `${SESSION_COOKIE}=${reader.id}` } })).status).toBe(400);
    await context.close();
  });
});

describe("pki-ca console pages under fuzz", () => {
  test("random serials, files and queries never give a 5xx", async () => {
    const ca = s.svc["pki-ca"]!;
    const r = rng(31);
    const alphabet = "abcdef0123456789XYZ-_.~%/?&=+;:'\"<>{}[]\\ *@,\u00e9";
    const junk = () => Array.from({ length: r(48) }, () => alphabet[r(alphabet.length)]).join("");
    const sid = (await ca.ctx.sessions.create({ tenant: s.tenant, subject: "fuzz", scopes: ["pki:read", "pki:approve", "pki:revoke"] })).id;
    const q = () => ["serial", "subject", "san", "status", "profile", "expires_before", "sort", "dir", "page"].map((k) => `${k}=${encodeURIComponent(junk())}`).join("&");
    const pages = [() => `/browser/?${q()}`, () => `/browser/requests?${q()}`, () => `/browser/certificates/${encodeURIComponent(junk())}`, () => `/browser/certificates/${encodeURIComponent(junk())}/${encodeURIComponent(junk())}`, () => `/browser/profiles?${q()}`];
    const cases = Array.from({ length: 250 }, (_, i) => pages[i % pages.length]!());
    const out = await fuzz(cases, (path) => ca.call(path, { headers: { cookie: `${SESSION_COOKIE}=${sid}` }, redirect: "manual" }), { describe: (p) => p, maxMs: 10_000, concurrency: 4 });
    expect(out.statuses.get(200)).toBeGreaterThan(0);
    expect(out.statuses.get(400)).toBeGreaterThan(0);
  });
});
