/**
 * End to end: identity-authz + identity-idp + learn-ps over HTTPS. (a) oauth4webapi drives
 * authorization code + PKCE with a scripted login (password + TOTP computed here), token,
 * userinfo, refresh, then calls learn-ps /service with the access token; (b) headless
 * Chromium (Playwright, Debian `chromium`) logs in through the HTML pages via learn-ps's
 * /browser/login and sees its pets page; plus the refusals on the way.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { decodeJwt } from "jose";
import { startIdentitySuite, type IdentitySuite } from "./support/e2e-suite.ts";
import { ScriptedBrowser, type Page } from "./support/browser.ts";
import { chromiumPath, launchChromium } from "../support/chromium.ts";


// Real HTTPS services and Argon2id logins: slower than unit tests on a loaded machine.
setDefaultTimeout(30_000);
let s: IdentitySuite;
let as: oauth.AuthorizationServer;
const PASSWORD = "cobalt harbour willow 311";
const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: s.ca } } as RequestInit) });
let alice: Awaited<ReturnType<IdentitySuite["userWithTotp"]>>;

beforeAll(async () => {
  s = await startIdentitySuite();
  const iss = new URL(s.issuer);
  as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, { algorithm: "oidc", ...cf() }));
  alice = await s.userWithTotp("alice", PASSWORD);
}, 60_000);

afterAll(async () => {
  await s?.stop();
});

/** Starts an authorization request of the CLI client; returns the idp login page and the PKCE/state/nonce. */
async function startLogin(b: ScriptedBrowser, extra: Record<string, string> = {}) {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const nonce = oauth.generateRandomNonce();
  const u = new URL(as.authorization_endpoint!);
  u.search = new URLSearchParams({
    response_type: "code",
    client_id: s.cliClient.client_id,
    redirect_uri: s.cliRedirect,
    scope: "openid profile email pets:read pets:write",
    state,
    nonce,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    ...extra,
  }).toString();
  const page = await b.get(u.toString(), atClient);
  return { page, verifier, state, nonce };
}
const atClient = (u: string) => u.startsWith(s.cliRedirect);

