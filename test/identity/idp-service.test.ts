/**
 * identity-idp over real HTTPS with a test authz key (support/idp-authz-stub.ts): admin API,
 * the login pages (password, TOTP, recovery codes, consent, enrolment, lockout, sessions)
 * and the signed login hand-off both ways.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from "jose";
import { identityIdp } from "../../apps/identity-idp/service.ts";
import { totp, hotp, base32Decode } from "../../apps/identity-idp/domain/otp.ts";
import { LoginThrottle } from "../../apps/identity-idp/domain/throttle.ts";
import { IdpSessions, IDP_COOKIE } from "../../apps/identity-idp/domain/sessions.ts";
import { startTestService, tempDir, type TestService } from "../support/service.ts";
import { startTestIssuer, type TestIssuer } from "../support/issuer.ts";
import { startAuthzStub, type AuthzStub } from "./support/idp-authz-stub.ts";
import { ScriptedBrowser, enrolmentSecret, recoveryCodes, type Page } from "./support/browser.ts";


// Real HTTPS services and Argon2id logins: slower than unit tests on a loaded machine.
setDefaultTimeout(30_000);
let idp: TestService;
let authz: AuthzStub;
let issuer: TestIssuer;
let adminToken: string;
const T = "acme";
const PASSWORD = "violet lantern orbit 42";

async function admin(path: string, method = "GET", body?: unknown, token = adminToken) {
  return idp.call(`/service/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
}

async function createUser(username: string, extra: Record<string, unknown> = {}) {
  const r = await admin("/users", "POST", { username, password: PASSWORD, name: `User ${username}`, email: `${username}@example.com`, email_verified: true, ...extra });
  expect(r.status).toBe(201);
  return (await r.json()) as { id: string; username: string };
}

const isCallback = (u: string) => u.startsWith(authz.url);
const loginUrl = (ch: string, tenant = T) => `${idp.publicUrl}/t/${tenant}/login?login_challenge=${encodeURIComponent(ch)}`;

/** Checks the verifier on authz's callback URL exactly as authz would, and returns its claims. */
async function verifier(p: Page, tenant = T) {
  expect(p.url.startsWith(`${authz.issuer(tenant)}/login/callback?login_verifier=`)).toBe(true);
  const jws = new URL(p.url).searchParams.get("login_verifier")!;
  const jwks = (await (await idp.call(`/t/${tenant}/jwks`)).json()) as JSONWebKeySet;
  const { payload, protectedHeader } = await jwtVerify(jws, createLocalJWKSet(jwks), { audience: authz.issuer(tenant), typ: "login-verifier+jwt", algorithms: ["ES256"] });
  expect(protectedHeader.alg).toBe("ES256");
  expect(payload.exp! - payload.iat!).toBe(120);
  return payload as Record<string, any>;
}

async function passwordStep(b: ScriptedBrowser, ch: string, username: string, password = PASSWORD) {
  const login = await b.get(loginUrl(ch));
  expect(login.status).toBe(200);
  return b.submit(login, "/login", { username, password }, isCallback);
}

beforeAll(async () => {
  authz = await startAuthzStub();
  issuer = await startTestIssuer({ audience: "identity-idp" });
  const root = tempDir();
  const caFile = join(root, "authz-ca.pem");
  writeFileSync(caFile, authz.caPem);
  idp = await startTestService(identityIdp, {
    root,
    issuer,
    overrides: (c) => {
      c.log.access = false;
      (c as { app?: unknown }).app = { authz_url: authz.url, ca_file: caFile, lockout_user_threshold: 3, lockout_ip_threshold: 10_000, lockout_base_s: 30 };
    },
  });
  adminToken = await issuer.mint({ sub: "admin-client", tenant: T, scope: "identity:admin" });
});

afterAll(async () => {
  await idp?.stop();
  await authz?.stop();
  await issuer?.stop();
});

