/**
 * identity-rp, the reference backend-for-frontend, with a real identity-authz, identity-idp and
 * identity-rs over HTTPS: sign-in through PAR + PKCE with a scripted password + TOTP login, the
 * session (an opaque cookie; tokens barrier-encrypted in the store), the API proxy to
 * identity-rs with CSRF on unsafe calls, refresh before expiry (one refresh for concurrent
 * calls), logout, the back-channel logout receiver (its checks, and over HTTP a token signed
 * with identity-authz's own tenant key ending the session), and fuzzed inputs (no 5xx).
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { exportJWK, generateKeyPair, SignJWT, createLocalJWKSet, type CryptoKey as JoseKey } from "jose";
import { BACKCHANNEL_LOGOUT_EVENT, verifyLogoutToken, type LogoutTokenChecks } from "../../apps/identity-rp/logout-token.ts";
import { RpStore } from "../../apps/identity-rp/store.ts";
import { DatabaseProofReplay } from "../../src/auth/proof-replay.ts";
import { Authz } from "../../apps/identity-authz/domain/authz.ts";
import { fuzz, mutateJson, mutateText, rng } from "../support/fuzz.ts";
import type { TestService } from "../support/service.ts";
import { startIdentitySuite, type IdentitySuite } from "./support/e2e-suite.ts";
import { ScriptedBrowser } from "./support/browser.ts";
import { startNotesRs, startRp } from "./support/notes-apps.ts";

setDefaultTimeout(120_000); // each sign-in may wait up to 30 s for a fresh TOTP time step
const PASSWORD = "cobalt harbour willow 311";
let s: IdentitySuite;
let rs: TestService;
let rp: TestService;
let alice: Awaited<ReturnType<IdentitySuite["userWithTotp"]>>;

beforeAll(async () => {
  s = await startIdentitySuite();
  alice = await s.userWithTotp("alice", PASSWORD);
  rs = await startNotesRs(s, { corsOrigins: ["https://spa.example"] });
  rp = await startRp(s, { apiUrl: `${rs.publicUrl}/service/api/v1`, frontends: ["https://spa.example"] });
}, 90_000);

afterAll(async () => {
  await rp?.stop();
  await rs?.stop();
  await s?.stop();
});

/** Signs alice in at identity-rp through the idp's pages; returns the browser holding the session. */
async function signIn(): Promise<{ b: ScriptedBrowser; session: { subject: string; csrf_token: string; name: string | null; scopes: string[] } }> {
  const b = new ScriptedBrowser(s.ca);
  const login = await b.get(`${rp.publicUrl}/login`);
  expect(login.url.startsWith(`${s.idp.publicUrl}/t/${s.tenant}/login?login_challenge=`)).toBe(true);
  const mfa = await b.submit(login, "/login", { username: "alice", password: PASSWORD });
  const afterMfa = await b.submit(mfa, "/mfa", { code: await alice.nextCode() });
  // Consent is asked once per client; a later sign-in comes straight back.
  const back = afterMfa.url.endsWith("/session") ? afterMfa : await b.submit(afterMfa, "/consent", { decision: "allow" });
  expect(back.url).toBe(`${rp.publicUrl}/session`);
  expect(back.status).toBe(200);
  return { b, session: JSON.parse(back.html) };
}

const api = (b: ScriptedBrowser, path: string, init: RequestInit = {}) => b.request(`${rp.publicUrl}/api${path}`, init);
const json = (p: { html: string }) => JSON.parse(p.html);

