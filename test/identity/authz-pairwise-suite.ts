/**
 * identity-authz, pairwise subject identifiers (OpenID Connect Core §8): clients of different
 * sectors see different subjects for one user, clients of one sector the same, consistently in
 * ID tokens, access tokens, userinfo and introspection; `sector_identifier_uri` fetched and
 * checked. Code flows by oauth4webapi against the real service.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { decodeJwt } from "jose";
import { followToClient, startAuthz, type TestAuthz } from "./support/authz.ts";
import type { TestEngine } from "../support/engine.ts";

type Registered = { client_id: string; client_secret: string };

export function authzPairwiseSuite(engine: TestEngine): void {
  let authz: TestAuthz;
  let as: oauth.AuthorizationServer;
  const T = "pairwise";
  const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit) });
  const clients: Record<string, Registered & { cb: string }> = {};
  const base = { grant_types: ["authorization_code", "refresh_token"], scopes: ["openid", "profile"], audiences: ["learn-ps"], post_logout_redirect_uris: ["https://a.example/bye"] };

  beforeAll(async () => {
    authz = await startAuthz({ engine });
    await authz.createTenant(T);
    const make = async (name: string, cb: string, extra: Record<string, unknown> = {}) => {
      clients[name] = { ...((await authz.createClient(T, { client_name: name, ...base, redirect_uris: [cb], ...extra })) as Registered), cb };
    };
    await make("a", "https://a.example/cb", { subject_type: "pairwise" });
    await make("a2", "https://a.example/other", { subject_type: "pairwise" });
    await make("b", "https://b.example/cb", { subject_type: "pairwise" });
    await make("public", "https://a.example/cb");
    const sector = authz.idp.hostJson("sector-c", ["https://c1.example/cb", "https://c2.example/cb"]);
    await make("c", "https://c1.example/cb", { subject_type: "pairwise", sector_identifier_uri: sector });
    const iss = new URL(`${authz.publicUrl}/t/${T}`);
    as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, cf()));
  });

  afterAll(async () => {
    await authz?.stop();
  });

  /** A code flow of `user` at client `name`: the subject in each place a client can read it. */
  async function subjects(name: string, user = "user-1") {
    const c = clients[name]!;
    authz.idp.nextLogin = { sub: user };
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const url = `${as.authorization_endpoint}?${new URLSearchParams({ response_type: "code", client_id: c.client_id, redirect_uri: c.cb, scope: "openid profile", state, code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256" })}`;
    const { callback, status, body } = await followToClient(url, c.cb, authz.caAll);
    if (!callback) throw new Error(`stopped at ${status}: ${body}`);
    const client: oauth.Client = { client_id: c.client_id };
    const auth = oauth.ClientSecretBasic(c.client_secret);
    const p = oauth.validateAuthResponse(as, client, callback!, state);
    const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(as, client, auth, p, c.cb, verifier, cf()));
    const id = oauth.getValidatedIdTokenClaims(tokens)!.sub;
    const at = decodeJwt(tokens.access_token).sub;
    const info = (await oauth.processUserInfoResponse(as, client, oauth.skipSubjectCheck, await oauth.userInfoRequest(as, client, tokens.access_token, cf()))).sub;
    const intro = (await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, auth, tokens.access_token, cf()))).sub;
    const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, auth, tokens.refresh_token!, cf()));
    const rid = oauth.getValidatedIdTokenClaims(refreshed)!.sub;
    return { id, at, info, intro, rid, idToken: tokens.id_token!, accessToken: refreshed.access_token };
  }

  test("discovery lists both subject types", () => {
    expect(as.subject_types_supported).toEqual(["public", "pairwise"]);
  });

  test("one subject per sector, the same in ID token, access token, userinfo, introspection and after refresh", async () => {
    const a = await subjects("a");
    expect(new Set([a.id, a.at, a.info, a.intro, a.rid]).size).toBe(1);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.id).not.toBe("user-1");
    // Same sector (host a.example): same subject.
    expect((await subjects("a2")).id).toBe(a.id);
    // Another sector: another subject; a public client sees the user's own.
    const b = await subjects("b");
    expect(new Set([b.id, b.at, b.info, b.intro, b.rid]).size).toBe(1);
    expect(b.id).not.toBe(a.id);
    expect((await subjects("public")).id).toBe("user-1");
    // Another user at the same client: another subject.
    expect((await subjects("a", "user-2")).id).not.toBe(a.id);
    // The sector_identifier_uri's host is the sector of client c.
    const c = await subjects("c");
    expect(c.id).not.toBe(a.id);
    expect(c.id).not.toBe(b.id);
    // Stable: a second sign-in gives the same.
    expect((await subjects("b")).id).toBe(b.id);
  });

  test("RP-initiated logout with a pairwise id_token_hint ends the grant and tells the idp the user's own subject", async () => {
    const a = await subjects("a");
    const r = await fetch(`${as.end_session_endpoint}?${new URLSearchParams({ id_token_hint: a.idToken, post_logout_redirect_uri: "https://a.example/bye" })}`, { redirect: "manual", tls: { ca: authz.caAll } } as RequestInit);
    expect(r.status).toBe(303);
    await fetch(r.headers.get("location")!, { redirect: "manual", tls: { ca: authz.caAll } } as RequestInit);
    expect(authz.idp.logoutRequests.at(-1)!.sub).toBe("user-1");
    const c = clients.a!;
    const client: oauth.Client = { client_id: c.client_id };
    const intro = await oauth.processIntrospectionResponse(as, client, await oauth.introspectionRequest(as, client, oauth.ClientSecretBasic(c.client_secret), a.accessToken, cf()));
    expect(intro.active).toBe(false);
  });

  test("registration checks the sector: several hosts need a sector_identifier_uri that lists every redirect URI", async () => {
    const reg = (extra: Record<string, unknown>) => authz.adminApi("POST", `/tenants/${T}/clients`, { client_name: "x", ...base, subject_type: "pairwise", ...extra });
    const twoHosts = { redirect_uris: ["https://c1.example/cb", "https://c2.example/cb"] };
    expect((await reg(twoHosts)).status).toBe(400);
    expect((await reg({ ...twoHosts, sector_identifier_uri: authz.idp.hostJson("sector-short", ["https://c1.example/cb"]) })).status).toBe(400);
    expect((await reg({ ...twoHosts, sector_identifier_uri: authz.idp.hostJson("sector-object", { redirect_uris: twoHosts.redirect_uris }) })).status).toBe(400);
    expect((await reg({ ...twoHosts, sector_identifier_uri: `${authz.idp.url}/docs/missing` })).status).toBe(400);
    expect((await reg({ ...twoHosts, sector_identifier_uri: authz.idp.hostJson("sector-ok", twoHosts.redirect_uris) })).status).toBe(201);
  });
}