describe("admin API", () => {
  test("users: create, rules, list, get, update, disable, reset; scope and tenant enforced", async () => {
    const weak = await admin("/users", "POST", { username: "weak", password: "password1234" });
    expect(weak.status).toBe(400);
    expect(((await weak.json()) as any).error.code).toBe("weak_password");
    const short = await admin("/users", "POST", { username: "weak", password: "short" });
    expect(((await short.json()) as any).error.code).toBe("weak_password");
    const bad = await admin("/users", "POST", { username: "Bad Name!", password: PASSWORD });
    expect(((await bad.json()) as any).error.code).toBe("validation_failed");

    const u = await createUser("bob");
    expect((await admin("/users", "POST", { username: "BOB", password: PASSWORD })).status).toBe(409);
    const got = (await (await admin(`/users/${u.id}`)).json()) as any;
    expect(got).toMatchObject({ username: "bob", email: "bob@example.com", disabled: false, has_password: true });
    expect(JSON.stringify(got)).not.toContain("argon2");
    const list = (await (await admin("/users?limit=100")).json()) as any;
    expect(list.items.some((x: any) => x.id === u.id)).toBe(true);
    const upd = (await (await admin(`/users/${u.id}`, "PATCH", { name: "Robert" })).json()) as any;
    expect(upd.name).toBe("Robert");
    expect(((await (await admin(`/users/${u.id}/disable`, "POST")).json()) as any).disabled).toBe(true);
    expect(((await (await admin(`/users/${u.id}/enable`, "POST")).json()) as any).disabled).toBe(false);
    expect((await admin(`/users/${u.id}/password`, "POST", { password: "another long secret 77" })).status).toBe(204);
    expect((await admin(`/users/${crypto.randomUUID()}`)).status).toBe(404);

    const noScope = await issuer.mint({ sub: "c", tenant: T, scope: "pets:read" });
    expect((await admin("/users", "GET", undefined, noScope)).status).toBe(403);
    const otherTenant = await issuer.mint({ sub: "c", tenant: "other", scope: "identity:admin" });
    expect((await admin(`/users/${u.id}`, "GET", undefined, otherTenant)).status).toBe(404);
    expect((await idp.call("/service/api/v1/users")).status).toBe(401);
  });
});

