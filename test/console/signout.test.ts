/**
 * Signing out everywhere (OIDC Back-Channel Logout 1.0 between identity-authz and every
 * console's browser login), with learn-ps's console on `localhost` and identity-idp's on
 * `127.0.0.1`: two origins and two cookie jars, so only the back channel can end the other one.
 * Signing out of one console ends the other; an admin disabling the user ends them too. The
 * receiver refuses logout tokens that are forged, mistyped, for another client, replayed, with a
 * nonce, without the event, or stale; random bodies never give a 5xx. Discovery advertises it.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import type { Browser, Page } from "playwright-core";
import { SignJWT, generateKeyPair } from "jose";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { Authz } from "../../apps/identity-authz/domain/authz.ts";
import { BACKCHANNEL_LOGOUT_EVENT } from "../../apps/identity-authz/domain/backchannel-logout.ts";
import { chromiumPath } from "../support/chromium.ts";
import { fuzz, rng } from "../support/fuzz.ts";
import { SESSION_COOKIE } from "../../src/auth/session.ts";
import { openConsole, startConsoleSuite, watch, type ConsoleSuite } from "./harness.ts";

setDefaultTimeout(90_000);
const GRACE = { username: "grace", password: "harbour velvet orchard 17" };
const HOPPER = { username: "hopper", password: "saffron quarry lantern 88" };
let s: ConsoleSuite;
let browser: Browser | undefined;
let learnUrl: string;
let idpUrl: string;
let hopperId: string;

beforeAll(async () => {
  s = await startConsoleSuite([learnPs], { idpConsole: true, hosts: { "learn-ps": "localhost" } });
  learnUrl = `${s.urlOf("learn-ps")}/browser/`;
  idpUrl = `${s.urlOf("identity-idp")}/browser/`;
  await s.user(GRACE.username, GRACE.password);
  hopperId = await s.user(HOPPER.username, HOPPER.password);
  if (chromiumPath()) browser = await s.browser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await s?.stop();
});

/**
 * Reloads `url` until it no longer shows "signed in as" (the back channel runs in the
 * background): the console then sends the browser to sign in again, which ends at the idp.
 */
async function signedOutAt(page: Page, url: string): Promise<void> {
  for (let i = 0; i < 60; i++) {
    await page.goto(url);
    await page.waitForLoadState("load");
    if ((await page.locator("#who").count()) === 0) {
      // Sent to sign in again, and the idp asks for the password: no session is left anywhere.
      await page.getByLabel("Password").waitFor({ timeout: 15_000 });
      return;
    }
    await page.waitForTimeout(500);
  }
  throw new Error(`still signed in at ${url}`);
}

const learnClientId = async () => (await Authz.of(s.authz.ctx).registry.listClients(s.tenant)).find((c) => c.client_name === "learn-ps console")!.client_id;

const postLogout = (body: string) =>
  fetch(`${s.urlOf("learn-ps")}/browser/backchannel-logout`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body, tls: { ca: s.ca } } as RequestInit);

