/**
 * identity-authz, JWT-secured authorization requests (RFC 9101): request objects made by
 * oauth4webapi's `issueRequestObject` with each accepted algorithm, directly and through PAR,
 * a client that must sign its requests, and the refusals (bad signature, alg none, expired,
 * wrong audience, replay), against the real service over HTTPS.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { exportJWK, SignJWT, type JWK } from "jose";
import { followToClient, startAuthz, type TestAuthz } from "./support/authz.ts";
import type { TestEngine } from "../support/engine.ts";
import { fuzz, rng } from "../support/fuzz.ts";

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");

export function authzJarSuite(engine: TestEngine): void {
  let authz: TestAuthz;
  let as: oauth.AuthorizationServer;
  const T = "jar";
  const CB = "https://signed.example/cb";
  const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit) });
  const keys: Record<string, CryptoKeyPair> = {};
  let strict: { client_id: string; client_secret: string };
  let loose: { client_id: string; client_secret: string };
  let keyless: { client_id: string; client_secret: string };

  beforeAll(async () => {
    authz = await startAuthz({ engine });
    await authz.createTenant(T);
    const jwks: JWK[] = [];
    for (const alg of ["ES256", "RS256", "PS256", "EdDSA"]) {
      keys[alg] = await oauth.generateKeyPair(alg);
      // oauth4webapi names Ed25519 signatures "Ed25519" (RFC 9864), not "EdDSA": that key names no alg.
      jwks.push({ ...(await exportJWK(keys[alg]!.publicKey)), kid: alg, ...(alg === "EdDSA" ? {} : { alg }) });
    }
    const base = { grant_types: ["authorization_code"], redirect_uris: [CB], scopes: ["openid", "profile", "email"], audiences: ["learn-ps"] };
    strict = (await authz.createClient(T, { client_name: "Signed only", ...base, jwks: { keys: jwks }, require_signed_request_object: true })) as never;
    loose = (await authz.createClient(T, { client_name: "Signs sometimes", ...base, jwks: { keys: jwks } })) as never;
    keyless = (await authz.createClient(T, { client_name: "No keys", ...base })) as never;
    const iss = new URL(`${authz.publicUrl}/t/${T}`);
    as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, cf()));
  });

  afterAll(async () => {
    await authz?.stop();
  });

  /** Follows the browser from the authorization URL to the client's callback; or the page it stopped at. */
  const browse = (url: string) => followToClient(url, CB, authz.caAll);

  const authorizeUrl = (params: Record<string, string>) => `${as.authorization_endpoint}?${new URLSearchParams(params)}`;

  async function requestParams(extra: Record<string, string> = {}) {
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    return { verifier, state, params: { response_type: "code", redirect_uri: CB, scope: "openid profile", state, code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256", ...extra } };
  }

  async function redeem(client: { client_id: string; client_secret: string }, callback: URL, state: string, verifier: string) {
    const c: oauth.Client = { client_id: client.client_id };
    const p = oauth.validateAuthResponse(as, c, callback, state);
    return oauth.processAuthorizationCodeResponse(as, c, await oauth.authorizationCodeGrantRequest(as, c, oauth.ClientSecretBasic(client.client_secret), p, CB, verifier, cf()));
  }

  test("discovery advertises request objects", () => {
    expect(as.request_parameter_supported).toBe(true);
    expect(as.request_object_signing_alg_values_supported).toEqual(["ES256", "RS256", "PS256", "EdDSA", "Ed25519"]);
    expect((as as Record<string, unknown>).require_signed_request_object).toBe(false);
  });

  for (const alg of ["ES256", "RS256", "PS256", "EdDSA"]) {
    test(`a ${alg} request object carries the request; only its parameters count`, async () => {
      const { verifier, state, params } = await requestParams();
      const c: oauth.Client = { client_id: strict.client_id };
      const request = await oauth.issueRequestObject(as, c, params, { key: keys[alg]!.privateKey, kid: alg });
      // The outer scope differs: the object's wins.
      const b = await browse(authorizeUrl({ client_id: strict.client_id, request, scope: "openid email" }));
      expect(b.callback).toBeDefined();
      expect(authz.idp.challenges.at(-1)!.scope).toBe("openid profile");
      const tokens = await redeem(strict, b.callback!, state, verifier);
      expect(tokens.scope).toBe("openid profile");
    });
  }

  test("through PAR: the pushed request object, then request_uri", async () => {
    const { verifier, state, params } = await requestParams();
    const c: oauth.Client = { client_id: strict.client_id };
    const request = await oauth.issueRequestObject(as, c, params, { key: keys.ES256!.privateKey, kid: "ES256" });
    const par = await oauth.processPushedAuthorizationResponse(as, c, await oauth.pushedAuthorizationRequest(as, c, oauth.ClientSecretBasic(strict.client_secret), { request }, cf()));
    const b = await browse(authorizeUrl({ client_id: strict.client_id, request_uri: par.request_uri }));
    expect(b.callback).toBeDefined();
    expect((await redeem(strict, b.callback!, state, verifier)).scope).toBe("openid profile");
  });

  test("a client that must sign is refused without a request object, directly and at PAR", async () => {
    const { params } = await requestParams();
    const b = await browse(authorizeUrl({ client_id: strict.client_id, ...params }));
    expect(b.status).toBe(400);
    expect(b.body).toContain("signed request object");
    const r = await authz.fetch(as.pushed_authorization_request_endpoint!, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${btoa(`${strict.client_id}:${strict.client_secret}`)}` },
      body: new URLSearchParams({ client_id: strict.client_id, ...params }).toString(),
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toBe("invalid_request");
    // A client that may sign still may send plain requests.
    expect((await browse(authorizeUrl({ client_id: loose.client_id, ...params }))).callback).toBeDefined();
  });

  test("bad signature, alg none, expired, not yet valid, wrong audience, wrong issuer, replay and keyless clients are refused, never redirected", async () => {
    const { params } = await requestParams();
    const c: oauth.Client = { client_id: loose.client_id };
    const claims = (over: Record<string, unknown> = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return { ...params, client_id: loose.client_id, iss: loose.client_id, aud: as.issuer, iat: now, nbf: now, exp: now + 60, jti: crypto.randomUUID(), ...over };
    };
    const sign = (payload: Record<string, unknown>, key: CryptoKey = keys.ES256!.privateKey, kid = "ES256") =>
      new SignJWT(payload).setProtectedHeader({ alg: "ES256", kid, typ: "oauth-authz-req+jwt" }).sign(key);
    const foreign = await oauth.generateKeyPair("ES256");
    const now = Math.floor(Date.now() / 1000);
    const good = await oauth.issueRequestObject(as, c, params, { key: keys.ES256!.privateKey, kid: "ES256" });
    const cases: [string, string][] = [
      ["bad signature", await sign(claims(), foreign.privateKey)],
      ["alg none", `${b64({ alg: "none", typ: "oauth-authz-req+jwt" })}.${b64(claims())}.`],
      ["expired", await sign(claims({ iat: now - 600, nbf: now - 600, exp: now - 300 }))],
      ["not yet valid", await sign(claims({ nbf: now + 600, exp: now + 900 }))],
      ["too long lived", await sign(claims({ exp: now + 7200 }))],
      ["wrong audience", await sign(claims({ aud: "https://elsewhere.example/t/jar" }))],
      ["wrong issuer", await sign(claims({ iss: strict.client_id }))],
      ["no jti", await sign(claims({ jti: undefined }))],
      ["other client_id inside", await sign(claims({ client_id: strict.client_id }))],
      ["not a JWT", "abc"],
    ];
    for (const [why, request] of cases) {
      const b = await browse(authorizeUrl({ client_id: loose.client_id, request }));
      expect({ why, status: b.status, redirected: !!b.callback }).toEqual({ why, status: 400, redirected: false });
      expect(b.body).toContain("invalid_request_object");
    }
    // The good one works once; its replay is refused.
    expect((await browse(authorizeUrl({ client_id: loose.client_id, request: good }))).callback).toBeDefined();
    const replay = await browse(authorizeUrl({ client_id: loose.client_id, request: good }));
    expect(replay.status).toBe(400);
    expect(replay.body).toContain("already used");
    // A client without registered keys cannot use request objects.
    const kc: oauth.Client = { client_id: keyless.client_id };
    const k = await browse(authorizeUrl({ client_id: keyless.client_id, request: await oauth.issueRequestObject(as, kc, params, { key: keys.ES256!.privateKey, kid: "ES256" }) }));
    expect(k.status).toBe(400);
    expect(k.body).toContain("no registered keys");
    // At PAR the refusal is JSON.
    const r = await authz.fetch(as.pushed_authorization_request_endpoint!, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${btoa(`${loose.client_id}:${loose.client_secret}`)}` },
      body: new URLSearchParams({ request: cases[0]![1] }).toString(),
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toBe("invalid_request_object");
  });

  test("fuzz: mutated request objects at /authorize and /par never answer 5xx", async () => {
    const { params } = await requestParams();
    const c: oauth.Client = { client_id: loose.client_id };
    const good = await oauth.issueRequestObject(as, c, params, { key: keys.ES256!.privateKey, kid: "ES256" });
    const r = rng(9101);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=%+/";
    const mutate = (jwt: string) => {
      let x = jwt;
      for (let k = 0, n = 1 + r(4); k < n; k++) {
        const i = r(x.length + 1);
        switch (r(5)) {
          case 0: x = x.slice(0, i); break;
          case 1: x = x.slice(0, i) + alphabet[r(alphabet.length)] + x.slice(i + 1); break;
          case 2: x = x.split(".").reverse().join("."); break;
          case 3: x = `${b64({ alg: ["none", "HS256", "ES256", "RS1", ""][r(5)], kid: ["ES256", "nope", 7][r(3)] })}.${x.split(".")[1] ?? ""}.${x.split(".")[2] ?? ""}`; break;
          default: x = x.slice(0, i) + x.slice(i, i + 1 + r(20)).repeat(1 + r(3)) + x.slice(i);
        }
      }
      return x;
    };
    const cases = Array.from({ length: 160 }, (_, i) => ({ par: i % 2 === 0, request: mutate(good) }));
    await fuzz(
      cases,
      (x) =>
        x.par
          ? authz.fetch(as.pushed_authorization_request_endpoint!, {
              method: "POST",
              headers: { "content-type": "application/x-www-form-urlencoded", authorization: `Basic ${btoa(`${loose.client_id}:${loose.client_secret}`)}` },
              body: new URLSearchParams({ request: x.request }).toString(),
            })
          : authz.fetch(authorizeUrl({ client_id: loose.client_id, request: x.request }), { redirect: "manual" }),
      { describe: (x) => `${x.par ? "par" : "authorize"} ${x.request}`, maxMs: 15_000, concurrency: 4 },
    );
  }, 60_000);

  test("registering require_signed_request_object needs keys", async () => {
    const r = await authz.adminApi("POST", `/tenants/${T}/clients`, { client_name: "x", grant_types: ["authorization_code"], redirect_uris: [CB], require_signed_request_object: true });
    expect(r.status).toBe(400);
  });
}