describe("sign-in, session and API proxy", () => {
  let b: ScriptedBrowser;
  let csrf: string;

  test("PAR + PKCE sign-in ends in a session whose cookie is opaque", async () => {
    const r = await signIn();
    b = r.b;
    csrf = r.session.csrf_token;
    expect(r.session).toMatchObject({ subject: alice.id, name: "alice", scopes: expect.arrayContaining(["notes:read", "notes:write"]) });
    const cookie = b.cookies.get("__Host-rp_session")!;
    expect(cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(b.cookies.has("__Host-rp_login")).toBe(false);
  });

  test("the client must use PAR: a plain authorization request is refused by the issuer", async () => {
    const u = new URL(`${s.issuer}/authorize`);
    u.search = new URLSearchParams({ response_type: "code", client_id: "acme-rp", redirect_uri: `${rp.publicUrl}/callback`, scope: "openid", code_challenge: "x".repeat(43), code_challenge_method: "S256", state: "s" }).toString();
    const res = await fetch(u, { redirect: "manual", tls: { ca: s.ca } } as RequestInit);
    expect(res.status === 400 || (res.headers.get("location") ?? "").includes("error=")).toBe(true);
  });

  test("tokens are stored barrier-encrypted, never as plaintext", async () => {
    const rows = await rp.ctx.db.selectFrom("rp_sessions").selectAll().execute();
    expect(rows.length).toBeGreaterThan(0);
    for (const r of rows) {
      const raw = Buffer.from(r.tokens as Uint8Array).toString("latin1");
      expect(raw).not.toContain("eyJ"); // no JWT
      expect(r.id_hash).not.toBe(b.cookies.get("__Host-rp_session"));
    }
  });

  test("/api proxies to identity-rs with the user's access token", async () => {
    const profile = await api(b, "/profile");
    expect(profile.status).toBe(200);
    expect(json(profile)).toMatchObject({ tenant: s.tenant, subject: alice.id, client_id: "acme-rp", binding: "none" });
    const made = await api(b, "/notes", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf }, body: JSON.stringify({ title: "t", body: "via the BFF" }) });
    expect(made.status).toBe(201);
    const list = json(await api(b, "/notes"));
    expect(list.items.map((n: { title: string }) => n.title)).toContain("t");
  });

  test("unsafe calls need the CSRF token and an allowed Origin", async () => {
    const body = JSON.stringify({ title: "x" });
    const noToken = await api(b, "/notes", { method: "POST", headers: { "content-type": "application/json" }, body });
    expect(noToken.status).toBe(403);
    expect(json(noToken).error.code).toBe("csrf_failed");
    const foreign = await api(b, "/notes", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf, origin: "https://evil.example" }, body });
    expect(foreign.status).toBe(403);
    const frontend = await api(b, "/notes", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf, origin: "https://spa.example" }, body });
    expect(frontend.status).toBe(201);
    expect(frontend.headers.get("access-control-allow-origin")).toBe("https://spa.example");
    expect(frontend.headers.get("access-control-allow-credentials")).toBe("true");
  });

  test("CORS: a configured frontend gets a preflight answer and can read a 401; others get nothing", async () => {
    const pre = await fetch(`${rp.publicUrl}/api/notes`, { method: "OPTIONS", headers: { origin: "https://spa.example", "access-control-request-method": "POST" }, tls: { ca: s.ca } } as RequestInit);
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-headers")).toContain("x-csrf-token");
    const other = await fetch(`${rp.publicUrl}/api/notes`, { method: "OPTIONS", headers: { origin: "https://evil.example" }, tls: { ca: s.ca } } as RequestInit);
    expect(other.status).toBe(403);
    const anon = await fetch(`${rp.publicUrl}/session`, { headers: { origin: "https://spa.example" }, tls: { ca: s.ca } } as RequestInit);
    expect(anon.status).toBe(401);
    expect(anon.headers.get("access-control-allow-origin")).toBe("https://spa.example");
  });

  test("paths that would climb out of the API are refused", async () => {
    const statuses = [];
    for (const p of ["/.hidden", "/notes/%2F..%2F..%2Fadmin", "/notes/a%00b", "/notes/..%2F..%2F..%2Fadmin"]) statuses.push((await api(b, p)).status);
    expect(statuses).toEqual([400, 400, 400, 400]);
  });

  test("refresh before expiry: a token close to its end is refreshed once, even for concurrent calls", async () => {
    const store = rp.ctx.db;
    const before = await store.selectFrom("rp_sessions").select(["id_hash", "version", "tokens"]).where("subject", "=", alice.id).executeTakeFirstOrThrow();
    // As if the access token had 5 seconds left (refresh_before_s is 60).
    await store.updateTable("rp_sessions").set({ access_expires_at: Math.floor(Date.now() / 1000) + 5 }).where("id_hash", "=", before.id_hash).execute();
    const answers = await Promise.all([1, 2, 3].map(() => api(b, "/profile")));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    const after = await store.selectFrom("rp_sessions").select(["version", "access_expires_at"]).where("id_hash", "=", before.id_hash).executeTakeFirstOrThrow();
    expect(after.version).toBe(before.version + 1);
    expect(after.access_expires_at).toBeGreaterThan(Math.floor(Date.now() / 1000) + 60);
    // The rotated refresh token still works (no reuse was detected): refresh once more.
    await store.updateTable("rp_sessions").set({ access_expires_at: Math.floor(Date.now() / 1000) + 5 }).where("id_hash", "=", before.id_hash).execute();
    expect((await api(b, "/profile")).status).toBe(200);
    expect((await store.selectFrom("rp_sessions").select("version").where("id_hash", "=", before.id_hash).executeTakeFirstOrThrow()).version).toBe(before.version + 2);
  });

  test("logout: needs CSRF, ends the session, answers the issuer's logout URL with the ID token hint", async () => {
    expect((await b.request(`${rp.publicUrl}/logout`, { method: "POST" })).status).toBe(403);
    const out = await b.request(`${rp.publicUrl}/logout`, { method: "POST", headers: { "x-csrf-token": csrf } });
    expect(out.status).toBe(200);
    const url = new URL(json(out).logout_url);
    expect(url.toString().startsWith(`${s.issuer}/`)).toBe(true);
    expect(url.searchParams.get("client_id")).toBe("acme-rp");
    expect(url.searchParams.get("id_token_hint")).toBeTruthy();
    expect(url.searchParams.get("post_logout_redirect_uri")).toBe(`${rp.publicUrl}/`);
    expect((await b.request(`${rp.publicUrl}/session`)).status).toBe(401);
    expect((await api(b, "/profile")).status).toBe(401);
  });

  test("a sign-in response without the login cookie, or with a forged state, is refused", async () => {
    const b2 = new ScriptedBrowser(s.ca);
    const res = await b2.request(`${rp.publicUrl}/callback?code=x&state=y&iss=${encodeURIComponent(s.issuer)}`);
    expect(res.status).toBe(400);
    await b2.request(`${rp.publicUrl}/login`);
    const forged = await b2.request(`${rp.publicUrl}/callback?code=x&state=forged&iss=${encodeURIComponent(s.issuer)}`);
    expect(forged.status).toBe(400);
    expect((await b2.request(`${rp.publicUrl}/login?return_to=${encodeURIComponent("https://evil.example/")}`)).status).toBe(400);
  });
});