describe("login hand-off", () => {
  test("password login, consent, signed verifier; consent remembered; prompt=consent and prompt=login", async () => {
    const u = await createUser("carol");
    const b = new ScriptedBrowser(idp.ca);
    const ch = await authz.challenge(T, { scope: "openid profile email pets:read", login_hint: "carol" });
    const login = await b.get(loginUrl(ch));
    expect(login.html).toContain('autocomplete="username"');
    expect(login.html).toContain('value="carol"');
    expect(login.headers.get("content-security-policy")).toContain("script-src 'self'");
    // One same-origin script (passkeys), no inline script.
    expect(login.html.match(/<script[^>]*>/g)).toEqual(['<script src="/assets/webauthn.js" defer>']);
    const preLogin = b.cookies.get("__Host-idp_session");
    expect(preLogin).toBeDefined();

    // A form without the CSRF token is refused.
    const forged = await b.request(`${idp.publicUrl}/t/${T}/login`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "username=carol&password=x" });
    expect(forged.status).toBe(403);

    const wrong = await b.submit(login, "/login", { username: "carol", password: "not the password" });
    expect(wrong.status).toBe(401);
    expect(wrong.html).toContain('aria-describedby="password-error"');
    const unknown = await b.submit(login, "/login", { username: "nobody-here", password: "not the password" });
    expect(unknown.status).toBe(401);
    expect(unknown.html.replace(/nobody-here/g, "carol").replace(/value="[^"]{40,}"/g, "")).toBe(wrong.html.replace(/value="[^"]{40,}"/g, ""));

    const consent = await b.submit(login, "/login", { username: "carol", password: PASSWORD });
    expect(b.cookies.get("__Host-idp_session")).not.toBe(preLogin); // rotated on login
    expect(consent.url).toContain(`/t/${T}/consent`);
    expect(consent.html).toContain("Pet Store");
    expect(consent.html).toContain("pets:read");
    const done = await b.submit(consent, "/consent", { decision: "allow" }, isCallback);
    const claims = await verifier(done);
    expect(claims).toMatchObject({ sub: u.id, amr: ["pwd"], granted_scope: "openid profile email pets:read", challenge: decodeJwt(ch).jti, iss: idp.publicUrl });
    expect(claims.claims).toEqual({ name: "User carol", preferred_username: "carol", email: "carol@example.com", email_verified: true });

    // Old pre-login cookie is dead: it cannot reach the account page.
    const stale = new ScriptedBrowser(idp.ca);
    stale.cookies.set("__Host-idp_session", preLogin!);
    expect((await stale.get(`${idp.publicUrl}/t/${T}/account`)).html).toContain('name="password"');

    // Same client and scopes again: session honoured, consent remembered, straight back.
    const again = await b.get(loginUrl(await authz.challenge(T, { scope: "openid pets:read" })), isCallback);
    expect((await verifier(again)).sub).toBe(u.id);
    // prompt=consent forces the consent page; deny sends access_denied.
    const forced = await b.get(loginUrl(await authz.challenge(T, { scope: "openid pets:read", prompt: "consent" })));
    expect(forced.url).toContain("/consent");
    const denied = await verifier(await b.submit(forced, "/consent", { decision: "deny" }, isCallback));
    expect(denied.error).toBe("access_denied");
    expect(denied.sub).toBeUndefined();
    // prompt=login shows the password form even with a session; prompt=none without a session says login_required.
    expect((await b.get(loginUrl(await authz.challenge(T, { prompt: "login" })))).html).toContain('name="password"');
    const none = await new ScriptedBrowser(idp.ca).get(loginUrl(await authz.challenge(T, { prompt: "none" })), isCallback);
    expect((await verifier(none)).error).toBe("login_required");
  });

  test("tampered, foreign-key, expired, wrong-audience and wrong-tenant challenges are refused", async () => {
    const b = new ScriptedBrowser(idp.ca);
    const good = await authz.challenge(T);
    const [h, p, s] = good.split(".");
    const payload = JSON.parse(atob(p!.replace(/-/g, "+").replace(/_/g, "/")));
    payload.client_id = "evil";
    const tampered = `${h}.${btoa(JSON.stringify(payload)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_")}.${s}`;
    for (const ch of [
      tampered,
      await authz.challenge(T, {}, { foreignKey: true }),
      await authz.challenge(T, {}, { aud: "someone-else" }),
      await authz.challenge(T, {}, { typ: "JWT" }),
      await authz.challenge("other", {}),
      "not-a-jws",
    ]) {
      const r = await b.get(loginUrl(ch));
      expect(r.status).toBe(400);
      expect(r.html).toContain("not valid");
    }
    const expired = await b.get(loginUrl(await authz.challenge(T, {}, { exp: Math.floor(Date.now() / 1000) - 60 })));
    expect(expired.status).toBe(400);
    expect(expired.html).toContain("expired");
  });
});