describe("(a) oauth4webapi: code + PKCE with a scripted password + TOTP login", () => {
  test("token, ID token, userinfo, refresh, then learn-ps /service with the access token", async () => {
    const b = new ScriptedBrowser(s.ca);
    const { page, verifier, state, nonce } = await startLogin(b);
    expect(page.url.startsWith(`${s.idp.publicUrl}/t/${s.tenant}/login?login_challenge=`)).toBe(true);
    expect(page.html).toContain("Pet CLI");
    const mfa = await b.submit(page, "/login", { username: "alice", password: PASSWORD }, atClient);
    expect(mfa.url).toContain("/mfa");
    const consent = await b.submit(mfa, "/mfa", { code: await alice.nextCode() }, atClient);
    expect(consent.url).toContain("/consent");
    const back = await b.submit(consent, "/consent", { decision: "allow" }, atClient);
    expect(back.status).toBe(0); // stopped at the client's redirect URI

    const client: oauth.Client = { client_id: s.cliClient.client_id, id_token_signed_response_alg: "ES256" };
    const auth = oauth.ClientSecretBasic(s.cliClient.client_secret);
    const params = oauth.validateAuthResponse(as, client, new URL(back.url), state);
    expect(new URL(back.url).searchParams.get("iss")).toBe(s.issuer);
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, auth, params, s.cliRedirect, verifier, cf()), {
      expectedNonce: nonce,
      requireIdToken: true,
    });
    const id = oauth.getValidatedIdTokenClaims(tokens)!;
    expect(id.sub).toBe(alice.id);
    expect(id.name).toBe("Name of alice");
    expect(id.amr).toEqual(["pwd", "otp"]);
    const at = decodeJwt(tokens.access_token);
    expect(at).toMatchObject({ iss: s.issuer, aud: "learn-ps", sub: alice.id });

    const info = await oauth.processUserInfoResponse(as, client, alice.id, await oauth.userInfoRequest(as, client, tokens.access_token, cf()));
    expect(info).toMatchObject({ sub: alice.id, email: "alice@example.test", email_verified: true });

    const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, auth, tokens.refresh_token!, cf()));
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);

    // learn-ps accepts authz's token on /service, scoped to the tenant.
    const created = await s.ps.call("/service/api/v1/pets", {
      method: "POST",
      headers: { authorization: `Bearer ${refreshed.access_token}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "Biscuit", species: "dog", tags: ["e2e"] }),
    });
    expect(created.status).toBe(201);
    const list = await s.ps.call("/service/api/v1/pets", { headers: { authorization: `Bearer ${refreshed.access_token}` } });
    expect(list.status).toBe(200);
    expect(((await list.json()) as { items: Array<{ name: string }> }).items.map((p) => p.name)).toContain("Biscuit");
    expect((await s.ps.call("/service/api/v1/pets", { headers: { authorization: `Bearer ${refreshed.access_token}x` } })).status).toBe(401);
  }, 30_000);
});

describe("refusals", () => {
  test("wrong password, wrong TOTP, replayed TOTP", async () => {
    const bob = await s.userWithTotp("bob", PASSWORD);
    const b = new ScriptedBrowser(s.ca);
    const { page } = await startLogin(b);
    const wrong = await b.submit(page, "/login", { username: "bob", password: "not bob's password" });
    expect(wrong.status).toBe(401);
    expect(wrong.html).toContain("Wrong username or password");
    const mfa = await b.submit(page, "/login", { username: "bob", password: PASSWORD }, atClient);
    const code = await bob.nextCode();
    const bad = await b.submit(mfa, "/mfa", { code: code === "000000" ? "111111" : "000000" });
    expect(bad.status).toBe(401);
    const consent = await b.submit(mfa, "/mfa", { code }, atClient);
    expect(consent.url).toContain("/consent");
    // The same code in a second login is refused.
    const b2 = new ScriptedBrowser(s.ca);
    const { page: p2 } = await startLogin(b2);
    const mfa2 = await b2.submit(p2, "/login", { username: "bob", password: PASSWORD }, atClient);
    const replay = await b2.submit(mfa2, "/mfa", { code });
    expect(replay.status).toBe(401);
    expect(replay.html).toContain("already used");
  }, 30_000);

  test("lockout after 3 failures: 429 with Retry-After, the right password too", async () => {
    expect((await s.idpAdmin("POST", "/users", { username: "carl", password: PASSWORD })).status).toBe(201);
    const b = new ScriptedBrowser(s.ca);
    const { page } = await startLogin(b);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await b.submit(page, "/login", { username: "carl", password: "guess number " + i })).status);
    expect(statuses).toEqual([401, 401, 429]);
    const right = await b.submit(page, "/login", { username: "carl", password: PASSWORD });
    expect(right.status).toBe(429);
    expect(Number(right.headers.get("retry-after"))).toBeGreaterThan(0);
  }, 30_000);

  test("a tampered login_challenge from authz is refused by the idp", async () => {
    const b = new ScriptedBrowser(s.ca);
    const { page } = await startLogin(b);
    const ch = new URL(page.url).searchParams.get("login_challenge")!;
    const [h, p, sig] = ch.split(".");
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
    claims.scope += " admin";
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${sig}`;
    const r = await b.get(`${s.idp.publicUrl}/t/${s.tenant}/login?login_challenge=${encodeURIComponent(forged)}`);
    expect(r.status).toBe(400);
    expect(r.html).toContain("not valid");
    // The genuine challenge verified with authz's published key works.
    expect((await b.get(page.url)).status).toBe(200);
  }, 30_000);
});