describe("back-channel logout", () => {
  let key: { publicKey: JoseKey; privateKey: JoseKey };
  let checks: LogoutTokenChecks;
  const logoutToken = (claims: Record<string, unknown>, header: Record<string, unknown> = {}, to: { iss?: string; aud?: string; exp?: number } = {}) =>
    new SignJWT({ events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, jti: crypto.randomUUID(), ...claims })
      .setProtectedHeader({ alg: "ES256", typ: "logout+jwt", kid: "k1", ...header })
      .setIssuer(to.iss ?? s.issuer)
      .setAudience(to.aud ?? "acme-rp")
      .setIssuedAt()
      .setExpirationTime(to.exp ?? "2m")
      .sign(key.privateKey);

  beforeAll(async () => {
    key = await generateKeyPair("ES256");
    const jwk = { ...(await exportJWK(key.publicKey)), kid: "k1", alg: "ES256" };
    const replay = new DatabaseProofReplay(rp.ctx.db);
    checks = { issuer: s.issuer, clientId: "acme-rp", keys: createLocalJWKSet({ keys: [jwk] }), spend: (k, e) => replay.useOnce(k, e) };
  });

  test("the verifier: typ, events, iss, aud, exp, nonce, sid/sub, and each jti once", async () => {
    const ok = await logoutToken({ sub: "u1", sid: "s1" });
    expect(await verifyLogoutToken(ok, checks)).toEqual({ subject: "u1", sid: "s1" });
    await expect(verifyLogoutToken(ok, checks)).rejects.toThrow("used before");
    const refusals: Array<[Promise<string>, string]> = [
      [logoutToken({ sub: "u1" }, { typ: "JWT" }), "not valid"],
      [logoutToken({ sub: "u1", events: {} }), "back-channel logout event"],
      [logoutToken({ sub: "u1", events: { [BACKCHANNEL_LOGOUT_EVENT]: "yes" } }), "back-channel logout event"],
      [logoutToken({ sub: "u1", nonce: "n" }), "nonce"],
      [logoutToken({}), "neither sid nor sub"],
      [logoutToken({ sub: "u1" }, {}, { iss: "https://other.example/t/acme" }), "not valid"],
      [logoutToken({ sub: "u1" }, {}, { aud: "other-client" }), "not valid"],
      [logoutToken({ sub: "u1" }, {}, { exp: Math.floor(Date.now() / 1000) + 3600 }), "lives too long"],
      [new SignJWT({ events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, jti: "j2", sub: "u1" }).setProtectedHeader({ alg: "ES256", typ: "logout+jwt", kid: "k1" }).setIssuer(s.issuer).setAudience("acme-rp").setIssuedAt(Math.floor(Date.now() / 1000) - 3600).setExpirationTime(Math.floor(Date.now() / 1000) - 3000).sign(key.privateKey), "not valid"],
      [new SignJWT({ events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, sub: "u1" }).setProtectedHeader({ alg: "ES256", typ: "logout+jwt", kid: "k1" }).setIssuer(s.issuer).setAudience("acme-rp").setIssuedAt().setExpirationTime("2m").sign(key.privateKey), "not valid"],
    ];
    for (const [i, [t, why]] of refusals.entries()) {
      const answer = await verifyLogoutToken(await t, checks).then(() => `case ${i} accepted`, (e: Error) => e.message);
      expect(answer).toContain(why);
    }
    // Signed by a key the issuer never published.
    const other = await generateKeyPair("ES256");
    const foreign = await new SignJWT({ events: { [BACKCHANNEL_LOGOUT_EVENT]: {} }, jti: "j3", sub: "u1" }).setProtectedHeader({ alg: "ES256", typ: "logout+jwt", kid: "k1" }).setIssuer(s.issuer).setAudience("acme-rp").setIssuedAt().setExpirationTime("2m").sign(other.privateKey);
    await expect(verifyLogoutToken(foreign, checks)).rejects.toThrow("not valid");
  });

  test("a verified token's subject ends that user's sessions, and only those", async () => {
    const { b } = await signIn();
    expect((await b.request(`${rp.publicUrl}/session`)).status).toBe(200);
    const target = await verifyLogoutToken(await logoutToken({ sub: alice.id }), checks);
    expect(await new RpStore(rp.ctx.db).deleteMatching(s.tenant, { sid: "someone-else" })).toBe(0);
    expect(await new RpStore(rp.ctx.db).deleteMatching(s.tenant, target)).toBeGreaterThan(0);
    expect((await b.request(`${rp.publicUrl}/session`)).status).toBe(401);
  });

  test("over HTTP, a logout token signed with the issuer's own key ends the user's sessions; its replay is refused", async () => {
    const { b } = await signIn();
    expect((await b.request(`${rp.publicUrl}/session`)).status).toBe(200);
    // identity-authz's current signing key of the tenant signs it, as its back-channel logout does.
    const signer = await Authz.of(s.authz.ctx).keys.signer(s.tenant);
    const now = Math.floor(Date.now() / 1000);
    const token = await signer.signJwt("logout+jwt", { iss: s.issuer, aud: "acme-rp", iat: now, exp: now + 120, jti: crypto.randomUUID(), sub: alice.id, events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } });
    const post = (t: string) => fetch(`${rp.publicUrl}/backchannel-logout`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ logout_token: t }), tls: { ca: s.ca } } as RequestInit);
    const ok = await post(token);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("cache-control")).toBe("no-store");
    expect((await b.request(`${rp.publicUrl}/session`)).status).toBe(401);
    const replay = await post(token);
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { error_description: string }).error_description).toContain("used before");
    // For another client: refused.
    const other = await signer.signJwt("logout+jwt", { iss: s.issuer, aud: "someone-else", iat: now, exp: now + 120, jti: crypto.randomUUID(), sub: alice.id, events: { [BACKCHANNEL_LOGOUT_EVENT]: {} } });
    expect((await post(other)).status).toBe(400);
  });

  test("end to end: the user's sessions ended at identity-idp by an admin, identity-authz sends identity-rp a logout token and its session ends", async () => {
    const { b, session } = await signIn();
    expect(session.subject).toBe(alice.id);
    expect((await b.request(`${rp.publicUrl}/session`)).status).toBe(200);
    const ended = await s.idpAdmin("POST", `/users/${alice.id}/sessions/revoke`, {});
    expect(ended.status).toBeLessThan(300);
    // Delivery runs in the background at identity-authz: wait for it.
    const deadline = Date.now() + 45_000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await Bun.sleep(200);
      status = (await b.request(`${rp.publicUrl}/session`)).status;
    }
    expect(status).toBe(401);
    expect((await api(b, "/profile")).status).toBe(401);
  }, 90_000);

  test("the endpoint refuses what the issuer did not sign, in the protocol's error form", async () => {
    const post = (body: string, ct = "application/x-www-form-urlencoded") => fetch(`${rp.publicUrl}/backchannel-logout`, { method: "POST", headers: { "content-type": ct }, body, tls: { ca: s.ca } } as RequestInit);
    const forged = await logoutToken({ sub: alice.id }); // a key identity-authz never published
    const res = await post(new URLSearchParams({ logout_token: forged }).toString());
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: "invalid_request" });
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect((await post("logout_token=not.a.jwt")).status).toBe(400);
    expect((await post("nothing=here")).status).toBeGreaterThanOrEqual(400);
    expect((await post("")).status).toBeLessThan(500);
  });
});