describe("second factors", () => {
  test("TOTP enrolment with QR, MFA login, wrong and replayed codes, recovery codes once", async () => {
    const u = await createUser("dave");
    const b = new ScriptedBrowser(idp.ca);
    // Log in without a challenge: lands on the account page.
    const login = await b.get(`${idp.publicUrl}/t/${T}/login`);
    const account = await b.submit(login, "/login", { username: "dave", password: PASSWORD });
    expect(account.html).toContain('id="account-username">dave<');
    const enrol = await b.get(`${idp.publicUrl}/t/${T}/enroll/totp`);
    expect(enrol.html).toContain("<svg");
    expect(enrol.html).toContain("otpauth://totp/cryptoutil:dave?secret=");
    const seed = base32Decode(enrolmentSecret(enrol));
    const bad = await b.submit(enrol, "/enroll/totp", { code: "000000" === (await totp(seed, Date.now() / 1000)) ? "111111" : "000000" });
    expect(bad.status).toBe(400);
    expect(enrolmentSecret(bad)).toBe(enrolmentSecret(enrol)); // same pending key shown again
    const codesPage = await b.submit(bad, "/enroll/totp", { code: await totp(seed, Date.now() / 1000) });
    const codes = recoveryCodes(codesPage);
    expect(codes.length).toBe(10);
    const view = (await (await admin(`/users/${u.id}`)).json()) as any;
    expect(view.mfa.factors.length).toBe(1);
    expect(view.mfa.recovery_codes_left).toBe(10);
    // The seed is stored encrypted: its bytes do not appear in the database row.
    const row = await idp.ctx.db.selectFrom("otp_factors").select("seed").where("user_id", "=", u.id).executeTakeFirstOrThrow();
    expect(Buffer.from(row.seed as Uint8Array).includes(Buffer.from(seed))).toBe(false);

    // MFA login through the hand-off.
    const b2 = new ScriptedBrowser(idp.ca);
    const mfa = await passwordStep(b2, await authz.challenge(T), "dave");
    expect(mfa.url).toContain(`/t/${T}/mfa`);
    expect(mfa.html).toContain('autocomplete="one-time-code"');
    const wrong = await b2.submit(mfa, "/mfa", { code: "12345x" });
    expect(wrong.status).toBe(401);
    const now = Date.now() / 1000;
    const code = await totp(seed, now + 30); // the next step: the current one was used by the enrolment
    const consent = await b2.submit(mfa, "/mfa", { code });
    const v1 = await verifier(await b2.submit(consent, "/consent", { decision: "allow" }, isCallback));
    expect(v1).toMatchObject({ sub: u.id, amr: ["pwd", "otp"], acr: "urn:cryptoutil:acr:mfa" });

    // The same code again, in a fresh login: refused (replay).
    const b3 = new ScriptedBrowser(idp.ca);
    const mfa3 = await passwordStep(b3, await authz.challenge(T), "dave");
    const replay = await b3.submit(mfa3, "/mfa", { code });
    expect(replay.status).toBe(401);
    expect(replay.html).toContain("already used");
    // A recovery code works once.
    const ok = await b3.submit(mfa3, "/mfa", { code: codes[0]!.toLowerCase() }, isCallback);
    expect((await verifier(ok)).amr).toEqual(["pwd", "mfa"]);
    const b4 = new ScriptedBrowser(idp.ca);
    const mfa4 = await passwordStep(b4, await authz.challenge(T), "dave");
    expect((await b4.submit(mfa4, "/mfa", { code: codes[0]! })).status).toBe(401);
    // Admin MFA reset: the next login needs no second factor.
    expect(((await (await admin(`/users/${u.id}/mfa/reset`, "POST")).json()) as any).mfa.factors).toEqual([]);
  });

  test("HOTP token: enrolment, look-ahead window, used codes refused, resync with two codes", async () => {
    await createUser("hal");
    const b = new ScriptedBrowser(idp.ca);
    await b.submit(await b.get(`${idp.publicUrl}/t/${T}/login`), "/login", { username: "hal", password: PASSWORD });
    const enrol = await b.get(`${idp.publicUrl}/t/${T}/enroll/hotp`);
    expect(enrol.html).toContain("otpauth://hotp/cryptoutil:hal?secret=");
    expect(enrol.html).toContain("counter=0");
    const seed = base32Decode(enrolmentSecret(enrol));
    expect(recoveryCodes(await b.submit(enrol, "/enroll/hotp", { code: await hotp(seed, 0) })).length).toBe(10);

    const mfaLogin = async () => {
      const x = new ScriptedBrowser(idp.ca);
      return { x, page: await passwordStep(x, await authz.challenge(T, { scope: "openid" }), "hal") };
    };
    // Counter 0 was used by the enrolment; counter 4 is inside the look-ahead window (10).
    let { x, page } = await mfaLogin();
    expect((await x.submit(page, "/mfa", { code: await hotp(seed, 0) })).status).toBe(401);
    const consent = await x.submit(page, "/mfa", { code: await hotp(seed, 4) });
    expect(consent.url).toContain("/consent");
    ({ x, page } = await mfaLogin());
    expect((await x.submit(page, "/mfa", { code: await hotp(seed, 40) })).status).toBe(401); // beyond the window

    // (The lockout threshold here is 3 failures; the success above reset the count.)
    // Resync from the account page with codes 40 and 41; then 42 works.
    const acc = await b.get(`${idp.publicUrl}/t/${T}/account`);
    expect(acc.html).toContain("Resynchronise");
    expect((await b.submit(acc, "/account/factors/resync", { code1: await hotp(seed, 41), code2: await hotp(seed, 40) })).status).toBe(400);
    const ok = await b.submit(acc, "/account/factors/resync", { code1: await hotp(seed, 40), code2: await hotp(seed, 41) });
    expect(ok.html).toContain("resynchronised");
    ({ x, page } = await mfaLogin());
    expect((await x.submit(page, "/mfa", { code: await hotp(seed, 42) })).url).toContain("/consent");
  });

  test("tenant policy mfa=required sends a user without a factor to enrolment after the password", async () => {
    const tenant = "strict";
    const token = await issuer.mint({ sub: "admin-client", tenant, scope: "identity:admin" });
    expect((await admin("/policy", "PUT", { mfa: "required" }, token)).status).toBe(200);
    expect((await admin("/users", "POST", { username: "erin", password: PASSWORD }, token)).status).toBe(201);
    const b = new ScriptedBrowser(idp.ca);
    const login = await b.get(loginUrl(await authz.challenge(tenant), tenant));
    const enrol = await b.submit(login, "/login", { username: "erin", password: PASSWORD });
    expect(enrol.url).toContain(`/t/${tenant}/enroll/totp`);
    expect(enrol.html).toContain("requires two-step verification");
    // Not logged in yet: the account page sends back to the login form.
    const acct = await b.request(`${idp.publicUrl}/t/${tenant}/account`);
    expect(acct.status).toBe(303);
    expect(acct.headers.get("location")).toBe(`/t/${tenant}/login`);
    const seed = base32Decode(enrolmentSecret(enrol));
    const codes = await b.submit(enrol, "/enroll/totp", { code: await totp(seed, Date.now() / 1000) });
    expect(recoveryCodes(codes).length).toBe(10);
    const consent = await b.get(`${idp.publicUrl}/t/${tenant}/login/continue`);
    const v = await verifier(await b.submit(consent, "/consent", { decision: "allow" }, isCallback), tenant);
    expect(v.amr).toEqual(["pwd", "otp"]);
  });
});