describe("(b) headless Chromium through the HTML pages", () => {
  test("logs in at learn-ps /browser/login (password + TOTP) and sees the pets page", async () => {
    // The Debian package's binary on PATH; CHROMIUM_PATH points elsewhere.
    const exe = chromiumPath();
    if (!exe) return;
    const pat = await s.userWithTotp("pat", PASSWORD);
    // The tenant's pet "Biscuit" was created through /service in (a), which runs first.
    const browser = await launchChromium(exe, await s.spkiPins());
    try {
      const context = await browser.newContext({ ignoreHTTPSErrors: false });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) errors.push(m.text()); // CSP violations, script errors
      });
      page.on("response", (r) => {
        if (r.status() >= 400 && !r.url().endsWith("/favicon.ico")) errors.push(`${r.status()} ${r.url()}`);
      });
      await page.goto(`${s.ps.publicUrl}/browser/login`);
      await page.waitForURL((u) => u.pathname === `/t/${s.tenant}/login`);
      expect(await page.title()).toBe("Sign in");
      await page.getByLabel("Username").fill("pat");
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await page.waitForURL((u) => u.pathname.endsWith("/mfa"));
      await page.getByLabel("Code").fill(await pat.nextCode());
      await page.getByRole("button", { name: "Verify" }).click();
      await page.waitForURL((u) => u.pathname.endsWith("/consent"));
      expect(await page.locator("#scopes").textContent()).toContain("pets:read");
      await page.getByRole("button", { name: "Allow" }).click();
      await page.waitForURL(`${s.ps.publicUrl}/browser/`);
      await page.locator("#pets tbody tr").first().waitFor({ timeout: 15_000 });
      expect(await page.locator("#pets tbody").textContent()).toContain("Biscuit");
      const cookies = await context.cookies(s.ps.publicUrl);
      const session = cookies.find((c) => c.name === "__Host-cryptoutil_session");
      expect(session).toMatchObject({ httpOnly: true, secure: true, sameSite: "Strict" });
      // The session endpoint gives the page its subject and CSRF token.
      const who = await page.evaluate(async () => (await fetch("/browser/api/v1/session")).json());
      expect(who).toMatchObject({ subject: pat.id, tenant: s.tenant });
      expect(errors).toEqual([]);
      // Logout from the page: a POST without the CSRF token is refused; the Sign out form ends
      // the app session, then the browser passes authz's logout (grants ended) and the idp's
      // (its session ended too) and comes back to the app.
      const forged = await page.evaluate(async () => (await fetch("/browser/logout", { method: "POST", redirect: "manual" })).status);
      expect(forged).toBe(403);
      errors.length = 0;
      const hops: string[] = [];
      page.on("request", (r) => {
        if (r.isNavigationRequest()) hops.push(new URL(r.url()).origin + new URL(r.url()).pathname);
      });
      const idpHop = page.waitForRequest((r) => r.url().startsWith(`${s.idp.publicUrl}/t/${s.tenant}/logout/continue`));
      await page.getByRole("button", { name: "Sign out" }).click();
      await idpHop;
      await page.waitForURL(`${s.ps.publicUrl}/browser/`);
      await page.locator("#status", { hasText: "You are not signed in." }).waitFor({ timeout: 10_000 });
      expect(hops).toEqual([
        `${s.ps.publicUrl}/browser/logout`, // answers with a page that moves on (form-action 'self')
        `${s.authz.publicUrl}/t/${s.tenant}/logout`,
        `${s.idp.publicUrl}/t/${s.tenant}/logout/continue`,
        `${s.ps.publicUrl}/browser/`,
      ]);
      expect(await page.evaluate(async () => (await fetch("/browser/api/v1/session")).status)).toBe(401);
      // Signing in again asks for the password: the idp session ended with the app's.
      await page.goto(`${s.ps.publicUrl}/browser/login`);
      await page.waitForURL((u) => u.pathname === `/t/${s.tenant}/login`);
      expect(await page.title()).toBe("Sign in");
      // Signed out, the pets page's own API calls get 401; nothing else failed on the way.
      expect(errors.filter((e) => !/^401 .*\/browser\/api\/v1\//.test(e))).toEqual([]);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