describe("identity-rs's auth.cors_origins", () => {
  test("a listed origin may call /service/api with its own token (preflight, then the answer), without credentials; others get no CORS", async () => {
    const f = (init: RequestInit & { headers: Record<string, string> }) => fetch(`${rs.publicUrl}/service/api/v1/profile`, { ...init, tls: { ca: s.ca } } as RequestInit);
    const pre = await f({ method: "OPTIONS", headers: { origin: "https://spa.example", "access-control-request-method": "GET", "access-control-request-headers": "authorization, dpop" } });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-headers")).toBe("authorization, content-type, dpop");
    expect(pre.headers.get("access-control-allow-credentials")).toBeNull();
    const denied = await f({ method: "OPTIONS", headers: { origin: "https://evil.example" } });
    expect(denied.status).toBe(403);
    const unauthenticated = await f({ headers: { origin: "https://spa.example" } });
    expect(unauthenticated.status).toBe(401);
    expect(unauthenticated.headers.get("access-control-allow-origin")).toBe("https://spa.example");
    expect(unauthenticated.headers.get("access-control-expose-headers")).toContain("www-authenticate");
    const other = await f({ headers: { origin: "https://evil.example" } });
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("API document", () => {
  test("/docs/openapi.json lists the sign-in, session, logout, back-channel logout and proxy routes", async () => {
    const res = await rp.call("/docs/openapi.json");
    expect(res.status).toBe(200);
    const paths = Object.keys(((await res.json()) as { paths: Record<string, unknown> }).paths);
    for (const p of ["/login", "/callback", "/session", "/logout", "/backchannel-logout"]) expect(paths).toContain(p);
    expect(paths.some((p) => p.startsWith("/api/"))).toBe(true);
  });
});

describe("fuzz (no 5xx)", () => {
  test("mutated logout tokens, return_to values and API bodies get 4xx", async () => {
    const r = rng(0x18_0300);
    const seed = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImxvZ291dCtqd3QifQ.eyJzdWIiOiJ1MSJ9.c2ln";
    const mutate = (x: string) => mutateText(x, r);
    const f = (path: string, init: RequestInit = {}) => fetch(`${rp.publicUrl}${path}`, { ...init, redirect: "manual", tls: { ca: s.ca } } as RequestInit);
    const tokens = Array.from({ length: 150 }, () => new URLSearchParams({ logout_token: mutate(seed) }).toString());
    const t = await fuzz(tokens, (body) => f("/backchannel-logout", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body }), { describe: (b) => b, concurrency: 8, maxMs: 120_000 });
    for (const st of t.statuses.keys()) expect(st >= 400 && st < 500).toBe(true);
    const returns = Array.from({ length: 100 }, () => mutate("https://spa.example/app?x=1"));
    await fuzz(returns, (x) => f(`/login?return_to=${encodeURIComponent(x)}`), { describe: (x) => x, concurrency: 8, maxMs: 120_000 });
    const bodies = Array.from({ length: 100 }, () => mutateJson({ title: "t", body: "b" }, r));
    const b = await fuzz(bodies, (body) => f("/api/notes", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": "x" }, body }), { describe: (x) => x, concurrency: 8, maxMs: 120_000 });
    for (const st of b.statuses.keys()) expect(st >= 400 && st < 500).toBe(true);
  }, 300_000);
});
