/**
 * Test support for identity-authz: starts the real service over HTTPS in a temp
 * dir with its admin API verifying its own tokens (issuer `{url}/t/{tenant}`), and
 * a scripted stand-in for identity-idp: a TLS server with its own ES256 key that
 * answers `/t/{T}/login` by checking the signed login challenge against authz's
 * JWKS and redirecting back with a signed login verifier. It also hosts client
 * JWKS documents for private_key_jwt `jwks_uri` tests.
 */
import { createServer } from "node:net";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { createRemoteJWKSet, customFetch, exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK, type JWTPayload } from "jose";
import { throwawayTls } from "../../support/tls.ts";
import { identityAuthz } from "../../../apps/identity-authz/service.ts";
import { startTestService, tempDir, type TestService } from "../../support/service.ts";
import type { TestEngine } from "../../support/engine.ts";
import type { ServiceConfig } from "../../../src/service/config.ts";

/**
 * A loopback port that is free now, for services whose URLs must be known before they
 * start. Drawn at random below the kernel's ephemeral range (32768+), where port-0
 * servers of other tests land, so two allocations rarely meet.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error("no free loopback port found");
}

export interface LoginScript {
  sub?: string;
  error?: string;
  claims?: Record<string, unknown>;
  amr?: string[];
  acr?: string;
  auth_time?: number;
  granted_scope?: string;
  /** Lets a test alter the verifier just before it is signed. */
  tamper?: (claims: JWTPayload) => void;
}

export interface TestIdp {
  url: string;
  caPem: string;
  caFile: string;
  /** What the next login at `/t/{T}/login` answers. */
  nextLogin: LoginScript;
  /** Challenges the idp received (verified). */
  challenges: JWTPayload[];
  /** Logout requests the idp received from authz (verified). */
  logoutRequests: JWTPayload[];
  /** Signs a login verifier with the idp key (for hand-made callbacks). */
  signVerifier(claims: JWTPayload, opts?: { key?: "idp" | "foreign"; typ?: string }): Promise<string>;
  /** Publishes a client JWKS at `{url}/clients/{name}/jwks`. */
  hostJwks(name: string, keys: JWK[]): string;
  /** Publishes a JSON document at `{url}/docs/{name}` (a sector_identifier_uri, for instance). */
  hostJson(name: string, doc: unknown): string;
  stop(): Promise<void>;
}