describe("sign out everywhere", () => {
  test("discovery advertises back-channel logout; ID tokens carry sid", async () => {
    const d = (await (await s.authz.call(`/t/${s.tenant}/.well-known/openid-configuration`)).json()) as Record<string, unknown>;
    expect(d.backchannel_logout_supported).toBe(true);
    expect(d.backchannel_logout_session_supported).toBe(true);
    expect(d.claims_supported).toContain("sid");
  });

  test("signing out of identity-idp's console (127.0.0.1) ends learn-ps's (localhost)", async () => {
    if (!browser) return;
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    const errors = watch(page);
    await openConsole(page, learnUrl, GRACE);
    const idpPage = await context.newPage();
    const idpErrors = watch(idpPage);
    await openConsole(idpPage, idpUrl, GRACE);
    // Two hosts, two cookies: one per origin.
    const cookies = (await context.cookies()).filter((c) => c.name === SESSION_COOKIE).map((c) => c.domain).sort();
    expect(cookies).toEqual(["127.0.0.1", "localhost"]);

    expect([...errors, ...idpErrors]).toEqual([]);
    await idpPage.getByRole("button", { name: "Sign out" }).click();
    await idpPage.waitForURL((u) => u.origin === new URL(idpUrl).origin && !!u.pathname.match(/^\/browser\/?$/), { timeout: 30_000 });
    await signedOutAt(page, learnUrl);
    // The localhost cookie is still in the browser; the server ended its session.
    expect((await context.cookies(s.urlOf("learn-ps"))).some((c) => c.name === SESSION_COOKIE)).toBe(true);
    await context.close();
  });

  test("an admin disabling the user ends their console sessions on every host", async () => {
    if (!browser) return;
    const context = await browser.newContext();
    const page = await context.newPage();
    await openConsole(page, learnUrl, HOPPER);
    const res = await s.idp.call(`/service/api/v1/users/${hopperId}/disable`, {
      method: "POST",
      headers: { authorization: `Bearer ${await s.idpAdminToken()}` },
    });
    expect(res.status).toBe(200);
    await signedOutAt(page, learnUrl);
    await context.close();
  });

  test("the receiver refuses bad logout tokens with 400 invalid_logout_token", async () => {
    const clientId = await learnClientId();
    const authz = Authz.of(s.authz.ctx);
    const signer = await authz.keys.signer(s.tenant, "ES256");
    const good = () => authz.backchannel.claims(s.tenant, { client_id: clientId, sid: "s".repeat(43), subject: "nobody" });
    const form = (t: string) => new URLSearchParams({ logout_token: t }).toString();
    const code = async (r: Response) => [r.status, ((await r.json()) as { error: { code: string } }).error.code];

    const ok = await signer.signJwt("logout+jwt", { ...good() });
    expect((await postLogout(form(ok))).status).toBe(200);
    expect(await code(await postLogout(form(ok)))).toEqual([400, "invalid_logout_token"]); // replayed jti

    const bad: Record<string, Promise<string>> = {
      "typ JWT": signer.signJwt("JWT", { ...good() }),
      "another client": signer.signJwt("logout+jwt", { ...good(), aud: "someone-else" }),
      "another issuer": signer.signJwt("logout+jwt", { ...good(), iss: "https://evil.example/t/acme" }),
      "with nonce": signer.signJwt("logout+jwt", { ...good(), nonce: "n" }),
      "no event": signer.signJwt("logout+jwt", { ...good(), events: {} }),
      "neither sid nor sub": signer.signJwt("logout+jwt", { ...good(), sid: undefined, sub: undefined }),
      stale: signer.signJwt("logout+jwt", { ...good(), iat: Math.floor(Date.now() / 1000) - 3600, exp: Math.floor(Date.now() / 1000) + 60 }),
      expired: signer.signJwt("logout+jwt", { ...good(), iat: Math.floor(Date.now() / 1000) - 200, exp: Math.floor(Date.now() / 1000) - 100 }),
      "foreign key": (async () => {
        const { privateKey } = await generateKeyPair("ES256");
        return new SignJWT({ ...good() }).setProtectedHeader({ alg: "ES256", typ: "logout+jwt", kid: "x" }).sign(privateKey);
      })(),
    };
    for (const [why, token] of Object.entries(bad)) expect([why, ...(await code(await postLogout(form(await token))))]).toEqual([why, 400, "invalid_logout_token"]);
    expect(await code(await postLogout(""))).toEqual([400, "invalid_logout_token"]);
    expect(BACKCHANNEL_LOGOUT_EVENT).toBe("http://schemas.openid.net/event/backchannel-logout");
  });

  test("random bodies at the receiver and at identity-authz's sessions/ended never give a 5xx", async () => {
    const r = rng(71);
    const alphabet = "abcXYZ019-_.~%=&+ \u00e9";
    const junk = () => Array.from({ length: r(300) }, () => alphabet[r(alphabet.length)]).join("");
    const jws = () => [junk(), junk(), junk()].map((x) => Buffer.from(x).toString("base64url")).join(".");
    const cases = Array.from({ length: 120 }, (_, i) => (i % 3 === 0 ? junk() : `${i % 2 ? "logout_token" : "session_ended"}=${encodeURIComponent(jws())}`));
    const send = (body: string, i: number) =>
      i % 2
        ? postLogout(body)
        : s.authz.call(`/t/${s.tenant}/sessions/ended`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body });
    let n = 0;
    const out = await fuzz(cases, (c) => send(c, n++), { describe: (c) => c.slice(0, 80), maxMs: 10_000, concurrency: 4 });
    expect(out.statuses.get(400)).toBeGreaterThan(0);
  });
});
