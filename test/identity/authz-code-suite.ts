/**
 * identity-authz, authorization code + PKCE with the signed login hand-off, driven
 * by a real client (oauth4webapi) over HTTPS. The browser step follows redirects
 * with fetch; the login step is a scripted idp stand-in that verifies the signed
 * login challenge and answers with a signed login verifier (the real idp and the
 * end-to-end run with it are tested elsewhere).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { createRemoteJWKSet, customFetch, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { startAuthz, form, basic, type TestAuthz } from "./support/authz.ts";
import type { TestEngine } from "../support/engine.ts";

/** Registers the authorization-code tests on a service whose database is on `engine`. */
export function authzCodeSuite(engine: TestEngine): void {
  let authz: TestAuthz;
  let base: string;
  let as: oauth.AuthorizationServer;
  const T = "acme";
  const CB = "https://client.example/cb";
  const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit) });
  let web: { client_id: string; client_secret: string };
  let spa: { client_id: string };
  let parOnly: { client_id: string; client_secret: string };
  let edClient: { client_id: string; client_secret: string };

  beforeAll(async () => {
    authz = await startAuthz({ engine });
    base = authz.publicUrl;
    await authz.createTenant(T);
    const user = { grant_types: ["authorization_code", "refresh_token"], redirect_uris: [CB], post_logout_redirect_uris: ["https://client.example/bye"], scopes: ["openid", "profile", "email", "pets:read", "pets:owner"], audiences: ["learn-ps"] };
    web = (await authz.createClient(T, { client_name: "Web App", ...user })) as never;
    spa = await authz.createClient(T, { client_name: "SPA", ...user, token_endpoint_auth_method: "none" });
    parOnly = (await authz.createClient(T, { client_name: "PAR only", ...user, require_par: true })) as never;
    edClient = (await authz.createClient(T, { client_name: "Ed", ...user, id_token_signed_response_alg: "EdDSA" })) as never;
    const iss = new URL(`${base}/t/${T}`);
    as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, cf()));
  });

  afterAll(async () => {
    await authz?.stop();
  });

  /** The browser: follows redirects from `start` until one leaves for the client's redirect URI. */
  async function browse(start: string, init: RequestInit = {}): Promise<{ callback?: URL; status: number; body?: string }> {
    let url = start;
    let req: RequestInit = init;
    for (let i = 0; i < 6; i++) {
      const r = await fetch(url, { ...req, redirect: "manual", tls: { ca: authz.caAll } } as RequestInit);
      const loc = r.headers.get("location");
      if (!loc || r.status < 300 || r.status >= 400) return { status: r.status, body: await r.text() };
      await r.body?.cancel();
      if (!loc.startsWith("https://127.0.0.1")) return { callback: new URL(loc), status: r.status };
      url = loc;
      req = {};
    }
    throw new Error("redirect loop");
  }

  async function pkce() {
    const verifier = oauth.generateRandomCodeVerifier();
    return { verifier, challenge: await oauth.calculatePKCECodeChallenge(verifier) };
  }

  function authorizeUrl(params: Record<string, string>) {
    const u = new URL(as.authorization_endpoint!);
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    return u.toString();
  }

  interface Flow {
    tokens: oauth.TokenEndpointResponse;
    verifier: string;
    nonce: string;
    callback: URL;
  }

  async function codeFlow(client: { client_id: string; client_secret?: string | null }, extra: Record<string, string> = {}, dpop?: oauth.DPoPHandle): Promise<Flow> {
    const { verifier, challenge } = await pkce();
    const state = oauth.generateRandomState();
    const nonce = oauth.generateRandomNonce();
    const b = await browse(
      authorizeUrl({ client_id: client.client_id, redirect_uri: CB, response_type: "code", scope: "openid profile email pets:read", state, nonce, code_challenge: challenge, code_challenge_method: "S256", ...extra }),
    );
    if (!b.callback) throw new Error(`no callback: ${b.status} ${b.body}`);
    const c: oauth.Client = { client_id: client.client_id };
    const params = oauth.validateAuthResponse(as, c, b.callback, state);
    const auth = client.client_secret ? oauth.ClientSecretBasic(client.client_secret) : oauth.None();
    const res = await oauth.authorizationCodeGrantRequest(as, c, auth, params, CB, verifier, { ...cf(), DPoP: dpop });
    const tokens = await oauth.processAuthorizationCodeResponse(as, c, res, { expectedNonce: nonce, requireIdToken: true });
    return { tokens, verifier, nonce, callback: b.callback };
  }

  const introspect = async (token: string) => {
    const c: oauth.Client = { client_id: web.client_id };
    return oauth.processIntrospectionResponse(as, c, await oauth.introspectionRequest(as, c, oauth.ClientSecretBasic(web.client_secret), token, cf()));
  };
  const tokenPost = (body: Record<string, string>, headers: Record<string, string> = { authorization: basic(web.client_id, web.client_secret) }) =>
    authz.fetch(`${base}/t/${T}/token`, form(body, headers));
  const errorOf = async (r: Response) => ((await r.json()) as { error: string }).error;

  describe("authorization code + PKCE", () => {
    test("login hand-off, code, tokens, ID token, userinfo, refresh rotation, introspection, revocation", async () => {
      authz.idp.nextLogin = { sub: "user-42", claims: { name: "Ada Lovelace", email: "ada@example.test", email_verified: true } };
      const f = await codeFlow(web, { login_hint: "ada@example.test", prompt: "consent", max_age: "300" });
      expect(f.callback.searchParams.get("iss")).toBe(`${base}/t/${T}`);

      const ch = authz.idp.challenges.at(-1)!;
      expect(ch).toMatchObject({ iss: `${base}/t/${T}`, aud: "identity-idp", client_id: web.client_id, client_name: "Web App", login_hint: "ada@example.test", prompt: "consent", max_age: 300 });

      const id = oauth.getValidatedIdTokenClaims(f.tokens)!;
      expect(id).toMatchObject({ sub: "user-42", aud: web.client_id, nonce: f.nonce, name: "Ada Lovelace", email: "ada@example.test", amr: ["pwd", "otp"] });
      expect(typeof id.auth_time).toBe("number");
      // The ID token verifies against the published JWKS.
      const jwks = createRemoteJWKSet(new URL(as.jwks_uri!), { [customFetch]: (u, i) => fetch(u, { ...i, tls: { ca: authz.ca } } as RequestInit) });
      await jwtVerify(f.tokens.id_token!, jwks, { issuer: as.issuer, audience: web.client_id });
      const at = decodeJwt(f.tokens.access_token);
      expect(at).toMatchObject({ sub: "user-42", aud: "learn-ps", client_id: web.client_id, scope: "openid profile email pets:read" });

      const c: oauth.Client = { client_id: web.client_id };
      const ui = await oauth.processUserInfoResponse(as, c, "user-42", await oauth.userInfoRequest(as, c, f.tokens.access_token, cf()));
      expect(ui).toMatchObject({ sub: "user-42", name: "Ada Lovelace", email: "ada@example.test", email_verified: true });

      const r1 = await oauth.processRefreshTokenResponse(as, c, await oauth.refreshTokenGrantRequest(as, c, oauth.ClientSecretBasic(web.client_secret), f.tokens.refresh_token!, cf()));
      expect(r1.refresh_token).toBeDefined();
      expect(r1.refresh_token).not.toBe(f.tokens.refresh_token);
      expect(decodeJwt(r1.id_token!).sub).toBe("user-42");

      expect((await introspect(r1.access_token)).active).toBe(true);
      expect(await introspect(r1.refresh_token!)).toMatchObject({ active: true, token_type: "refresh_token", sub: "user-42" });

      // Revoking the refresh token ends the grant: its access tokens go inactive too.
      await oauth.processRevocationResponse(await oauth.revocationRequest(as, c, oauth.ClientSecretBasic(web.client_secret), r1.refresh_token!, cf()));
      expect((await introspect(r1.access_token)).active).toBe(false);
      expect((await introspect(f.tokens.access_token)).active).toBe(false);
      expect((await introspect(r1.refresh_token!)).active).toBe(false);
    });

    test("a public client (auth method none) with PKCE", async () => {
      const f = await codeFlow(spa);
      expect(decodeJwt(f.tokens.access_token).client_id).toBe(spa.client_id);
    });

    test("ID tokens use the client's algorithm (EdDSA) and its key joins the JWKS", async () => {
      const f = await codeFlow(edClient);
      expect(decodeProtectedHeader(f.tokens.id_token!).alg).toBe("EdDSA");
      const jwks = createRemoteJWKSet(new URL(as.jwks_uri!), { [customFetch]: (u, i) => fetch(u, { ...i, tls: { ca: authz.ca } } as RequestInit) });
      await jwtVerify(f.tokens.id_token!, jwks, { issuer: as.issuer, audience: edClient.client_id });
    });

    test("RS256 and PS256 ID tokens for clients that select them", async () => {
      const clients = [];
      for (const alg of ["RS256", "PS256"]) {
        clients.push((await authz.createClient(T, { client_name: alg, grant_types: ["authorization_code"], redirect_uris: [CB], scopes: ["openid"], id_token_signed_response_alg: alg })) as { client_id: string; client_secret: string });
      }
      // Registering the clients published their algorithms' keys: one JWKS fetch covers every token below.
      const jwks = createRemoteJWKSet(new URL(as.jwks_uri!), { [customFetch]: (u, i) => fetch(u, { ...i, tls: { ca: authz.ca } } as RequestInit) });
      for (const [i, alg] of ["RS256", "PS256"].entries()) {
        const cl = clients[i]!;
        const f = await codeFlow(cl, { scope: "openid" });
        expect(decodeProtectedHeader(f.tokens.id_token!).alg).toBe(alg);
        await jwtVerify(f.tokens.id_token!, jwks, { issuer: as.issuer, audience: cl.client_id, algorithms: [alg] });
        // Access tokens stay ES256 whatever the ID token algorithm.
        expect(decodeProtectedHeader(f.tokens.access_token).alg).toBe("ES256");
      }
    });

    test("reused code: invalid_grant, and what it issued is revoked", async () => {
      const { verifier, challenge } = await pkce();
      const b = await browse(authorizeUrl({ client_id: web.client_id, redirect_uri: CB, response_type: "code", scope: "openid", code_challenge: challenge, code_challenge_method: "S256" }));
      const code = b.callback!.searchParams.get("code")!;
      const first = await tokenPost({ grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: CB });
      expect(first.status).toBe(200);
      const issued = (await first.json()) as { access_token: string; refresh_token: string };
      expect((await introspect(issued.access_token)).active).toBe(true);
      const again = await tokenPost({ grant_type: "authorization_code", code, code_verifier: verifier, redirect_uri: CB });
      expect(again.status).toBe(400);
      expect(await errorOf(again)).toBe("invalid_grant");
      expect((await introspect(issued.access_token)).active).toBe(false);
      expect(await errorOf(await tokenPost({ grant_type: "refresh_token", refresh_token: issued.refresh_token }))).toBe("invalid_grant");
    });

    test("reused refresh token: invalid_grant and the whole family is revoked", async () => {
      const f = await codeFlow(web);
      const old = f.tokens.refresh_token!;
      const r1 = await tokenPost({ grant_type: "refresh_token", refresh_token: old });
      expect(r1.status).toBe(200);
      const next = (await r1.json()) as { access_token: string; refresh_token: string };
      const reuse = await tokenPost({ grant_type: "refresh_token", refresh_token: old });
      expect(await errorOf(reuse)).toBe("invalid_grant");
      // The newest token of the family is dead too, and so are its access tokens.
      expect(await errorOf(await tokenPost({ grant_type: "refresh_token", refresh_token: next.refresh_token }))).toBe("invalid_grant");
      expect((await introspect(next.access_token)).active).toBe(false);
      const ui = await authz.fetch(`${base}/t/${T}/userinfo`, { headers: { authorization: `Bearer ${next.access_token}` } });
      expect(ui.status).toBe(401);
    });

    test("token request checks: verifier, redirect URI, client binding", async () => {
      const start = async () => {
        const p = await pkce();
        const b = await browse(authorizeUrl({ client_id: web.client_id, redirect_uri: CB, response_type: "code", scope: "openid", code_challenge: p.challenge, code_challenge_method: "S256" }));
        return { ...p, code: b.callback!.searchParams.get("code")! };
      };
      let s = await start();
      expect(await errorOf(await tokenPost({ grant_type: "authorization_code", code: s.code, code_verifier: (await pkce()).verifier, redirect_uri: CB }))).toBe("invalid_grant");
      s = await start();
      expect(await errorOf(await tokenPost({ grant_type: "authorization_code", code: s.code, redirect_uri: CB }))).toBe("invalid_request");
      s = await start();
      expect(await errorOf(await tokenPost({ grant_type: "authorization_code", code: s.code, code_verifier: s.verifier, redirect_uri: CB + "x" }))).toBe("invalid_grant");
      s = await start();
      const other = await tokenPost({ grant_type: "authorization_code", code: s.code, code_verifier: s.verifier, redirect_uri: CB }, { authorization: basic(edClient.client_id, edClient.client_secret) });
      expect(await errorOf(other)).toBe("invalid_grant");
      expect(await errorOf(await tokenPost({ grant_type: "authorization_code", code: "nonsense", code_verifier: s.verifier }))).toBe("invalid_grant");
    });
  });

  describe("authorization request refusals", () => {
    const good = async () => ({ client_id: web.client_id, redirect_uri: CB, response_type: "code", scope: "openid", state: "s1", code_challenge: (await pkce()).challenge, code_challenge_method: "S256" });

    test("missing or plain PKCE is invalid_request, returned to the client with state and iss", async () => {
      const { code_challenge: _c, code_challenge_method: _m, ...noPkce } = await good();
      for (const q of [noPkce, { ...(await good()), code_challenge_method: "plain" }, { ...(await good()), code_challenge_method: undefined as never }]) {
        const clean = Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined)) as Record<string, string>;
        const b = await browse(authorizeUrl(clean));
        expect(b.callback!.searchParams.get("error")).toBe("invalid_request");
        expect(b.callback!.searchParams.get("state")).toBe("s1");
        expect(b.callback!.searchParams.get("iss")).toBe(`${base}/t/${T}`);
      }
    });

    test("a redirect URI differing by one character, or an unknown client, is shown an error page and not redirected", async () => {
      for (const q of [{ ...(await good()), redirect_uri: "https://client.example/cc" }, { ...(await good()), redirect_uri: CB + "/" }, { ...(await good()), client_id: "ghost" }]) {
        const b = await browse(authorizeUrl(q));
        expect(b.callback).toBeUndefined();
        expect(b.status).toBe(400);
        expect(b.body).toContain("invalid_");
      }
    });

    test("invalid_scope, unsupported_response_type, invalid prompt", async () => {
      const cases: Array<[Record<string, string>, string]> = [
        [{ scope: "openid admin" }, "invalid_scope"],
        [{ response_type: "token" }, "unsupported_response_type"],
        [{ prompt: "none login" }, "invalid_request"],
        [{ max_age: "-1" }, "invalid_request"],
      ];
      for (const [patch, err] of cases) {
        const b = await browse(authorizeUrl({ ...(await good()), ...patch }));
        expect(b.callback!.searchParams.get("error")).toBe(err);
      }
    });

    test("repeated parameters are refused", async () => {
      const u = authorizeUrl(await good()) + "&scope=openid";
      const b = await browse(u);
      expect(b.status).toBe(400);
    });
  });

  describe("PAR (RFC 9126)", () => {
    test("a pushed request is used once through request_uri", async () => {
      const c: oauth.Client = { client_id: parOnly.client_id };
      const { verifier, challenge } = await pkce();
      const pushed = await oauth.processPushedAuthorizationResponse(
        as,
        c,
        await oauth.pushedAuthorizationRequest(as, c, oauth.ClientSecretBasic(parOnly.client_secret), { redirect_uri: CB, response_type: "code", scope: "openid email", state: "p1", code_challenge: challenge, code_challenge_method: "S256" }, cf()),
      );
      expect(pushed.request_uri.startsWith("urn:ietf:params:oauth:request_uri:")).toBe(true);
      const start = authorizeUrl({ client_id: parOnly.client_id, request_uri: pushed.request_uri });
      const b = await browse(start);
      const params = oauth.validateAuthResponse(as, c, b.callback!, "p1");
      const tokens = await oauth.processAuthorizationCodeResponse(as, c, await oauth.authorizationCodeGrantRequest(as, c, oauth.ClientSecretBasic(parOnly.client_secret), params, CB, verifier, cf()));
      expect(tokens.scope).toBe("openid email");
      const replay = await browse(start);
      expect(replay.status).toBe(400);
      expect(replay.body).toContain("invalid_request_uri");
    });

    test("a client that requires PAR cannot send a direct authorization request", async () => {
      const b = await browse(authorizeUrl({ client_id: parOnly.client_id, redirect_uri: CB, response_type: "code", scope: "openid", code_challenge: (await pkce()).challenge, code_challenge_method: "S256" }));
      expect(b.callback!.searchParams.get("error")).toBe("invalid_request");
    });

    test("PAR validates like authorize, with JSON errors", async () => {
      const r = await authz.fetch(`${base}/t/${T}/par`, form({ redirect_uri: CB + "x", response_type: "code", code_challenge: (await pkce()).challenge, code_challenge_method: "S256" }, { authorization: basic(parOnly.client_id, parOnly.client_secret) }));
      expect(r.status).toBe(400);
      expect(await errorOf(r)).toBe("invalid_request");
      const r2 = await authz.fetch(`${base}/t/${T}/par`, form({ redirect_uri: CB, response_type: "code" }, { authorization: basic(parOnly.client_id, parOnly.client_secret) }));
      expect(await errorOf(r2)).toBe("invalid_request");
    });
  });

  describe("the login verifier", () => {
    async function pendingChallenge(extra: Record<string, string> = {}) {
      const first = await fetch(authorizeUrl({ client_id: web.client_id, redirect_uri: CB, response_type: "code", scope: "openid", state: "v1", code_challenge: (await pkce()).challenge, code_challenge_method: "S256", ...extra }), { redirect: "manual", tls: { ca: authz.ca } } as RequestInit);
      const login = new URL(first.headers.get("location")!);
      expect(login.origin + login.pathname).toBe(`${authz.idp.url}/t/${T}/login`);
      return decodeJwt(login.searchParams.get("login_challenge")!);
    }
    const callback = (v: string) => browse(`${base}/t/${T}/login/callback?login_verifier=${v}`);
    const now = () => Math.floor(Date.now() / 1000);

    test("foreign signature, wrong audience, wrong typ, unknown challenge and replay are refused", async () => {
      const ch = await pendingChallenge();
      const ok = { aud: `${base}/t/${T}`, challenge: ch.jti, sub: "u", auth_time: now() };
      for (const v of [
        await authz.idp.signVerifier(ok, { key: "foreign" }),
        await authz.idp.signVerifier({ ...ok, aud: `${base}/t/other` }),
        await authz.idp.signVerifier(ok, { typ: "JWT" }),
        await authz.idp.signVerifier({ ...ok, challenge: "unknown" }),
        "not-a-jwt",
      ]) {
        const b = await callback(v);
        expect(b.status).toBe(400);
        expect(b.callback).toBeUndefined();
      }
      const good = await authz.idp.signVerifier(ok);
      expect((await callback(good)).callback!.searchParams.get("code")).toBeTruthy();
      expect((await callback(good)).status).toBe(400);
      // The challenge is single use even with a fresh verifier.
      expect((await callback(await authz.idp.signVerifier(ok))).status).toBe(400);
    });

    test("a refusal at the idp comes back to the client as access_denied", async () => {
      const ch = await pendingChallenge();
      const b = await callback(await authz.idp.signVerifier({ aud: `${base}/t/${T}`, challenge: ch.jti, error: "access_denied" }));
      expect(b.callback!.searchParams.get("error")).toBe("access_denied");
      expect(b.callback!.searchParams.get("state")).toBe("v1");
      expect(b.callback!.searchParams.get("iss")).toBe(`${base}/t/${T}`);
    });

    test("max_age and prompt=login are enforced on auth_time", async () => {
      let ch = await pendingChallenge({ max_age: "60" });
      let b = await callback(await authz.idp.signVerifier({ aud: `${base}/t/${T}`, challenge: ch.jti, sub: "u", auth_time: now() - 3600 }));
      expect(b.callback!.searchParams.get("error")).toBe("login_required");
      ch = await pendingChallenge({ prompt: "login" });
      b = await callback(await authz.idp.signVerifier({ aud: `${base}/t/${T}`, challenge: ch.jti, sub: "u", auth_time: now() - 600 }));
      expect(b.callback!.searchParams.get("error")).toBe("login_required");
    });

    test("claims are limited to the granted scopes", async () => {
      authz.idp.nextLogin = { sub: "user-7", granted_scope: "openid", claims: { name: "Grace", email: "g@example.test" } };
      const f = await codeFlow(web);
      authz.idp.nextLogin = { sub: "user-1" };
      expect(f.tokens.scope).toBe("openid");
      const id = oauth.getValidatedIdTokenClaims(f.tokens)!;
      expect(id.name).toBeUndefined();
      expect(id.email).toBeUndefined();
    });
  });

  describe("tenant scopes and claims", () => {
    test("a scope defined by the tenant releases its claims in the ID token and userinfo, only when granted", async () => {
      const put = await authz.adminApi("PUT", `/tenants/${T}/scopes/pets:owner`, { description: "pet ownership", claims: ["pet_owner_id", "sub"] });
      expect(put.status).toBe(200);
      expect((await authz.adminApi("PUT", `/tenants/${T}/scopes/email`, { claims: ["x"] })).status).toBe(409);
      const list = (await (await authz.adminApi("GET", `/tenants/${T}/scopes`)).json()) as { items: Array<{ name: string }> };
      expect(list.items.map((x) => x.name)).toContain("pets:owner");
      const disc = (await (await authz.fetch(`${base}/t/${T}/.well-known/openid-configuration`)).json()) as { scopes_supported: string[]; claims_supported: string[] };
      expect(disc.scopes_supported).toContain("pets:owner");
      expect(disc.claims_supported).toContain("pet_owner_id");

      authz.idp.nextLogin = { sub: "owner-1", claims: { pet_owner_id: "po-9", name: "Owner", sub: "forged" } };
      const f = await codeFlow(web, { scope: "openid pets:owner" });
      const id = oauth.getValidatedIdTokenClaims(f.tokens)!;
      expect(id.pet_owner_id).toBe("po-9");
      expect(id.sub).toBe("owner-1"); // a scope cannot override the token's own claims
      expect(id.name).toBeUndefined();
      const c: oauth.Client = { client_id: web.client_id };
      const ui = await oauth.processUserInfoResponse(as, c, "owner-1", await oauth.userInfoRequest(as, c, f.tokens.access_token, cf()));
      expect(ui.pet_owner_id).toBe("po-9");
      const without = await codeFlow(web, { scope: "openid" });
      expect(oauth.getValidatedIdTokenClaims(without.tokens)!.pet_owner_id).toBeUndefined();
      authz.idp.nextLogin = { sub: "user-1" };
      expect((await authz.adminApi("DELETE", `/tenants/${T}/scopes/pets:owner`)).status).toBe(204);
    });
  });

  describe("RP-initiated logout", () => {
    test("id_token_hint + registered post_logout_redirect_uri ends the grant and returns with state", async () => {
      const f = await codeFlow(web);
      const u = new URL(`${base}/t/${T}/logout`);
      u.searchParams.set("id_token_hint", f.tokens.id_token!);
      u.searchParams.set("post_logout_redirect_uri", "https://client.example/bye");
      u.searchParams.set("state", "bye1");
      const seen = authz.idp.logoutRequests.length;
      const b = await browse(u.toString());
      expect(b.callback!.toString()).toBe("https://client.example/bye?state=bye1");
      expect((await introspect(f.tokens.access_token)).active).toBe(false);
      // On the way, the browser carried a signed logout request for this user to the idp.
      expect(authz.idp.logoutRequests.length).toBe(seen + 1);
      expect(authz.idp.logoutRequests[seen]).toMatchObject({ sub: "user-1", client_id: web.client_id, post_logout_redirect_uri: "https://client.example/bye?state=bye1" });
      u.searchParams.set("post_logout_redirect_uri", "https://evil.example/");
      expect((await browse(u.toString())).status).toBe(400);
    });
  });

  describe("DPoP (RFC 9449)", () => {
    test("code flow with DPoP: DPoP-bound tokens, userinfo needs the proof, refresh stays bound (public client)", async () => {
      const keyPair = await oauth.generateKeyPair("ES256");
      const c: oauth.Client = { client_id: spa.client_id };
      const dpop = oauth.DPoP(c, keyPair);
      const f = await codeFlow(spa, {}, dpop);
      expect(f.tokens.token_type).toBe("dpop");
      const jkt = (decodeJwt(f.tokens.access_token).cnf as { jkt: string }).jkt;
      expect(jkt).toHaveLength(43);
      const ui = await oauth.processUserInfoResponse(as, c, oauth.skipSubjectCheck, await oauth.userInfoRequest(as, c, f.tokens.access_token, { ...cf(), DPoP: dpop }));
      expect(ui.sub).toBe("user-1");
      // As a plain bearer token it is refused.
      const bearer = await authz.fetch(`${base}/t/${T}/userinfo`, { headers: { authorization: `Bearer ${f.tokens.access_token}` } });
      expect(bearer.status).toBe(401);
      // Refresh with another key is refused; with the same key it works.
      const other = oauth.DPoP(c, await oauth.generateKeyPair("ES256"));
      const wrong = await oauth.refreshTokenGrantRequest(as, c, oauth.None(), f.tokens.refresh_token!, { ...cf(), DPoP: other });
      expect(wrong.status).toBe(400);
      expect(await errorOf(wrong)).toBe("invalid_grant");
      const same = await oauth.processRefreshTokenResponse(as, c, await oauth.refreshTokenGrantRequest(as, c, oauth.None(), f.tokens.refresh_token!, { ...cf(), DPoP: dpop }));
      expect((decodeJwt(same.access_token).cnf as { jkt: string }).jkt).toBe(jkt);
    });

    test("client_credentials with DPoP; a replayed, stale or misaddressed proof is invalid_dpop_proof", async () => {
      const cc = await authz.createClient(T, { client_name: "dpop-cc", grant_types: ["client_credentials"], scopes: ["pets:read"], audiences: ["learn-ps"], dpop_bound_access_tokens: true });
      const c: oauth.Client = { client_id: cc.client_id };
      const keyPair = await oauth.generateKeyPair("ES256");
      const t = await oauth.processClientCredentialsResponse(as, c, await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretBasic(cc.client_secret!), {}, { ...cf(), DPoP: oauth.DPoP(c, keyPair) }));
      expect(t.token_type).toBe("dpop");
      expect((await introspect(t.access_token)).token_type).toBe("DPoP");

      const auth = { authorization: basic(cc.client_id, cc.client_secret!) };
      const { SignJWT, exportJWK } = await import("jose");
      const jwk = await exportJWK(keyPair.publicKey);
      const proof = (claims: Record<string, unknown>) =>
        new SignJWT({ jti: crypto.randomUUID(), htm: "POST", htu: `${base}/t/${T}/token`, iat: Math.floor(Date.now() / 1000), ...claims }).setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk }).sign(keyPair.privateKey);
      const p = await proof({});
      expect((await tokenPost({ grant_type: "client_credentials" }, { ...auth, dpop: p })).status).toBe(200);
      for (const bad of [p, await proof({ iat: Math.floor(Date.now() / 1000) - 3600 }), await proof({ htu: `${base}/t/${T}/userinfo` }), await proof({ htm: "GET" })]) {
        const r = await tokenPost({ grant_type: "client_credentials" }, { ...auth, dpop: bad });
        expect(r.status).toBe(400);
        expect(await errorOf(r)).toBe("invalid_dpop_proof");
      }
      // This client's tokens must be DPoP-bound.
      expect(await errorOf(await tokenPost({ grant_type: "client_credentials" }, auth))).toBe("invalid_dpop_proof");
    });
  });
}