export async function startTestIdp(dir: string, authzUrl: () => string, authzCa: () => string): Promise<TestIdp> {
  const tlsId = await throwawayTls("test-idp");
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const foreign = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "idp-1", alg: "ES256", use: "sig" };
  const hosted = new Map<string, JWK[]>();
  const docs = new Map<string, unknown>();
  const authzSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
  const caPem = tlsId.caPem;
  mkdirSync(dir, { recursive: true });
  const caFile = join(dir, "test-idp-ca.pem");
  writeFileSync(caFile, caPem);

  const idp: TestIdp = {
    url: "",
    caPem,
    caFile,
    nextLogin: { sub: "user-1" },
    challenges: [],
    logoutRequests: [],
    async signVerifier(claims, opts = {}) {
      return new SignJWT({ jti: crypto.randomUUID(), ...claims })
        .setProtectedHeader({ alg: "ES256", kid: "idp-1", typ: opts.typ ?? "login-verifier+jwt" })
        .setIssuer(idp.url)
        .setIssuedAt()
        .setExpirationTime("2m")
        .sign(opts.key === "foreign" ? foreign.privateKey : privateKey);
    },
    hostJwks(name, keys) {
      hosted.set(name, keys);
      return `${idp.url}/clients/${name}/jwks`;
    },
    hostJson(name, doc) {
      docs.set(name, doc);
      return `${idp.url}/docs/${name}`;
    },
    async stop() {
      await server.stop(true);
    },
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: tlsId.serve,
    async fetch(req) {
      const url = new URL(req.url);
      let m = url.pathname.match(/^\/t\/([a-z0-9-]+)\/jwks$/);
      if (m) return Response.json({ keys: [jwk] });
      m = url.pathname.match(/^\/clients\/([A-Za-z0-9_-]+)\/jwks$/);
      if (m) return Response.json({ keys: hosted.get(m[1]!) ?? [] });
      m = url.pathname.match(/^\/docs\/([A-Za-z0-9_-]+)$/);
      if (m) return docs.has(m[1]!) ? Response.json(docs.get(m[1]!)) : new Response("not found", { status: 404 });
      const authzKeys = (issuer: string) => {
        let set = authzSets.get(issuer);
        if (!set) {
          const authzCaPem = authzCa();
          set = createRemoteJWKSet(new URL(`${issuer}/jwks`), { [customFetch]: (u, init) => fetch(u, { ...init, tls: { ca: authzCaPem } } as RequestInit) });
          authzSets.set(issuer, set);
        }
        return set;
      };
      m = url.pathname.match(/^\/t\/([a-z0-9-]+)\/logout\/continue$/);
      if (m) {
        const issuer = `${authzUrl()}/t/${m[1]!}`;
        try {
          const { payload } = await jwtVerify(url.searchParams.get("logout_request") ?? "", authzKeys(issuer), { issuer, audience: "identity-idp", typ: "logout-request+jwt" });
          idp.logoutRequests.push(payload);
          const back = payload.post_logout_redirect_uri;
          return typeof back === "string" ? new Response(null, { status: 303, headers: { location: back } }) : new Response("signed out");
        } catch (e) {
          return new Response(`bad logout request: ${(e as Error).message}`, { status: 400 });
        }
      }
      m = url.pathname.match(/^\/t\/([a-z0-9-]+)\/login$/);
      if (m) {
        const tenant = m[1]!;
        const issuer = `${authzUrl()}/t/${tenant}`;
        const set = authzKeys(issuer);
        let challenge: JWTPayload;
        try {
          ({ payload: challenge } = await jwtVerify(url.searchParams.get("login_challenge") ?? "", set, { issuer, audience: "identity-idp", typ: "login-challenge+jwt" }));
        } catch (e) {
          return new Response(`bad challenge: ${(e as Error).message}`, { status: 400 });
        }
        idp.challenges.push(challenge);
        const s = idp.nextLogin;
        const claims: JWTPayload = { aud: issuer, challenge: challenge.jti };
        if (s.error) claims.error = s.error;
        else {
          claims.sub = s.sub ?? "user-1";
          claims.auth_time = s.auth_time ?? Math.floor(Date.now() / 1000);
          claims.amr = s.amr ?? ["pwd", "otp"];
          claims.acr = s.acr ?? "urn:cryptoutil:acr:mfa";
          claims.granted_scope = s.granted_scope ?? String(challenge.scope ?? "");
          claims.claims = s.claims ?? { name: "Ada Lovelace", email: "ada@example.test", email_verified: true };
        }
        s.tamper?.(claims);
        const verifier = await idp.signVerifier(claims);
        return new Response(null, { status: 303, headers: { location: `${issuer}/login/callback?login_verifier=${verifier}` } });
      }
      return new Response("not found", { status: 404 });
    },
  });
  idp.url = `https://127.0.0.1:${server.port}`;
  return idp;
}

export interface TestAuthz extends TestService {
  idp: TestIdp;
  root: string;
  /** Every CA a test client needs: authz's and the test idp's. */
  caAll: string;
  /** An access token of the bootstrap admin (root tenant, identity:admin). */
  adminBearer(): Promise<string>;
  /** Calls the admin API with the bootstrap admin's token. */
  adminApi(method: string, path: string, body?: unknown): Promise<Response>;
  createTenant(id: string): Promise<void>;
  createClient(tenant: string, body: Record<string, unknown>): Promise<{ client_id: string; client_secret: string | null } & Record<string, unknown>>;
  /** fetch trusting authz's CA. */
  fetch(url: string, init?: RequestInit): Promise<Response>;
}