describe("lockout and sessions", () => {
  test("per-user lockout with backoff: 429 + Retry-After, even for the right password", async () => {
    await createUser("frank");
    const b = new ScriptedBrowser(idp.ca);
    const login = await b.get(loginUrl(await authz.challenge(T)));
    for (let i = 0; i < 2; i++) expect((await b.submit(login, "/login", { username: "frank", password: "wrong password!" })).status).toBe(401);
    const third = await b.submit(login, "/login", { username: "frank", password: "wrong password!" });
    expect(third.status).toBe(429);
    expect(third.headers.get("retry-after")).toBe("30");
    const right = await b.submit(login, "/login", { username: "frank", password: PASSWORD });
    expect(right.status).toBe(429);
    expect(Number(right.headers.get("retry-after"))).toBeGreaterThan(0);
    // Unknown usernames lock the same way (no account enumeration).
    for (let i = 0; i < 2; i++) await b.submit(login, "/login", { username: "ghost", password: "wrong password!" });
    expect((await b.submit(login, "/login", { username: "ghost", password: "wrong password!" })).status).toBe(429);
  });

  test("backoff doubles per further failure up to the cap; IP threshold; success resets", async () => {
    let t = 1_000_000;
    const th = new LoginThrottle(idp.ctx.db as any, { userThreshold: 3, ipThreshold: 5, baseS: 30, maxS: 100 }, () => t);
    const k = LoginThrottle.userKey("x", "Zed");
    expect([await th.fail(k), await th.fail(k), await th.fail(k), await th.fail(k), await th.fail(k)]).toEqual([0, 0, 30, 60, 100]);
    expect(await th.lockedFor([k])).toBe(100);
    t += 101;
    expect(await th.lockedFor([k])).toBe(0);
    await th.reset(k);
    expect(await th.fail(k)).toBe(0);
    const ip = LoginThrottle.ipKey("192.0.2.9");
    for (let i = 0; i < 4; i++) expect(await th.fail(ip)).toBe(0);
    expect(await th.fail(ip)).toBe(30);
  });

  test("idp sessions: idle and absolute timeouts, rotation kills the old id, tenant-bound, CSRF bound to the id", async () => {
    let t = 2_000_000;
    const sessions = new IdpSessions(idp.ctx.db as any, idp.ctx.protector, idp.ctx.sessions, { idleS: 100, absoluteS: 1000 }, () => t);
    const req = (id: string) => new Request("https://x/", { headers: { cookie: `${IDP_COOKIE}=${id}` } });
    const s = await sessions.create(T, {}, { userId: "u1", authTime: t, amr: ["pwd"] });
    expect((await sessions.load(req(s.id), T))?.row.user_id).toBe("u1");
    expect(await sessions.load(req(s.id), "other-tenant")).toBeUndefined();
    t += 99;
    expect(await sessions.load(req(s.id), T)).toBeDefined(); // activity refreshes the idle timer
    t += 99;
    expect(await sessions.load(req(s.id), T)).toBeDefined();
    t += 101;
    expect(await sessions.load(req(s.id), T)).toBeUndefined(); // idle
    const a = await sessions.create(T, {}, { userId: "u1", authTime: t, amr: ["pwd"] });
    for (let i = 0; i < 11; i++) {
      t += 95;
      await sessions.load(req(a.id), T);
    }
    expect(await sessions.load(req(a.id), T)).toBeUndefined(); // absolute: 1045 s > 1000 s
    const b = await sessions.create(T, {});
    const rotated = await sessions.rotate(b, {}, { userId: "u2", authTime: t, amr: ["pwd"] });
    expect(await sessions.load(req(b.id), T)).toBeUndefined();
    expect((await sessions.load(req(rotated.id), T))?.row.user_id).toBe("u2");
    expect(rotated.csrf).not.toBe(b.csrf);
    expect(() => sessions.verifyCsrf(rotated, b.csrf)).toThrow();
    expect(() => sessions.verifyCsrf(rotated, rotated.csrf)).not.toThrow();
  });

  test("password change on the account page revokes the user's other sessions; logout revokes", async () => {
    await createUser("gina");
    const a = new ScriptedBrowser(idp.ca);
    const other = new ScriptedBrowser(idp.ca);
    for (const b of [a, other]) {
      const acc = await b.submit(await b.get(`${idp.publicUrl}/t/${T}/login`), "/login", { username: "gina", password: PASSWORD });
      expect(acc.html).toContain("account-username");
    }
    const acc = await a.get(`${idp.publicUrl}/t/${T}/account`);
    const weak = await a.submit(acc, "/account/password", { current_password: PASSWORD, new_password: "password1234" });
    expect(weak.status).toBe(400);
    expect(weak.html).toContain('aria-describedby="new_password-error"');
    const changed = await a.submit(acc, "/account/password", { current_password: PASSWORD, new_password: "fresh meadow kettle 19" });
    expect(changed.status).toBe(200);
    expect(changed.html).toContain("password was changed");
    expect((await other.get(`${idp.publicUrl}/t/${T}/account`)).html).toContain('name="password"'); // signed out
    const still = await a.get(`${idp.publicUrl}/t/${T}/account`);
    expect(still.html).toContain("account-username");
    const out = await a.submit(await a.get(`${idp.publicUrl}/t/${T}/logout`), "/logout", {});
    expect(out.html).toContain("You are signed out");
    expect((await a.get(`${idp.publicUrl}/t/${T}/account`)).html).toContain('name="password"');
  });
});

