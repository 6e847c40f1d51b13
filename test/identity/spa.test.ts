/**
 * identity-spa in headless Chromium (Debian `chromium`, playwright-core) against real
 * identity-authz, identity-idp, identity-rp and identity-rs over HTTPS: in BFF mode (sign-in
 * through identity-rp, the API through its proxy, sign-out) and in public-client mode (code +
 * PKCE at identity-authz, a DPoP-bound token on a non-extractable key kept in IndexedDB, the API
 * called with `Authorization: DPoP`, sign-out), with zero CSP violations and zero console errors.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { identitySpa } from "../../apps/identity-spa/service.ts";
import { quiet, startTestService, trustIdentity, type TestService } from "../support/service.ts";
import { chromiumPath, launchChromium, spkiPins } from "../support/chromium.ts";
import { startIdentitySuite, type IdentitySuite } from "./support/e2e-suite.ts";
import { freePort } from "./support/authz.ts";
import { NOTES_SCOPES, startNotesRs, startRp } from "./support/notes-apps.ts";

setDefaultTimeout(60_000);
const PASSWORD = "cobalt harbour willow 311";
const exe = chromiumPath();
let s: IdentitySuite;
let rs: TestService;
let rp: TestService;
let spa: TestService;
let alice: Awaited<ReturnType<IdentitySuite["userWithTotp"]>>;
let browser: Browser | undefined;
let page: Page;
const errors: string[] = [];

beforeAll(async () => {
  if (!exe) return;
  const [rsPort, rpPort, spaPort] = [await freePort(), await freePort(), await freePort()];
  const [rsUrl, rpUrl, spaUrl] = [rsPort, rpPort, spaPort].map((p) => `https://127.0.0.1:${p}`) as [string, string, string];
  s = await startIdentitySuite({ corsOrigins: [spaUrl] });
  alice = await s.userWithTotp("alice", PASSWORD);
  await s.authzAdmin(`/tenants/${s.tenant}/clients`, {
    client_id: "acme-spa",
    client_name: "Notes (single-page app)",
    grant_types: ["authorization_code", "refresh_token"],
    redirect_uris: [`${spaUrl}/browser/`],
    post_logout_redirect_uris: [`${spaUrl}/`],
    scopes: NOTES_SCOPES,
    audiences: ["identity-rs"],
    token_endpoint_auth_method: "none",
    dpop_bound_access_tokens: true,
  });
  const api = `${rsUrl}/service/api/v1`;
  rs = await startNotesRs(s, { port: rsPort, corsOrigins: [spaUrl] });
  rp = await startRp(s, { apiUrl: api, port: rpPort, frontends: [spaUrl], postLogout: `${spaUrl}/` });
  spa = await startTestService(identitySpa, {
    root: s.root,
    overrides: (c) => {
      quiet(c);
      c.server.port = spaPort;
      (c as { app?: unknown }).app = { rp_url: rpUrl, issuer: s.issuer, client_id: "acme-spa", api_url: api };
    },
  });
  browser = await launchChromium(exe, [...(await s.spkiPins()), ...(await spkiPins([rsPort, rpPort, spaPort], s.ca))]);
  const context = await browser.newContext();
  await context.addInitScript(() => document.addEventListener("securitypolicyviolation", (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`)));
  page = await context.newPage();
  page.on("console", (m) => {
    // Failed loads are counted by status below (the browser's own favicon requests aside).
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) errors.push(`${r.status()} ${r.url()}`);
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await spa?.stop();
  await rp?.stop();
  await rs?.stop();
  await s?.stop();
});

const ready = async () => {
  await page.waitForURL(`${spa.publicUrl}/browser/**`);
  await page.locator("body[data-ready=true]").waitFor();
};

/** At the idp's pages, if they are shown (its single sign-on may skip them): password, TOTP, consent. */
async function idpLogin(): Promise<void> {
  // Away from the page, or straight back with a code when the idp's session covers this sign-in.
  await page.waitForURL((u) => u.origin !== spa.publicUrl || u.searchParams.has("code"));
  if (new URL(page.url()).origin === spa.publicUrl) return;
  if (new URL(page.url()).pathname.endsWith("/login")) {
    await page.getByLabel("Username").fill("alice");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.waitForURL((u) => u.pathname.endsWith("/mfa"));
    await page.getByLabel("Code").fill(await alice.nextCode());
    await page.getByRole("button", { name: "Verify" }).click();
    await page.waitForURL((u) => u.origin === spa.publicUrl || u.pathname.endsWith("/consent"));
  }
  if (new URL(page.url()).pathname.endsWith("/consent")) await page.getByRole("button", { name: "Allow" }).click();
}