/** `root` reuses the data of an earlier (stopped) instance: a restart; `engine` holds the database. */
export async function startAuthz(opts: { overrides?: (c: ServiceConfig) => void; root?: string; engine?: TestEngine } = {}): Promise<TestAuthz> {
  const root = opts.root ?? tempDir("cryptoutil-authz-");
  const port = await freePort();
  const base = `https://127.0.0.1:${port}`;
  let svcCa = "";
  const idp = await startTestIdp(root, () => base, () => svcCa);
  const dataDir = join(root, "identity-authz");
  const svc = await startTestService(identityAuthz, {
    root,
    engine: opts.engine,
    overrides: (c) => {
      c.server.port = port;
      c.auth.issuer = `${base}/t/{tenant}`;
      c.auth.jwks_url = `${base}/t/{tenant}/jwks`;
      c.auth.ca_file = join(dataDir, "trust-bundle.pem");
      c.auth.audience = "identity-authz";
      c.log.level = "warn";
      c.security.rate_limit_rps = 100_000;
      c.security.rate_limit_burst = 100_000;
      // The tests serve clients' documents (jwks_uri, sector_identifier_uri) on loopback.
      (c as { app?: unknown }).app = { idp_url: idp.url, ca_file: idp.caFile, client_urls_allow_private_addresses: true };
      opts.overrides?.(c);
    },
  });
  svcCa = svc.ca;
  const f = (url: string, init: RequestInit = {}) => fetch(url, { ...init, tls: { ca: svc.ca } } as RequestInit);
  let cached: { token: string; exp: number } | undefined;
  const t: TestAuthz = {
    ...svc,
    idp,
    root,
    caAll: svc.ca + idp.caPem,
    fetch: f,
    async adminBearer() {
      if (cached && cached.exp > Date.now() + 30_000) return cached.token;
      await f(`${base}/t/root/.well-known/openid-configuration`); // waits for the bootstrap
      const secret = readFileSync(join(dataDir, "bootstrap-admin.secret"), "utf8").trim();
      const r = await f(`${base}/t/root/token`, {
        method: "POST",
        headers: { authorization: `Basic ${btoa(`bootstrap-admin:${secret}`)}`, "content-type": "application/x-www-form-urlencoded" },
        body: "grant_type=client_credentials",
      });
      if (r.status !== 200) throw new Error(`admin token: ${r.status} ${await r.text()}`);
      const j = (await r.json()) as { access_token: string; expires_in: number };
      cached = { token: j.access_token, exp: Date.now() + j.expires_in * 1000 };
      return j.access_token;
    },
    async adminApi(method, path, body) {
      const headers: Record<string, string> = { authorization: `Bearer ${await t.adminBearer()}` };
      if (body !== undefined) headers["content-type"] = "application/json";
      return f(`${base}/service/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    },
    async createTenant(id) {
      const r = await t.adminApi("POST", "/tenants", { id });
      if (r.status !== 201) throw new Error(`create tenant: ${r.status} ${await r.text()}`);
    },
    async createClient(tenant, body) {
      const r = await t.adminApi("POST", `/tenants/${tenant}/clients`, body);
      if (r.status !== 201) throw new Error(`create client: ${r.status} ${await r.text()}`);
      return (await r.json()) as never;
    },
    async stop() {
      await svc.stop();
      await idp.stop();
    },
  };
  return t;
}

/** A form POST. */
export const form = (body: Record<string, string>, headers: Record<string, string> = {}): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded", ...headers },
  body: new URLSearchParams(body).toString(),
});

export const basic = (id: string, secret: string) => `Basic ${btoa(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`)}`;

/**
 * The browser from an authorization URL on: follows redirects until one leaves for the client's
 * `redirect` (its callback), or stops at a page (its status and body).
 */
export async function followToClient(start: string, redirect: string, ca: string): Promise<{ callback?: URL; status: number; body: string }> {
  let url = start;
  for (let i = 0; i < 6; i++) {
    const r = await fetch(url, { redirect: "manual", tls: { ca } } as RequestInit);
    const loc = r.headers.get("location");
    if (!loc) return { status: r.status, body: await r.text() };
    await r.body?.cancel();
    if (loc.startsWith(redirect)) return { callback: new URL(loc), status: r.status, body: "" };
    url = loc;
  }
  throw new Error("redirect loop");
}
