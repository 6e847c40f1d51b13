/**
 * identity-authz, dynamic client registration (RFC 7591) and its management (RFC 7592):
 * off by default, turned on per tenant through the admin API, with oauth4webapi registering a
 * client and then running a code flow with it against the real service.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { decodeJwt } from "jose";
import { basic, followToClient, form, startAuthz, type TestAuthz } from "./support/authz.ts";
import type { TestEngine } from "../support/engine.ts";
import { fuzz, mutateJson, rng } from "../support/fuzz.ts";

export function authzRegisterSuite(engine: TestEngine): void {
  let authz: TestAuthz;
  const T = "selfserve";
  const CB = "https://app.example/cb";
  const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit) });
  const iss = () => new URL(`${authz.publicUrl}/t/${T}`);
  const discover = async () => oauth.processDiscoveryResponse(iss(), await oauth.discoveryRequest(iss(), cf()));
  const register = (body: unknown, headers: Record<string, string> = {}) =>
    authz.fetch(`${iss()}/register`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  const errorOf = async (r: Response) => ((await r.json()) as { error: string }).error;

  beforeAll(async () => {
    authz = await startAuthz({ engine });
    await authz.createTenant(T);
  });

  afterAll(async () => {
    await authz?.stop();
  });

  test("off by default: no registration_endpoint, and /register answers 403 access_denied", async () => {
    expect((await discover()).registration_endpoint).toBeUndefined();
    const r = await register({ redirect_uris: [CB] });
    expect(r.status).toBe(403);
    expect(await errorOf(r)).toBe("access_denied");
    const settings = await authz.adminApi("GET", `/tenants/${T}/registration`);
    expect(await settings.json()).toMatchObject({ tenant: T, enabled: false, require_initial_access_token: false });
  });

  test("on: oauth4webapi registers a client, which signs a user in with code + PKCE; read, update, delete", async () => {
    const put = await authz.adminApi("PUT", `/tenants/${T}/registration`, { enabled: true, scopes: ["openid", "profile", "pets:read"], audiences: ["learn-ps"] });
    expect(put.status).toBe(200);
    const as = await discover();
    expect(as.registration_endpoint).toBe(`${iss()}/register`);

    const reg = await oauth.processDynamicClientRegistrationResponse(
      await oauth.dynamicClientRegistrationRequest(as, { client_name: "Self-made app", redirect_uris: [CB], grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], scope: "openid pets:read" }, cf()),
    );
    expect(reg.client_secret).toBeString();
    expect(reg.registration_access_token).toBeString();
    expect(reg.registration_client_uri).toBe(`${iss()}/register/${reg.client_id}`);
    expect(reg).toMatchObject({ client_name: "Self-made app", token_endpoint_auth_method: "client_secret_basic", scope: "openid pets:read", client_secret_expires_at: 0 });

    // The registered client at work: authorization code + PKCE through the idp hand-off.
    const client: oauth.Client = { client_id: reg.client_id };
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const u = new URL(as.authorization_endpoint!);
    u.search = new URLSearchParams({ response_type: "code", client_id: reg.client_id, redirect_uri: CB, scope: "openid pets:read", state, code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256" }).toString();
    const { callback } = await followToClient(u.toString(), CB, authz.caAll);
    const params = oauth.validateAuthResponse(as, client, callback!, state);
    const tokens = await oauth.processAuthorizationCodeResponse(
      as, client,
      await oauth.authorizationCodeGrantRequest(as, client, oauth.ClientSecretBasic(reg.client_secret as string), params, CB, verifier, cf()),
    );
    expect(decodeJwt(tokens.access_token)).toMatchObject({ client_id: reg.client_id, aud: "learn-ps", scope: "openid pets:read", sub: "user-1" });

    // RFC 7592: the registration access token reads, replaces and deletes the registration.
    const mgmt = (method: string, token: string, body?: unknown) =>
      authz.fetch(reg.registration_client_uri as string, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { "content-type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
    const rat = reg.registration_access_token as string;
    const read = await mgmt("GET", rat);
    expect(read.status).toBe(200);
    const readBody = (await read.json()) as Record<string, unknown>;
    expect(readBody).toMatchObject({ client_id: reg.client_id, redirect_uris: [CB] });
    expect(readBody.client_secret).toBeUndefined();
    expect((await mgmt("GET", rat.slice(0, -2) + "AA")).status).toBe(401);
    expect((await mgmt("GET", "x".repeat(43))).status).toBe(401);

    const updated = await mgmt("PUT", rat, { client_id: reg.client_id, client_name: "Renamed", redirect_uris: [CB, "http://127.0.0.1/cb"], grant_types: ["authorization_code"], scope: "openid" });
    expect(updated.status).toBe(200);
    expect(await updated.json()).toMatchObject({ client_name: "Renamed", redirect_uris: [CB, "http://127.0.0.1/cb"], scope: "openid", grant_types: ["authorization_code"] });
    const admin = (await (await authz.adminApi("GET", `/tenants/${T}/clients/${reg.client_id}`)).json()) as { client_name: string; audiences: string[] };
    expect(admin).toMatchObject({ client_name: "Renamed", audiences: ["learn-ps"] });
    // The secret is unchanged by the update.
    const cc = await authz.fetch(as.token_endpoint!, form({ grant_type: "authorization_code", code: "x", code_verifier: verifier, redirect_uri: CB }, { authorization: basic(reg.client_id, reg.client_secret as string) }));
    expect(await errorOf(cc)).toBe("invalid_grant"); // authenticated; only the code is wrong

    // Another client's token does not manage this one.
    const other = (await (await register({ redirect_uris: [CB] })).json()) as { registration_access_token: string; client_id: string };
    expect((await mgmt("GET", other.registration_access_token)).status).toBe(401);

    expect((await mgmt("DELETE", rat)).status).toBe(204);
    expect((await authz.adminApi("GET", `/tenants/${T}/clients/${reg.client_id}`)).status).toBe(404);
    expect((await mgmt("GET", rat)).status).toBe(401);
  }, 60_000);

  test("bad metadata is refused with the RFC 7591 codes", async () => {
    const cases: [unknown, string][] = [
      [{ redirect_uris: ["http://app.example/cb"] }, "invalid_redirect_uri"],
      [{ redirect_uris: ["https://app.example/cb#frag"] }, "invalid_redirect_uri"],
      [{ redirect_uris: ["javascript:alert(1)"] }, "invalid_redirect_uri"],
      [{ grant_types: ["authorization_code"] }, "invalid_redirect_uri"],
      [{ redirect_uris: [CB], grant_types: ["authorization_code"], response_types: [] }, "invalid_client_metadata"],
      [{ grant_types: ["client_credentials"], response_types: ["code"] }, "invalid_client_metadata"],
      [{ redirect_uris: [CB], scope: "identity:admin" }, "invalid_client_metadata"],
      [{ redirect_uris: [CB], token_endpoint_auth_method: "tls_client_auth" }, "invalid_client_metadata"],
      [{ redirect_uris: [CB], token_endpoint_auth_method: "private_key_jwt" }, "invalid_client_metadata"],
      [{ redirect_uris: [CB], token_endpoint_auth_method: "private_key_jwt", jwks: { keys: [{ kty: "EC" }] }, jwks_uri: "https://app.example/jwks" }, "invalid_client_metadata"],
      [{ redirect_uris: [CB], jwks: { keys: [{ kty: "oct", k: "c2VjcmV0" }] } }, "invalid_client_metadata"],
      [{ grant_types: ["client_credentials"], token_endpoint_auth_method: "none" }, "invalid_client_metadata"],
      [{ redirect_uris: [CB], grant_types: ["password"] }, "invalid_client_metadata"],
      [{ redirect_uris: "https://app.example/cb" }, "invalid_client_metadata"],
      [[], "invalid_client_metadata"],
      ["{not json", "invalid_client_metadata"],
    ];
    for (const [body, code] of cases) {
      const r = await register(body);
      expect({ body, status: r.status, error: await errorOf(r) }).toEqual({ body, status: 400, error: code });
    }
    const r = await authz.fetch(`${iss()}/register`, { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" });
    expect(await errorOf(r)).toBe("invalid_client_metadata");
  });

  test("with an initial access token required, registration needs the current one", async () => {
    await authz.adminApi("PUT", `/tenants/${T}/registration`, { enabled: true, scopes: ["openid"], require_initial_access_token: true });
    const refused = await register({ redirect_uris: [CB] });
    expect(refused.status).toBe(401);
    expect(await errorOf(refused)).toBe("invalid_token");
    const issued = (await (await authz.adminApi("POST", `/tenants/${T}/registration/initial-access-token`)).json()) as { initial_access_token: string };
    expect((await register({ redirect_uris: [CB] }, { authorization: `Bearer ${issued.initial_access_token}` })).status).toBe(201);
    expect((await register({ redirect_uris: [CB] }, { authorization: "Bearer wrong" })).status).toBe(401);
    const settings = (await (await authz.adminApi("GET", `/tenants/${T}/registration`)).json()) as Record<string, unknown>;
    expect(settings).toMatchObject({ require_initial_access_token: true, initial_access_token_issued: true });
    expect(JSON.stringify(settings)).not.toContain(issued.initial_access_token);
    // A new token replaces the old one.
    const next = (await (await authz.adminApi("POST", `/tenants/${T}/registration/initial-access-token`)).json()) as { initial_access_token: string };
    expect((await register({ redirect_uris: [CB] }, { authorization: `Bearer ${issued.initial_access_token}` })).status).toBe(401);
    expect((await register({ redirect_uris: [CB] }, { authorization: `Bearer ${next.initial_access_token}` })).status).toBe(201);
    // Turned off again: refused even with the token.
    await authz.adminApi("PUT", `/tenants/${T}/registration`, { enabled: false });
    expect((await register({ redirect_uris: [CB] }, { authorization: `Bearer ${next.initial_access_token}` })).status).toBe(403);
    await authz.adminApi("PUT", `/tenants/${T}/registration`, { enabled: true, scopes: ["openid", "profile"] });
  });

  test("fuzz: the registration endpoints never answer 5xx", async () => {
    await authz.adminApi("PUT", `/tenants/${T}/registration`, { enabled: true, scopes: ["openid", "profile"] });
    const made = (await (await register({ redirect_uris: [CB] })).json()) as { client_id: string; registration_access_token: string };
    const r = rng(7591);
    const seed = { client_name: "x", redirect_uris: [CB, "http://127.0.0.1/cb"], grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], scope: "openid", token_endpoint_auth_method: "none", jwks: { keys: [{ kty: "EC", crv: "P-256", x: "AA", y: "BB" }] }, id_token_signed_response_alg: "ES256", client_id: made.client_id };
    const cases = Array.from({ length: 200 }, (_, i) => ({ put: i % 2 === 1, body: mutateJson(seed, r) }));
    await fuzz(
      cases,
      (c) =>
        c.put
          ? authz.fetch(`${iss()}/register/${made.client_id}`, { method: "PUT", headers: { authorization: `Bearer ${made.registration_access_token}`, "content-type": "application/json" }, body: c.body })
          : register(c.body),
      { describe: (c) => `${c.put ? "PUT" : "POST"} ${c.body}`, maxMs: 15_000, concurrency: 4 },
    );
    // The admin API's settings endpoint too.
    const settings = Array.from({ length: 80 }, () => mutateJson({ enabled: true, scopes: ["openid"], audiences: ["learn-ps"], require_initial_access_token: false }, r));
    const token = await authz.adminBearer();
    await fuzz(
      settings,
      (body) => authz.fetch(`${authz.publicUrl}/service/api/v1/tenants/${T}/registration`, { method: "PUT", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body }),
      { describe: (b) => b, maxMs: 15_000, concurrency: 4 },
    );
  }, 60_000);
}
