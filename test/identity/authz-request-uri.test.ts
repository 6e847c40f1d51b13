/**
 * identity-authz, request objects by reference (RFC 9101 §5.2, OIDC Core §6.2): a client
 * registers `request_uris`, serves there a request object made by oauth4webapi's
 * `issueRequestObject` (a real HTTPS server run by the test), and sends `request_uri` to the
 * authorization endpoint; oauth4webapi then redeems the code. Refused, shown and never
 * redirected: an unregistered or http URI, a client without request_uris, a redirect, an
 * oversized or missing document, a server that does not answer in time (`invalid_request_uri`);
 * a bad signature, a wrong audience, a replayed object (`invalid_request_object`). A service
 * with the default settings fetches no client-chosen URL on a loopback address: not a
 * request_uri, not a jwks_uri (its private_key_jwt assertions fail), not a
 * sector_identifier_uri (its registration fails). Registration (admin API and RFC 7591)
 * keeps request_uris https and tied to registered keys.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import * as oauth from "oauth4webapi";
import { exportJWK, SignJWT } from "jose";
import { followToClient, startAuthz, type TestAuthz } from "./support/authz.ts";
import { serveHttps, type TestHttpsServer } from "../support/tls.ts";
import { fuzz, mutateText, rng } from "../support/fuzz.ts";

setDefaultTimeout(60_000);

const T = "byref";
const CB = "https://byref.example/cb";
/** How long the service waits for a request_uri (app.request_uri_timeout_ms); /ro/slow answers much later. */
const FETCH_TIMEOUT_MS = 2500;

let authz: TestAuthz;
let strictAuthz: TestAuthz;
let ro: TestHttpsServer;
let base: string;
let as: oauth.AuthorizationServer;
let key: CryptoKeyPair;
let foreign: CryptoKeyPair;
let byRef: { client_id: string; client_secret: string };
let noRef: { client_id: string; client_secret: string };
/** What the request-object server serves at /ro/{name}; each path's hits. */
const objects = new Map<string, string>();
const hits: Record<string, number> = {};
const accepts: string[] = [];

/** identity-authz trusting the request-object server's CA too; `allowPrivate` lets it fetch from loopback. */
const start = (allowPrivate: boolean) =>
  startAuthz({
    overrides: (c) => {
      const app = c.app as Record<string, unknown>;
      const both = join(String(app.ca_file) + ".with-ro.pem");
      writeFileSync(both, readFileSync(String(app.ca_file), "utf8") + ro.caPem);
      Object.assign(app, { ca_file: both, request_uri_timeout_ms: FETCH_TIMEOUT_MS, client_urls_allow_private_addresses: allowPrivate });
    },
  });

const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit) });

beforeAll(async () => {
  ro = await serveHttps("request-objects", async (req) => {
    const name = new URL(req.url).pathname.replace(/^\/ro\//, "");
    hits[name] = (hits[name] ?? 0) + 1;
    accepts.push(req.headers.get("accept") ?? "");
    if (name === "redirect") return new Response(null, { status: 302, headers: { location: `${base}/ro/a` } });
    if (name === "big") return new Response("e".repeat(20_000), { headers: { "content-type": "application/oauth-authz-req+jwt" } });
    if (name === "slow") {
      await Bun.sleep(FETCH_TIMEOUT_MS * 4);
      return new Response(objects.get("a") ?? "", { headers: { "content-type": "application/oauth-authz-req+jwt" } });
    }
    const body = objects.get(name);
    if (name === "jwks" || name === "sector") return new Response(body, { headers: { "content-type": "application/json" } });
    return body === undefined ? new Response("not found", { status: 404 }) : new Response(body, { headers: { "content-type": "application/oauth-authz-req+jwt" } });
  });
  base = ro.url;
  [authz, strictAuthz] = await Promise.all([start(true), start(false)]);
  key = await oauth.generateKeyPair("ES256");
  foreign = await oauth.generateKeyPair("ES256");
  const jwks = { keys: [{ ...(await exportJWK(key.publicKey)), kid: "k1", alg: "ES256" }] };
  const client = { grant_types: ["authorization_code"], redirect_uris: [CB], scopes: ["openid", "profile"], jwks };
  const uris = ["a", "b#c2hhLTI1Ni1vZi10aGUtY29udGVudA", "redirect", "big", "slow", "missing"].map((n) => `${base}/ro/${n}`);
  for (const a of [authz, strictAuthz]) await a.createTenant(T);
  byRef = (await authz.createClient(T, { client_id: "by-ref", client_name: "Requests by reference", ...client, request_uris: uris })) as never;
  noRef = (await authz.createClient(T, { client_id: "no-ref", client_name: "No request URIs", ...client })) as never;
  await strictAuthz.createClient(T, { client_id: "by-ref", client_name: "Requests by reference", ...client, request_uris: uris });
  const iss = new URL(`${authz.publicUrl}/t/${T}`);
  as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, cf()));
});