describe("logout hand-off from authz", () => {
  const BACK = "https://app.example/bye?state=s1";
  const atApp = (u: string) => u.startsWith("https://app.example/");
  const logoutUrl = (jws: string) => `${idp.publicUrl}/t/${T}/logout/continue?logout_request=${encodeURIComponent(jws)}`;
  const logoutRequest = (sub: string, extra: Record<string, unknown> = {}, o: { typ?: string; foreignKey?: boolean } = {}) =>
    authz.challenge(T, { sub, post_logout_redirect_uri: BACK, ...extra }, { typ: "logout-request+jwt", ...o });

  test("ends the browser's session only when it is the named user's, then returns to the client", async () => {
    const hal = await createUser("harriet");
    const b = new ScriptedBrowser(idp.ca);
    expect((await b.submit(await b.get(`${idp.publicUrl}/t/${T}/login`), "/login", { username: "harriet", password: PASSWORD })).html).toContain("account-username");
    // A request for another user (e.g. an attacker's own id_token_hint) ends nothing here.
    const other = await b.get(logoutUrl(await logoutRequest("someone-else")), atApp);
    expect(other.url).toBe(BACK);
    expect((await b.get(`${idp.publicUrl}/t/${T}/account`)).html).toContain("account-username");
    const mine = await b.get(logoutUrl(await logoutRequest(hal.id)), atApp);
    expect(mine.url).toBe(BACK);
    expect((await b.get(`${idp.publicUrl}/t/${T}/account`)).html).toContain('name="password"');
    // Without a return URI the idp shows its own signed-out page.
    const page = await b.get(logoutUrl(await logoutRequest(hal.id, { post_logout_redirect_uri: undefined })));
    expect(page.html).toContain("You are signed out");
  });

  test("forged, mistyped, malformed or missing logout requests are 400 with the reason", async () => {
    const bad = [
      await logoutRequest("u", {}, { foreignKey: true }),
      await logoutRequest("u", {}, { typ: "login-challenge+jwt" }),
      await authz.challenge(T, { sub: "u" }), // a login challenge is not a logout request
      await logoutRequest("u", { post_logout_redirect_uri: "javascript:alert(1)" }),
      "not.a.jws",
    ];
    for (const jws of bad) {
      const r = await idp.call(`/t/${T}/logout/continue?logout_request=${encodeURIComponent(jws)}`);
      expect(r.status).toBe(400);
      expect(await r.text()).toContain("the logout request is not valid");
    }
    expect((await idp.call(`/t/${T}/logout/continue`)).status).toBe(400);
    expect((await idp.call(`/t/${T}/logout/continue?logout_request=${"x".repeat(9000)}`)).status).toBe(400); // schema: too long
  });
});

describe("signing-key rotation endpoint", () => {
  test("only the root tenant's admins rotate the shared key; the JWKS then leads with the new one", async () => {
    expect((await admin("/signing-keys/rotate", "POST")).status).toBe(403); // tenant acme
    const rootAdmin = await issuer.mint({ sub: "root-admin", tenant: "root", scope: "identity:admin" });
    const r = await admin("/signing-keys/rotate", "POST", undefined, rootAdmin);
    expect(r.status).toBe(200);
    const { kid } = (await r.json()) as { kid: string };
    const jwks = (await (await idp.call(`/t/${T}/jwks`)).json()) as JSONWebKeySet;
    expect(jwks.keys[0]!.kid).toBe(kid);
    expect(jwks.keys.length).toBeGreaterThanOrEqual(2);
  });
});