describe.skipIf(!exe)("identity-spa in Chromium", () => {
  test("the page is served with the strict CSP: no inline script or style, connect-src only the origins it calls", async () => {
    const res = await spa.call("/browser/");
    const csp = res.headers.get("content-security-policy")!;
    expect(csp).toContain("script-src 'self';");
    expect(csp).toContain("style-src 'self';");
    expect(csp).not.toContain("unsafe-inline");
    expect(csp).toContain(`connect-src 'self' ${rp.publicUrl} ${s.authz.publicUrl} ${rs.publicUrl};`);
    const html = await res.text();
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)/);
    expect(html).not.toMatch(/\sstyle=|<style/);
  });

  test("BFF mode: sign in through identity-rp, call identity-rs through its proxy, sign out", async () => {
    await page.goto(`${spa.publicUrl}/`);
    await ready();
    await page.getByRole("button", { name: "Sign in (BFF)" }).click();
    await idpLogin();
    await ready();
    await expect(page.locator("#bff-status").textContent()).resolves.toContain("Signed in as alice");
    await page.getByRole("button", { name: "Call the API (BFF)" }).click();
    await page.locator("#bff-output").filter({ hasText: "status" }).waitFor();
    const out = JSON.parse((await page.locator("#bff-output").textContent())!);
    expect(out).toMatchObject({ status: 200, body: { subject: alice.id, client_id: "acme-rp", binding: "none" } });
    // The page holds no token: only identity-rp's HttpOnly session cookie.
    const cookies = await page.context().cookies(rp.publicUrl);
    expect(cookies.find((c) => c.name === "__Host-rp_session")).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict" });
    expect(await page.evaluate(() => JSON.stringify(sessionStorage) + document.cookie)).not.toContain("eyJ");

    const back = page.waitForEvent("framenavigated", { predicate: (f) => f === page.mainFrame() && f.url().startsWith(`${spa.publicUrl}/browser/`) });
    await page.getByRole("button", { name: "Sign out (BFF)" }).click();
    await back;
    await ready();
    await expect(page.locator("#bff-status").textContent()).resolves.toBe("Signed out.");
    expect(await rp.ctx.db.selectFrom("rp_sessions").select("id_hash").where("subject", "=", alice.id).execute()).toEqual([]);
    expect(errors).toEqual([]);
  });

  test("public-client mode: PKCE and DPoP on a non-extractable key in IndexedDB, the API with Authorization: DPoP, sign out", async () => {
    await page.goto(`${spa.publicUrl}/browser/`);
    await ready();
    await page.getByRole("button", { name: "Sign in (public client)" }).click();
    await idpLogin();
    await ready();
    await expect(page.locator("#pub-status").textContent()).resolves.toContain("Signed in as alice");
    const key = await page.evaluate(
      () =>
        new Promise<{ extractable: boolean; type: string }>((resolve, reject) => {
          const open = indexedDB.open("identity-spa", 1);
          open.onerror = () => reject(open.error);
          open.onsuccess = () => {
            const get = open.result.transaction("keys").objectStore("keys").get("dpop");
            get.onsuccess = () => resolve({ extractable: get.result.privateKey.extractable, type: get.result.privateKey.type });
          };
        }),
    );
    expect(key).toEqual({ extractable: false, type: "private" });
    await page.getByRole("button", { name: "Call the API (DPoP)" }).click();
    await page.locator("#pub-output").filter({ hasText: "status" }).waitFor();
    const out = JSON.parse((await page.locator("#pub-output").textContent())!);
    expect(out).toMatchObject({ status: 200, body: { subject: alice.id, client_id: "acme-spa", binding: "dpop" } });
    // The stolen token alone, as Bearer, is refused.
    const stored = JSON.parse((await page.evaluate(() => sessionStorage.getItem("identity-spa.pub.tokens")))!);
    expect((await rs.call("/service/api/v1/profile", { headers: { authorization: `Bearer ${stored.access_token}` } })).status).toBe(401);

    // Sign-out ends at identity-authz's logout and comes back: wait for that return, not the page it leaves.
    const back = page.waitForEvent("framenavigated", { predicate: (f) => f === page.mainFrame() && f.url().startsWith(`${spa.publicUrl}/browser/`) });
    await page.getByRole("button", { name: "Sign out (public client)" }).click();
    await back;
    await ready();
    await expect(page.locator("#pub-status").textContent()).resolves.toBe("Signed out.");
    expect(await page.evaluate(() => sessionStorage.getItem("identity-spa.pub.tokens"))).toBeNull();
    expect(errors).toEqual([]);
  });
});
