/**
 * identity-authz, client_credentials: a real OAuth client (oauth4webapi) over HTTPS
 * with every client authentication method, RFC 9068 tokens accepted by learn-ps
 * (per-tenant issuer pattern), and the refusals with their OAuth error codes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT } from "jose";
import { join } from "node:path";
import { learnPs } from "../../apps/learn-ps/service.ts";
import { Authz } from "../../apps/identity-authz/domain/authz.ts";
import { startTestService, type TestService } from "../support/service.ts";
import { basic, form, startAuthz, type TestAuthz } from "./support/authz.ts";
import { inProcess, type TestEngine } from "../support/engine.ts";

/** Registers the client-credentials tests on services whose databases are on `engine`. */
export function authzClientCredentialsSuite(engine: TestEngine): void {
  let authz: TestAuthz;
  let learn: TestService;
  let base: string;
  const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => fetch(url, { ...init, tls: { ca: authz.caAll } } as RequestInit) });
  let asA: oauth.AuthorizationServer;
  let secretClient: { client_id: string; client_secret: string };
  let postClient: { client_id: string; client_secret: string };
  let pkjClient: { client_id: string };
  let pkjUriClient: { client_id: string };
  let pkjKey: CryptoKeyPair;
  let pkjUriKey: CryptoKeyPair;

  async function discover(tenant: string, algorithm: "oidc" | "oauth2" = "oidc") {
    const iss = new URL(`${base}/t/${tenant}`);
    return oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, { ...cf(), algorithm }));
  }

  beforeAll(async () => {
    pkjKey = await generateKeyPair("ES256", { extractable: true });
    pkjUriKey = await generateKeyPair("ES256", { extractable: true });
    authz = await startAuthz({ engine });
    base = authz.publicUrl;
    await authz.createTenant("acme");
    await authz.createTenant("globex");
    const common = { grant_types: ["client_credentials"], scopes: ["pets:read", "pets:write"], audiences: ["learn-ps", "other-api"] };
    secretClient = (await authz.createClient("acme", { client_name: "basic", ...common })) as never;
    postClient = (await authz.createClient("acme", { client_name: "post", ...common, token_endpoint_auth_method: "client_secret_post" })) as never;
    pkjClient = await authz.createClient("acme", {
      client_name: "pkj",
      ...common,
      token_endpoint_auth_method: "private_key_jwt",
      jwks: { keys: [{ ...(await exportJWK(pkjKey.publicKey)), kid: "c1", alg: "ES256" }] },
    });
    const uri = authz.idp.hostJwks("pkj-uri", [{ ...(await exportJWK(pkjUriKey.publicKey)), kid: "c2", alg: "ES256" }]);
    pkjUriClient = await authz.createClient("acme", { client_name: "pkj-uri", ...common, token_endpoint_auth_method: "private_key_jwt", jwks_uri: uri });
    asA = await discover("acme");
    learn = await startTestService(learnPs, {
      engine,
      root: authz.root,
      overrides: (c) => {
        c.auth.issuer = `${base}/t/{tenant}`;
        c.auth.jwks_url = `${base}/t/{tenant}/jwks`;
        c.auth.ca_file = join(authz.dataDir, "trust-bundle.pem");
        c.log.level = "warn";
      },
    });
  });

  afterAll(async () => {
    await learn?.stop();
    await authz?.stop();
  });

  async function grant(auth: oauth.ClientAuth, clientId: string, params: Record<string, string> = { scope: "pets:read pets:write" }, as = asA) {
    const client: oauth.Client = { client_id: clientId };
    const res = await oauth.clientCredentialsGrantRequest(as, client, auth, params, cf());
    return oauth.processClientCredentialsResponse(as, client, res);
  }

  const pets = (token: string, init: RequestInit = {}) =>
    learn.call("/service/api/v1/pets", { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` } });

  describe("discovery", () => {
    test("OIDC and RFC 8414 documents (both paths) name the tenant's issuer and endpoints", async () => {
      expect(asA.issuer).toBe(`${base}/t/acme`);
      expect(asA.token_endpoint).toBe(`${base}/t/acme/token`);
      expect(asA.code_challenge_methods_supported).toEqual(["S256"]);
      expect(asA.authorization_response_iss_parameter_supported).toBe(true);
      const rfc8414 = await discover("acme", "oauth2");
      expect(rfc8414.issuer).toBe(asA.issuer);
      const alt = await authz.fetch(`${base}/t/acme/.well-known/oauth-authorization-server`);
      expect(((await alt.json()) as { issuer: string }).issuer).toBe(asA.issuer);
      expect((await authz.fetch(`${base}/t/nope/.well-known/openid-configuration`)).status).toBe(404);
    });
  });

  describe("client_credentials with each client authentication method", () => {
    test("client_secret_basic: an RFC 9068 ES256 access token with the requested scope and default audience", async () => {
      const t = await grant(oauth.ClientSecretBasic(secretClient.client_secret), secretClient.client_id, { scope: "pets:read" });
      expect(t.token_type).toBe("bearer");
      const h = decodeProtectedHeader(t.access_token);
      expect(h.typ).toBe("at+jwt");
      expect(h.alg).toBe("ES256");
      const c = decodeJwt(t.access_token);
      expect(c).toMatchObject({ iss: `${base}/t/acme`, sub: secretClient.client_id, aud: "learn-ps", client_id: secretClient.client_id, scope: "pets:read", tenant: "acme" });
      expect(typeof c.jti).toBe("string");
      expect(c.exp! - c.iat!).toBe(600);
    });

    test("client_secret_post", async () => {
      const t = await grant(oauth.ClientSecretPost(postClient.client_secret), postClient.client_id);
      expect(decodeJwt(t.access_token).client_id).toBe(postClient.client_id);
    });

    test("private_key_jwt with the JWKS by value and by URI", async () => {
      const t1 = await grant(oauth.PrivateKeyJwt({ key: pkjKey.privateKey, kid: "c1" }), pkjClient.client_id);
      expect(decodeJwt(t1.access_token).sub).toBe(pkjClient.client_id);
      const t2 = await grant(oauth.PrivateKeyJwt({ key: pkjUriKey.privateKey, kid: "c2" }), pkjUriClient.client_id);
      expect(decodeJwt(t2.access_token).sub).toBe(pkjUriClient.client_id);
    });

    test("the resource parameter selects an allowed audience; others are invalid_target", async () => {
      const t = await grant(oauth.ClientSecretBasic(secretClient.client_secret), secretClient.client_id, { resource: "other-api" });
      expect(decodeJwt(t.access_token).aud).toBe("other-api");
      const r = await authz.fetch(`${base}/t/acme/token`, form({ grant_type: "client_credentials", resource: "evil" }, { authorization: basic(secretClient.client_id, secretClient.client_secret) }));
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: string }).error).toBe("invalid_target");
    });
  });

  describe("private_key_jwt assertions", () => {
    const assertion = (claims: Record<string, unknown>, key = pkjKey.privateKey, exp = "60s") =>
      new SignJWT({ jti: crypto.randomUUID(), ...claims })
        .setProtectedHeader({ alg: "ES256", kid: "c1" })
        .setIssuer(pkjClient.client_id)
        .setSubject(pkjClient.client_id)
        .setIssuedAt()
        .setExpirationTime(exp)
        .sign(key);
    const post = (a: string) =>
      authz.fetch(`${base}/t/acme/token`, form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: a }));

    test("aud may be the token endpoint; a jti is single use", async () => {
      const a = await assertion({ aud: `${base}/t/acme/token` });
      expect((await post(a)).status).toBe(200);
      const again = await post(a);
      expect(again.status).toBe(401);
      expect(((await again.json()) as { error: string }).error).toBe("invalid_client");
    });

    test("wrong audience, other tenant's issuer, long life, foreign key and missing jti are invalid_client", async () => {
      const other = await generateKeyPair("ES256");
      const bad = [
        await assertion({ aud: `${base}/t/globex` }),
        await assertion({ aud: "https://elsewhere.example/token" }),
        await assertion({ aud: `${base}/t/acme` }, pkjKey.privateKey, "2h"),
        await assertion({ aud: `${base}/t/acme` }, other.privateKey),
        await new SignJWT({ aud: `${base}/t/acme` }).setProtectedHeader({ alg: "ES256" }).setIssuer(pkjClient.client_id).setSubject(pkjClient.client_id).setExpirationTime("60s").sign(pkjKey.privateKey),
      ];
      for (const a of bad) {
        const r = await post(a);
        expect(r.status).toBe(401);
        expect(((await r.json()) as { error: string }).error).toBe("invalid_client");
      }
    });
  });

  describe("learn-ps accepts authz's tokens", () => {
    test("a client_credentials token reaches /service/api/v1/pets, attributed to its tenant", async () => {
      const t = await grant(oauth.ClientSecretBasic(secretClient.client_secret), secretClient.client_id);
      const created = await pets(t.access_token, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "Rex", species: "dog" }) });
      expect(created.status).toBe(201);
      const list = (await (await pets(t.access_token)).json()) as { items: Array<{ name: string }> };
      expect(list.items.map((p) => p.name)).toContain("Rex");
    });

    test("missing scope is 403, wrong audience and expired tokens are 401", async () => {
      const readOnly = await grant(oauth.ClientSecretBasic(secretClient.client_secret), secretClient.client_id, { scope: "pets:read" });
      const w = await pets(readOnly.access_token, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "No", species: "cat" }) });
      expect(w.status).toBe(403);
      const wrongAud = await grant(oauth.ClientSecretBasic(secretClient.client_secret), secretClient.client_id, { resource: "other-api" });
      const r1 = await pets(wrongAud.access_token);
      expect(r1.status).toBe(401);
      expect(((await r1.json()) as { error: { message: string } }).error.message).toContain("aud");
      // An expired token signed with the tenant's real current key (reached in-process only).
      if (!inProcess(engine)) return;
      const signer = await Authz.of(authz.ctx).keys.signer("acme");
      const past = Math.floor(Date.now() / 1000) - 3600;
      const expired = await signer.signJwt("at+jwt", {
        client_id: secretClient.client_id, scope: "pets:read", tenant: "acme", jti: "x",
        iss: `${base}/t/acme`, sub: secretClient.client_id, aud: "learn-ps", iat: past, exp: past + 600,
      });
      const r2 = await pets(expired);
      expect(r2.status).toBe(401);
      expect(((await r2.json()) as { error: { message: string } }).error.message).toContain("expired");
    });

    test("tenant A's token stays tenant A's at learn-ps, and is inactive at tenant B's introspection", async () => {
      const globexClient = await authz.createClient("globex", { client_name: "rs", grant_types: ["client_credentials"], scopes: ["pets:read", "pets:write"], audiences: ["learn-ps"] });
      const tA = await grant(oauth.ClientSecretBasic(secretClient.client_secret), secretClient.client_id);
      const asB = await discover("globex");
      const tB = await grant(oauth.ClientSecretBasic(globexClient.client_secret!), globexClient.client_id, { scope: "pets:read pets:write" }, asB);
      await pets(tB.access_token, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "Globo", species: "fish" }) });
      const aList = (await (await pets(tA.access_token)).json()) as { items: Array<{ name: string }> };
      expect(aList.items.map((p) => p.name)).not.toContain("Globo");
      expect(aList.items.map((p) => p.name)).toContain("Rex");
      const clientB: oauth.Client = { client_id: globexClient.client_id };
      const intro = await oauth.processIntrospectionResponse(asB, clientB, await oauth.introspectionRequest(asB, clientB, oauth.ClientSecretBasic(globexClient.client_secret!), tA.access_token, cf()));
      expect(intro.active).toBe(false);
      const clientA: oauth.Client = { client_id: secretClient.client_id };
      const introA = await oauth.processIntrospectionResponse(asA, clientA, await oauth.introspectionRequest(asA, clientA, oauth.ClientSecretBasic(secretClient.client_secret), tA.access_token, cf()));
      expect(introA).toMatchObject({ active: true, client_id: secretClient.client_id, scope: "pets:read pets:write", token_type: "Bearer" });
      // Signed by acme's key but claiming globex's issuer: learn-ps refuses it (in-process only: the key).
      if (!inProcess(engine)) return;
      const signer = await Authz.of(authz.ctx).keys.signer("acme");
      const now = Math.floor(Date.now() / 1000);
      const forged = await signer.signJwt("at+jwt", {
        client_id: "x", scope: "pets:read", tenant: "globex", jti: "y",
        iss: `${base}/t/globex`, sub: "x", aud: "learn-ps", iat: now, exp: now + 300,
      });
      expect((await pets(forged)).status).toBe(401);
    });

    test("a revoked client_credentials token introspects inactive", async () => {
      const t = await grant(oauth.ClientSecretBasic(secretClient.client_secret), secretClient.client_id);
      const client: oauth.Client = { client_id: secretClient.client_id };
      await oauth.processRevocationResponse(await oauth.revocationRequest(asA, client, oauth.ClientSecretBasic(secretClient.client_secret), t.access_token, cf()));
      const intro = await oauth.processIntrospectionResponse(asA, client, await oauth.introspectionRequest(asA, client, oauth.ClientSecretBasic(secretClient.client_secret), t.access_token, cf()));
      expect(intro.active).toBe(false);
    });
  });

  describe("refusals with OAuth error codes", () => {
    const token = (body: Record<string, string>, headers: Record<string, string> = {}) => authz.fetch(`${base}/t/acme/token`, form(body, headers));
    const errorOf = async (r: Response) => ((await r.json()) as { error: string }).error;

    test("wrong secret and unknown client are invalid_client (401, Basic challenge)", async () => {
      const r = await token({ grant_type: "client_credentials" }, { authorization: basic(secretClient.client_id, "wrong") });
      expect(r.status).toBe(401);
      expect(r.headers.get("www-authenticate")).toContain("Basic");
      expect(await errorOf(r)).toBe("invalid_client");
      expect(await errorOf(await token({ grant_type: "client_credentials", client_id: "ghost", client_secret: "x" }))).toBe("invalid_client");
      // A secret sent by the wrong method.
      expect(await errorOf(await token({ grant_type: "client_credentials", client_id: secretClient.client_id, client_secret: secretClient.client_secret }))).toBe("invalid_client");
    });

    test("unsupported_grant_type, unauthorized_client, invalid_scope, invalid_request", async () => {
      const auth = { authorization: basic(secretClient.client_id, secretClient.client_secret) };
      expect(await errorOf(await token({ grant_type: "password", username: "a", password: "b" }, auth))).toBe("unsupported_grant_type");
      expect(await errorOf(await token({ grant_type: "authorization_code", code: "x", code_verifier: "y" }, auth))).toBe("unauthorized_client");
      expect(await errorOf(await token({ grant_type: "client_credentials", scope: "identity:admin" }, auth))).toBe("invalid_scope");
      expect(await errorOf(await token({ grant_type: "client_credentials", scope: "openid" }, auth))).toBe("invalid_scope");
      expect(await errorOf(await token({}, auth))).toBe("invalid_request");
    });

    test("malformed bodies, headers and JWTs are 400/401 OAuth errors, never 5xx", async () => {
      const cases: RequestInit[] = [
        { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ grant_type: "client_credentials" }) },
        { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "grant_type=client_credentials&grant_type=client_credentials" },
        { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "%E0%A4%A=&&&==" },
        { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "x".repeat(20_000) + "=1" },
        { method: "POST" },
        form({ grant_type: "client_credentials" }, { authorization: "Basic !!!notbase64" }),
        form({ grant_type: "client_credentials" }, { authorization: `Basic ${btoa("no-colon")}` }),
        form({ grant_type: "client_credentials" }, { authorization: `Basic ${btoa("%zz:%zz")}` }),
        form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: "not.a.jwt" }),
        form({ grant_type: "client_credentials", client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion: "e30.e30.e30" }),
        form({ grant_type: "client_credentials", client_assertion_type: "urn:x", client_assertion: "a.b.c" }),
        form({ grant_type: "client_credentials", client_id: secretClient.client_id }, { authorization: basic(secretClient.client_id, secretClient.client_secret), dpop: "garbage" }),
        form({ grant_type: "client_credentials", client_id: secretClient.client_id }, { authorization: basic(secretClient.client_id, secretClient.client_secret), dpop: "e30.e30.e30" }),
      ];
      for (const init of cases) {
        const r = await authz.fetch(`${base}/t/acme/token`, init);
        expect([400, 401]).toContain(r.status);
        const body = (await r.json()) as { error: string };
        expect(typeof body.error).toBe("string");
      }
      for (const path of ["introspect", "revoke"]) {
        const r = await authz.fetch(`${base}/t/acme/${path}`, form({ token: "e30.e30.e30" }, { authorization: basic(secretClient.client_id, secretClient.client_secret) }));
        expect(r.status).toBe(200);
      }
      const ui = await authz.fetch(`${base}/t/acme/userinfo`, { headers: { authorization: "Bearer e30.e30.e30" } });
      expect(ui.status).toBe(401);
      expect(((await ui.json()) as { error: string }).error).toBe("invalid_token");
    });
  });

  describe("the token endpoint as a fast route (dispatched by the pipeline, not the router)", () => {
    test("same answers and headers as any route, its own metrics label; bad path encoding is a 400", async () => {
      const r = await authz.fetch(`${base}/t/acme/token`, form({ grant_type: "client_credentials" }, { authorization: basic(secretClient.client_id, secretClient.client_secret) }));
      expect(r.status).toBe(200);
      for (const h of ["x-content-type-options", "strict-transport-security", "content-security-policy", "x-request-id"]) expect(r.headers.get(h)).not.toBeNull();
      expect(r.headers.get("cache-control")).toBe("no-store");
      const metrics = await (await authz.admin("/admin/v1/metrics")).text();
      expect(metrics).toMatch(/route="\/t\/:tenant\/token",status="200"/);
      const bad = await authz.fetch(`${base}/t/%E0%A4%A/token`, form({ grant_type: "client_credentials" }));
      expect(bad.status).toBe(400);
      const unknown = await authz.fetch(`${base}/t/no-such-tenant/token`, form({ grant_type: "client_credentials" }));
      expect(unknown.status).toBe(404);
    });

    test("a fast route may not take over /service/ or /browser/ paths", async () => {
      const { publicHandler } = await import("../../src/service/http.ts");
      const handle = async () => new Response(null);
      for (const r of [
        { method: "GET" as const, pattern: /^\/service\/api\/v1\/x$/, route: "/service/api/v1/x", handle },
        { method: "POST" as const, pattern: /^\/.*$/, route: "/anything", handle },
      ]) {
        expect(() => publicHandler({ fastRoutes: [r], corsOrigins: [] } as never, () => undefined)).toThrow(/may not serve/);
      }
    });
  });
}
