/**
 * The browser login (src/auth/bff.ts) mounted in learn-ps against the real identity-authz
 * (its login step answered by the scripted idp stand-in of test/identity/support/authz.ts):
 * PKCE S256, state, iss, nonce and code exchange through oauth4webapi, the server-side
 * session and its CSRF token, logout, and the refusals.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { parseBrowserLoginConfig } from "../../src/auth/bff.ts";
import { startTestService, tempDir, type TestService } from "../support/service.ts";
import { freePort, startAuthz, type TestAuthz } from "../identity/support/authz.ts";
import { ScriptedBrowser } from "../identity/support/browser.ts";


// Real HTTPS services and Argon2id logins: slower than unit tests on a loaded machine.
setDefaultTimeout(30_000);
let authz: TestAuthz;
let ps: TestService;
let ca: string;
const T = "shop";

let webClientId = "";

beforeAll(async () => {
  authz = await startAuthz();
  await authz.createTenant(T);
  const root = tempDir();
  const port = await freePort();
  const psUrl = `https://127.0.0.1:${port}`;
  const web = await authz.createClient(T, {
    client_name: "Pet Store",
    grant_types: ["authorization_code", "refresh_token"],
    redirect_uris: [`${psUrl}/browser/callback`],
    post_logout_redirect_uris: [`${psUrl}/browser/`],
    scopes: ["openid", "profile", "pets:read"],
    audiences: ["learn-ps"],
  });
  webClientId = web.client_id;
  const secretFile = join(root, "client.secret");
  writeFileSync(secretFile, web.client_secret!);
  const caFile = join(root, "authz-ca.pem");
  writeFileSync(caFile, authz.ca);
  const login = parseBrowserLoginConfig({ issuer: `${authz.publicUrl}/t/${T}`, client_id: web.client_id, client_secret_file: secretFile, scope: "openid profile pets:read", ca_file: caFile });
  ps = await startTestService(learnPs, {
    root,
    overrides: (c) => {
      c.server.port = port;
      c.browser.login = login;
      c.log.access = false;
      c.auth.issuer = `${authz.publicUrl}/t/{tenant}`;
      c.auth.jwks_url = `${authz.publicUrl}/t/{tenant}/jwks`;
      c.auth.ca_file = caFile;
    },
  });
  ca = authz.caAll + ps.ca;
});

afterAll(async () => {
  await ps?.stop();
  await authz?.stop();
});

const atCallback = (u: string) => u.startsWith(`${ps.publicUrl}/browser/callback`);

/** Runs the login up to (not into) learn-ps's callback. */
async function toCallback(b: ScriptedBrowser, returnTo?: string) {
  const start = await b.request(`${ps.publicUrl}/browser/login${returnTo ? `?return_to=${encodeURIComponent(returnTo)}` : ""}`);
  expect(start.status).toBe(302);
  const cb = await b.follow(start, atCallback);
  expect(cb.status).toBe(0);
  return { start, callback: cb.url };
}