afterAll(async () => {
  await authz?.stop();
  await strictAuthz?.stop();
  ro?.stop();
});

async function requestParams() {
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const params = { response_type: "code", redirect_uri: CB, scope: "openid profile", state, code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256" };
  return { verifier, state, params };
}

/** A fresh request object of `by-ref`, signed by oauth4webapi with the client's key. */
async function requestObject(client = byRef) {
  const r = await requestParams();
  return { ...r, jwt: await oauth.issueRequestObject(as, { client_id: client.client_id }, r.params, { key: key.privateKey, kid: "k1" }) };
}

const authorize = (a: TestAuthz, clientId: string, requestUri: string) =>
  followToClient(`${a.publicUrl}/t/${T}/authorize?${new URLSearchParams({ client_id: clientId, request_uri: requestUri })}`, CB, a.caAll);

test("discovery: request_uri is supported, and only registered ones", () => {
  expect(as.request_uri_parameter_supported).toBe(true);
  expect(as.require_request_uri_registration).toBe(true);
  expect(as.request_parameter_supported).toBe(true);
});

test("the request object at a registered request_uri carries the request; oauth4webapi redeems the code", async () => {
  const { jwt, state, verifier } = await requestObject();
  objects.set("a", jwt);
  const before = hits.a ?? 0;
  const b = await authorize(authz, byRef.client_id, `${base}/ro/a`);
  expect(b.callback).toBeDefined();
  expect(hits.a).toBe(before + 1);
  expect(accepts.at(-1)).toBe("application/oauth-authz-req+jwt");
  expect(authz.idp.challenges.at(-1)!.scope).toBe("openid profile");
  const c: oauth.Client = { client_id: byRef.client_id };
  const p = oauth.validateAuthResponse(as, c, b.callback!, state);
  const tokens = await oauth.processAuthorizationCodeResponse(as, c, await oauth.authorizationCodeGrantRequest(as, c, oauth.ClientSecretBasic(byRef.client_secret), p, CB, verifier, cf()));
  expect(tokens.scope).toBe("openid profile");
  expect(tokens.id_token).toBeDefined();
});

test("fragments are left out of the match: a registered URI with one, or a request_uri with another, still matches", async () => {
  objects.set("b", (await requestObject()).jwt);
  expect((await authorize(authz, byRef.client_id, `${base}/ro/b`)).callback).toBeDefined();
  objects.set("a", (await requestObject()).jwt);
  expect((await authorize(authz, byRef.client_id, `${base}/ro/a#another-hash`)).callback).toBeDefined();
});

describe("refused, shown and never redirected", () => {
  const refused = async (requestUri: string, error: string, text: string, a = authz, clientId = byRef.client_id) => {
    const b = await authorize(a, clientId, requestUri);
    expect({ requestUri, status: b.status, redirected: !!b.callback }).toEqual({ requestUri, status: 400, redirected: false });
    expect(b.body).toContain(error);
    expect(b.body).toContain(text);
  };

  test("request_uri itself: unregistered, http, too long, a client without request_uris; none of them is fetched", async () => {
    const before = { ...hits };
    await refused(`${base}/ro/unregistered`, "invalid_request_uri", "not registered for this client");
    await refused(`${base}/ro/a/`, "invalid_request_uri", "not registered for this client");
    await refused(`http://127.0.0.1:${ro.server.port}/ro/a`, "invalid_request_uri", "must be an https URL");
    await refused(`${base}/ro/a?x=${"y".repeat(600)}`, "invalid_request_uri", "longer than 512 characters");
    await refused(`${base}/ro/a`, "invalid_request_uri", "registered no request_uris", authz, noRef.client_id);
    expect(hits).toEqual(before);
  });

  test("the fetch: a redirect (not followed), a missing document, an oversized one, no answer in time", async () => {
    const a = hits.a ?? 0;
    await refused(`${base}/ro/redirect`, "invalid_request_uri", "redirect (302), which is not followed");
    expect(hits.a ?? 0).toBe(a);
    await refused(`${base}/ro/missing`, "invalid_request_uri", "the server answered 404");
    await refused(`${base}/ro/big`, "invalid_request_uri", "larger than 16384 bytes");
    await refused(`${base}/ro/slow`, "invalid_request_uri", `no answer within ${FETCH_TIMEOUT_MS} ms`);
  });

  test("the object: a bad signature, a wrong audience, a replay", async () => {
    const { params } = await requestParams();
    const now = Math.floor(Date.now() / 1000);
    const claims = { ...params, client_id: byRef.client_id, iss: byRef.client_id, aud: as.issuer, iat: now, exp: now + 60, jti: crypto.randomUUID() };
    const sign = (payload: Record<string, unknown>, k: CryptoKey) => new SignJWT(payload).setProtectedHeader({ alg: "ES256", kid: "k1", typ: "oauth-authz-req+jwt" }).sign(k);
    objects.set("a", await sign(claims, foreign.privateKey));
    await refused(`${base}/ro/a`, "invalid_request_object", "signature, issuer, audience or lifetime");
    objects.set("a", await sign({ ...claims, aud: "https://elsewhere.example/t/byref" }, key.privateKey));
    await refused(`${base}/ro/a`, "invalid_request_object", "signature, issuer, audience or lifetime");
    objects.set("a", (await requestObject()).jwt);
    expect((await authorize(authz, byRef.client_id, `${base}/ro/a`)).callback).toBeDefined();
    await refused(`${base}/ro/a`, "invalid_request_object", "already used");
  });

  test("with the default settings, a request_uri on a loopback address is not fetched", async () => {
    objects.set("a", (await requestObject()).jwt);
    const before = hits.a ?? 0;
    await refused(`${base}/ro/a`, "invalid_request_uri", "127.0.0.1 is a loopback, private or reserved address", strictAuthz, "by-ref");
    expect(hits.a ?? 0).toBe(before);
  });
});

test("fuzz: mutated request_uri values at /authorize answer 4xx, never 5xx", async () => {
  const r = rng(9102);
  const seeds = [`${base}/ro/a`, `${base}/ro/b#frag`, "urn:ietf:params:oauth:request_uri:abc", "https://", "https://[::1", `https://127.0.0.1:${ro.server.port}/ro/a?x=%00`, "javascript:alert(1)", `${base}/ro/../ro/a`];
  const cases = Array.from({ length: 300 }, (_, i) => mutateText(seeds[i % seeds.length]!, r));
  const out = await fuzz(cases, (uri) => authz.fetch(`${authz.publicUrl}/t/${T}/authorize?${new URLSearchParams({ client_id: byRef.client_id, request_uri: uri })}`, { redirect: "manual" }), {
    describe: (uri) => uri,
    maxMs: 15_000,
    concurrency: 4,
  });
  expect(out.statuses.has(400)).toBe(true);
  expect([...out.statuses.values()].reduce((a, b) => a + b, 0)).toBe(cases.length);
}, 120_000);

describe("other client-chosen URLs on a loopback address, with the default settings", () => {
  const CC = "byref-cc";
  let ccKey: CryptoKeyPair;
  const ccClient = { client_id: CC, client_name: "Keys by URI", grant_types: ["client_credentials"], scopes: ["pets:read"], audiences: ["learn-ps"], token_endpoint_auth_method: "private_key_jwt", jwks_uri: "" };

  beforeAll(async () => {
    ccKey = await oauth.generateKeyPair("ES256");
    objects.set("jwks", JSON.stringify({ keys: [{ ...(await exportJWK(ccKey.publicKey)), kid: "cc1", alg: "ES256" }] }));
    for (const a of [authz, strictAuthz]) await a.createClient(T, { ...ccClient, jwks_uri: `${base}/ro/jwks` });
  });

  const grant = async (a: TestAuthz) => {
    const iss = new URL(`${a.publicUrl}/t/${T}`);
    const fetchOpts = { [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: a.caAll } } as RequestInit) };
    const server = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, fetchOpts));
    return oauth.clientCredentialsGrantRequest(server, { client_id: CC }, oauth.PrivateKeyJwt({ key: ccKey.privateKey, kid: "cc1" }), { scope: "pets:read" }, fetchOpts);
  };

  test("a jwks_uri is not fetched: the client's assertions are refused (invalid_client); allowed, the same grant works", async () => {
    const before = hits.jwks ?? 0;
    const refused = await grant(strictAuthz);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: string }).error).toBe("invalid_client");
    expect(hits.jwks ?? 0).toBe(before);
    const allowed = await grant(authz);
    expect({ status: allowed.status, body: allowed.status === 200 ? "" : await allowed.text() }).toEqual({ status: 200, body: "" });
    expect(hits.jwks).toBe(before + 1);
  });

  test("a sector_identifier_uri is not fetched: the registration is refused and names the address; allowed, it is accepted", async () => {
    const cbs = ["https://one.example/cb", "https://two.example/cb"];
    objects.set("sector", JSON.stringify(cbs));
    const doc = { client_name: "pairwise", grant_types: ["authorization_code"], redirect_uris: cbs, scopes: ["openid"], subject_type: "pairwise", sector_identifier_uri: `${base}/ro/sector` };
    const before = hits.sector ?? 0;
    const refused = await strictAuthz.adminApi("POST", `/tenants/${T}/clients`, doc);
    expect(refused.status).toBe(400);
    expect(await refused.text()).toContain("127.0.0.1 is a loopback, private or reserved address");
    expect(hits.sector ?? 0).toBe(before);
    expect((await authz.adminApi("POST", `/tenants/${T}/clients`, doc)).status).toBe(201);
    expect(hits.sector).toBe(before + 1);
  });
});