describe("browser login", () => {
  test("code + PKCE S256 ends in a server-side session; session endpoint gives subject and CSRF token", async () => {
    authz.idp.nextLogin = { sub: "user-42" };
    const b = new ScriptedBrowser(ca);
    const { start, callback } = await toCallback(b);
    const authorize = new URL(start.headers.get("location")!);
    expect(authorize.origin + authorize.pathname).toBe(`${authz.publicUrl}/t/${T}/authorize`);
    expect(authorize.searchParams.get("code_challenge_method")).toBe("S256");
    expect(authorize.searchParams.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(authorize.searchParams.get("state")).toBeTruthy();
    expect(authorize.searchParams.get("nonce")).toBeTruthy();
    expect(start.headers.get("set-cookie")).toMatch(/^__Host-cryptoutil_login=[A-Za-z0-9_-]+; Path=\/; Secure; HttpOnly; SameSite=Lax; Max-Age=600$/);
    expect(new URL(callback).searchParams.get("iss")).toBe(`${authz.publicUrl}/t/${T}`);

    const done = await b.request(callback);
    expect(done.status).toBe(303);
    expect(done.headers.get("location")).toBe("/browser/");
    expect(b.cookies.has("__Host-cryptoutil_login")).toBe(false);
    expect(done.headers.getSetCookie().some((c) => /^__Host-cryptoutil_session=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict/.test(c))).toBe(true);

    const who = await b.request(`${ps.publicUrl}/browser/api/v1/session`);
    expect(who.status).toBe(200);
    const j = JSON.parse(who.html);
    expect(j).toMatchObject({ tenant: T, subject: "user-42" });
    expect(j.scopes).toContain("pets:read");
    expect(j.csrf_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await b.request(`${ps.publicUrl}/browser/api/v1/pets`)).status).toBe(200);

    // The same callback again: the login state is gone, nothing happens.
    expect((await b.request(callback)).status).toBe(400);

    // Logout: POST only, CSRF required; then the session is dead and the browser goes to authz's logout.
    expect((await b.request(`${ps.publicUrl}/browser/logout`, { method: "POST" })).status).toBe(403);
    expect((await b.request(`${ps.publicUrl}/browser/logout`, { method: "POST", headers: { "x-csrf-token": j.csrf_token, origin: "https://evil.example" } })).status).toBe(403);
    // `Origin: null` (a form POST under no-referrer) passes only when the browser says same-origin.
    expect((await b.request(`${ps.publicUrl}/browser/logout`, { method: "POST", headers: { "x-csrf-token": j.csrf_token, origin: "null", "sec-fetch-site": "cross-site" } })).status).toBe(403);
    const out = await b.request(`${ps.publicUrl}/browser/logout`, { method: "POST", headers: { "x-csrf-token": j.csrf_token } });
    expect(out.status).toBe(303);
    const bye = new URL(out.headers.get("location")!);
    expect(bye.origin + bye.pathname).toBe(`${authz.publicUrl}/t/${T}/logout`);
    expect(bye.searchParams.get("post_logout_redirect_uri")).toBe(`${ps.publicUrl}/browser/`);
    // The ID token from the login goes along as the hint, so authz ends this user's grants.
    const hint = bye.searchParams.get("id_token_hint");
    expect(hint).not.toBeNull();
    expect(decodeJwt(hint!)).toMatchObject({ sub: "user-42", aud: webClientId, iss: `${authz.publicUrl}/t/${T}` });
    const back = await b.follow(out);
    expect(back.url).toBe(`${ps.publicUrl}/browser/`);
    // The test idp received authz's signed logout request for this user on the way.
    expect(authz.idp.logoutRequests.at(-1)).toMatchObject({ sub: "user-42", client_id: webClientId });
    expect((await b.request(`${ps.publicUrl}/browser/api/v1/session`)).status).toBe(401);
  });

  test("wrong state, missing iss, tampered login cookie and refused login do not make a session", async () => {
    authz.idp.nextLogin = { sub: "user-7" };
    const b = new ScriptedBrowser(ca);
    const { callback } = await toCallback(b);
    const u = new URL(callback);
    u.searchParams.set("state", "forged-state");
    expect((await b.request(u.toString())).status).toBe(400);
    expect(b.cookies.has("__Host-cryptoutil_session")).toBe(false);

    const b2 = new ScriptedBrowser(ca);
    const c2 = new URL((await toCallback(b2)).callback);
    c2.searchParams.delete("iss");
    expect((await b2.request(c2.toString())).status).toBe(400);

    const b3 = new ScriptedBrowser(ca);
    const c3 = (await toCallback(b3)).callback;
    const v = b3.cookies.get("__Host-cryptoutil_login")!;
    b3.cookies.set("__Host-cryptoutil_login", v.slice(0, -2) + (v.endsWith("AA") ? "BB" : "AA"));
    const r3 = await b3.request(c3);
    expect(r3.status).toBe(400);
    expect(r3.html).toContain("expired");

    authz.idp.nextLogin = { error: "access_denied" };
    const b4 = new ScriptedBrowser(ca);
    const r4 = await b4.request((await toCallback(b4)).callback);
    expect(r4.status).toBe(403);
    expect(r4.html).toContain("Access was denied");
    expect(b4.cookies.has("__Host-cryptoutil_session")).toBe(false);
  });

  test("return_to only accepts local /browser/ paths", async () => {
    authz.idp.nextLogin = { sub: "user-8" };
    for (const [asked, expected] of [
      ["/browser/pets?species=dog", "/browser/pets?species=dog"],
      ["https://evil.example/", "/browser/"],
      ["//evil.example/browser/", "/browser/"],
      ["/browser//evil.example", "/browser/"],
    ] as const) {
      const b = new ScriptedBrowser(ca);
      const done = await b.request((await toCallback(b, asked)).callback);
      expect(done.headers.get("location")).toBe(expected);
    }
  });

  test("config: bad values are refused with the key named", () => {
    expect(() => parseBrowserLoginConfig({ issuer: "http://x.example/t/a", client_id: "c", client_secret_file: "f" })).toThrow(/browser\.login\.issuer/);
    expect(() => parseBrowserLoginConfig({ issuer: "https://x.example/t/a", client_id: "c" })).toThrow(/browser\.login\.client_secret_file/);
    expect(() => parseBrowserLoginConfig({ issuer: "https://x.example/t/a", client_id: "c", client_secret_file: "f", scope: "openid  two-spaces" })).toThrow(/browser\.login\.scope/);
    expect(parseBrowserLoginConfig({ issuer: "https://x.example/t/a", client_id: "c", client_secret_file: "f" }).scope).toBe("openid profile");
  });
});