describe("registration", () => {
  test("admin API: request_uris are https and need the client's keys", async () => {
    const base0 = { client_name: "x", grant_types: ["authorization_code"], redirect_uris: [CB] };
    const http = await authz.adminApi("POST", `/tenants/${T}/clients`, { ...base0, jwks: { keys: [await exportJWK(key.publicKey)] }, request_uris: [`http://127.0.0.1:${ro.server.port}/ro/a`] });
    expect(http.status).toBe(400);
    const keyless = await authz.adminApi("POST", `/tenants/${T}/clients`, { ...base0, request_uris: [`${base}/ro/a`] });
    expect(keyless.status).toBe(400);
    expect(await keyless.text()).toContain("request_uris needs jwks or jwks_uri");
    const patched = await authz.adminApi("PATCH", `/tenants/${T}/clients/${noRef.client_id}`, { request_uris: [`${base}/ro/z`] });
    expect(patched.status).toBe(200);
    expect(((await patched.json()) as { request_uris: string[] }).request_uris).toEqual([`${base}/ro/z`]);
  });

  test("dynamic registration (RFC 7591) takes request_uris and answers them; http is invalid_client_metadata", async () => {
    const on = await authz.adminApi("PUT", `/tenants/${T}/registration`, { enabled: true, scopes: ["openid"], audiences: [], require_initial_access_token: false });
    expect(on.status).toBe(200);
    const register = (meta: Record<string, unknown>) =>
      authz.fetch(`${authz.publicUrl}/t/${T}/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(meta) });
    const meta = { redirect_uris: [CB], jwks: { keys: [await exportJWK(key.publicKey)] }, request_uris: [`${base}/ro/dcr`] };
    const ok = await register(meta);
    expect(ok.status).toBe(201);
    expect(((await ok.json()) as { request_uris: string[] }).request_uris).toEqual([`${base}/ro/dcr`]);
    const bad = await register({ ...meta, request_uris: [`http://127.0.0.1:${ro.server.port}/ro/dcr`] });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toBe("invalid_client_metadata");
  });
});
