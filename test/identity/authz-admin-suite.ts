/**
 * identity-authz's admin API and key management over real HTTPS: the bootstrap
 * admin, tenants and clients (secrets shown once, stored hashed), scope and tenant
 * boundaries, signing-key rotation with retired keys still published, JWKS caching
 * headers, data at rest, and the app config check at start.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { createRemoteJWKSet, customFetch, decodeProtectedHeader, jwtVerify } from "jose";
import { identityAuthz } from "../../apps/identity-authz/service.ts";
import { Authz } from "../../apps/identity-authz/domain/authz.ts";
import { randomId } from "../../apps/identity-authz/domain/crypto.ts";
import { ClientParams } from "../../schemas/identity-authz.ts";
import * as v from "valibot";
import { startTestService } from "../support/service.ts";
import { basic, form, startAuthz, type TestAuthz } from "./support/authz.ts";
import { storedText, type TestEngine } from "../support/engine.ts";

/** Registers the identity-authz admin tests on services whose databases are on `engine`. */
export function authzAdminSuite(engine: TestEngine): void {
  let authz: TestAuthz;
  let base: string;

  beforeAll(async () => {
    authz = await startAuthz({ engine });
    base = authz.publicUrl;
  });

  afterAll(async () => {
    await authz?.stop();
  });

  async function ccToken(tenant: string, id: string, secret: string, scope?: string): Promise<string> {
    const r = await authz.fetch(`${base}/t/${tenant}/token`, form({ grant_type: "client_credentials", ...(scope ? { scope } : {}) }, { authorization: basic(id, secret) }));
    expect(r.status).toBe(200);
    return ((await r.json()) as { access_token: string }).access_token;
  }

  const api = (token: string, method: string, path: string, body?: unknown) =>
    authz.fetch(`${base}/service/api/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  test("the service keeps its state on the engine under test", () => {
    expect(authz.database.mode).toBe(engine.kind === "postgres" ? "postgres" : "file");
  });

  describe("bootstrap", () => {
    test("the first start creates tenant root and bootstrap-admin, secret in a 0600 file and never logged", async () => {
      await authz.adminBearer();
      const file = join(authz.dataDir, "bootstrap-admin.secret");
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const secret = readFileSync(file, "utf8").trim();
      expect(secret.length).toBeGreaterThanOrEqual(43);
      expect(authz.logs.join("\n")).not.toContain(secret);
      expect(authz.logs.some((l) => l.includes("bootstrap-admin.secret"))).toBe(true);
      const r = await authz.adminApi("GET", "/tenants");
      expect(((await r.json()) as { items: Array<{ id: string }> }).items.map((t) => t.id)).toContain("root");
    });
  });

  describe("tenants and clients", () => {
    test("generated client ids are always valid in the admin API's paths", () => {
      // base64url ids started with '-' or '_' about once in 32, which the path schema refuses.
      for (let i = 0; i < 10_000; i++) {
        const id = randomId(16);
        expect(v.safeParse(ClientParams, { tenant: "t", client_id: id }).success).toBe(true);
      }
    });

    test("a client secret is shown once, stored hashed, and rotation retires the old one", async () => {
      await authz.createTenant("shop");
      const c = await authz.createClient("shop", { client_name: "svc", grant_types: ["client_credentials"], scopes: ["a", "b"], audiences: ["learn-ps"] });
      expect(c.client_secret).toBeTruthy();
      expect(c.client_id).toMatch(/^[0-9a-f]{32}$/);
      const got = (await (await authz.adminApi("GET", `/tenants/shop/clients/${c.client_id}`)).json()) as Record<string, unknown>;
      expect(got.client_secret).toBeUndefined();
      expect(got.secretHash).toBeUndefined();
      expect(got.token_endpoint_auth_method).toBe("client_secret_basic");
      await ccToken("shop", c.client_id, c.client_secret!);
      const rotated = (await (await authz.adminApi("POST", `/tenants/shop/clients/${c.client_id}/secret`)).json()) as { client_secret: string };
      expect(rotated.client_secret).not.toBe(c.client_secret);
      const old = await authz.fetch(`${base}/t/shop/token`, form({ grant_type: "client_credentials" }, { authorization: basic(c.client_id, c.client_secret!) }));
      expect(old.status).toBe(401);
      await ccToken("shop", c.client_id, rotated.client_secret);
      const db = await storedText(authz.database);
      expect(db).not.toContain(rotated.client_secret);
      expect(db).not.toContain(c.client_secret!);
      expect(db).not.toContain('"d":"'); // private JWKs are barrier-encrypted
    });

    test("validation: bad redirect URIs, private_key_jwt without keys, duplicate ids, unknown fields", async () => {
      const bad = [
        { client_name: "x", grant_types: ["authorization_code"], redirect_uris: ["http://evil.example/cb"] },
        { client_name: "x", grant_types: ["authorization_code"], redirect_uris: ["https://a.example/cb#frag"] },
        { client_name: "x", grant_types: ["authorization_code"] },
        { client_name: "x", token_endpoint_auth_method: "private_key_jwt" },
        { client_name: "x", token_endpoint_auth_method: "none" },
        { client_name: "x", surprise: true },
      ];
      for (const b of bad) {
        const r = await authz.adminApi("POST", "/tenants/shop/clients", b);
        expect(r.status).toBe(400);
      }
      await authz.createClient("shop", { client_id: "dup", client_name: "dup" });
      expect((await authz.adminApi("POST", "/tenants/shop/clients", { client_id: "dup", client_name: "dup" })).status).toBe(409);
      expect((await authz.adminApi("POST", "/tenants", { id: "Bad Tenant" })).status).toBe(400);
      expect((await authz.adminApi("GET", "/tenants/shop/clients/ghost")).status).toBe(404);
      expect((await authz.adminApi("PATCH", "/tenants/shop/clients/dup", { require_par: true })).status).toBe(200);
      expect((await authz.adminApi("DELETE", "/tenants/shop/clients/dup")).status).toBe(204);
    });

    test("scope and tenant boundaries of the admin API", async () => {
      await authz.createTenant("other");
      const tenantAdmin = await authz.createClient("shop", { client_name: "shop-admin", grant_types: ["client_credentials"], scopes: ["identity:admin", "x"], audiences: ["identity-authz"] });
      const adminTok = await ccToken("shop", tenantAdmin.client_id, tenantAdmin.client_secret!, "identity:admin");
      expect((await api(adminTok, "GET", "/tenants/shop/clients")).status).toBe(200);
      expect((await api(adminTok, "GET", "/tenants/other/clients")).status).toBe(403);
      expect((await api(adminTok, "POST", "/tenants", { id: "mine" })).status).toBe(403);
      const noScope = await ccToken("shop", tenantAdmin.client_id, tenantAdmin.client_secret!, "x");
      expect((await api(noScope, "GET", "/tenants/shop/clients")).status).toBe(403);
      expect((await authz.fetch(`${base}/service/api/v1/tenants`)).status).toBe(401);
    });
  });

  describe("signing keys", () => {
    test("JWKS has ETag and Cache-Control and answers If-None-Match with 304", async () => {
      const r = await authz.fetch(`${base}/t/root/jwks`);
      expect(r.status).toBe(200);
      expect(r.headers.get("cache-control")).toContain("max-age=");
      const etag = r.headers.get("etag")!;
      expect(etag).toBeTruthy();
      const jwks = (await r.json()) as { keys: Array<Record<string, unknown>> };
      for (const k of jwks.keys) expect(k.d).toBeUndefined();
      const again = await authz.fetch(`${base}/t/root/jwks`, { headers: { "if-none-match": etag } });
      expect(again.status).toBe(304);
    });

    test("rotation: the new key signs, the retired key stays published and its tokens still verify", async () => {
      const c = await authz.createClient("shop", { client_name: "rot", grant_types: ["client_credentials"], scopes: ["a"], audiences: ["learn-ps"] });
      const before = await ccToken("shop", c.client_id, c.client_secret!);
      const oldKid = decodeProtectedHeader(before).kid;
      const r = await authz.adminApi("POST", "/tenants/shop/keys/rotate", { alg: "ES256" });
      expect(r.status).toBe(200);
      const keys = ((await r.json()) as { items: Array<{ kid: string; status: string; publish_until: number | null }> }).items;
      expect(keys.find((k) => k.kid === oldKid)).toMatchObject({ status: "retired" });
      expect(keys.find((k) => k.kid === oldKid)!.publish_until!).toBeGreaterThan(Date.now() / 1000 + 86_000);
      const after = await ccToken("shop", c.client_id, c.client_secret!);
      expect(decodeProtectedHeader(after).kid).not.toBe(oldKid);
      const jwks = createRemoteJWKSet(new URL(`${base}/t/shop/jwks`), { [customFetch]: (u, i) => fetch(u, { ...i, tls: { ca: authz.ca } } as RequestInit) });
      for (const t of [before, after]) await jwtVerify(t, jwks, { issuer: `${base}/t/shop`, audience: "learn-ps" });
      const pub = (await (await authz.fetch(`${base}/t/shop/jwks`)).json()) as { keys: Array<{ kid: string }> };
      expect(pub.keys[0]!.kid).toBe(decodeProtectedHeader(after).kid!);
    });
  });

  describe("API document", () => {
    test("the OpenAPI document lists the admin API and the protocol endpoints", async () => {
      const r = await authz.fetch(`${base}/docs/openapi.json`);
      expect(r.status).toBe(200);
      const doc = (await r.json()) as { paths: Record<string, unknown> };
      expect(Object.keys(doc.paths)).toContain("/service/api/v1/tenants/{tenant}/clients");
      expect(Object.keys(doc.paths)).toContain("/t/{tenant}/token");
      expect(Object.keys(doc.paths)).toContain("/t/{tenant}/device_authorization");
    });
  });

  describe("key schedule", () => {
    test("due keys are rotated and retired keys past their publication are pruned from the JWKS", async () => {
      const a = Authz.of(authz.ctx);
      const current = (await a.keys.list("shop")).filter((k) => k.status === "current").map((k) => k.kid);
      await a.keys.rotateDue(0); // every key is due
      const after = await a.keys.list("shop");
      for (const kid of current) expect(after.find((k) => k.kid === kid)?.status).toBe("retired");
      expect(after.filter((k) => k.status === "current").length).toBe(current.length);
      await authz.ctx.db.updateTable("signing_keys").set({ publish_until: 1 }).where("tenant", "=", "shop").where("status", "=", "retired").execute();
      await a.keys.rotateDue(10 * 365 * 86_400); // nothing due, but pruning runs
      const left = await a.keys.list("shop");
      expect(left.every((k) => k.status === "current")).toBe(true);
      const pub = (await (await authz.fetch(`${base}/t/shop/jwks`)).json()) as { keys: Array<{ kid: string }> };
      expect(pub.keys.map((k) => k.kid).sort()).toEqual(left.map((k) => k.kid).sort());
    });
  });

  describe("restart", () => {
    test("keys, clients and the bootstrap survive a restart; the bootstrap is not repeated", async () => {
      const first = await startAuthz({ engine });
      await first.createTenant("keep");
      const c = await first.createClient("keep", { client_name: "k", grant_types: ["client_credentials"], scopes: ["a"], audiences: ["learn-ps"] });
      const kids = ((await (await first.fetch(`${first.publicUrl}/t/keep/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
      const secret = readFileSync(join(first.dataDir, "bootstrap-admin.secret"), "utf8");
      await first.stop();
      const again = await startAuthz({ engine, root: first.root });
      try {
        const after = ((await (await again.fetch(`${again.publicUrl}/t/keep/jwks`)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
        expect(after).toEqual(kids);
        expect(readFileSync(join(again.dataDir, "bootstrap-admin.secret"), "utf8")).toBe(secret);
        expect(again.logs.some((l) => l.includes("bootstrap admin"))).toBe(false);
        const r = await again.fetch(`${again.publicUrl}/t/keep/token`, form({ grant_type: "client_credentials" }, { authorization: basic(c.client_id, c.client_secret!) }));
        expect(r.status).toBe(200);
        expect(kids).toContain(decodeProtectedHeader(((await r.json()) as { access_token: string }).access_token).kid!);
        expect((await again.adminApi("GET", "/tenants/keep/clients")).status).toBe(200);
      } finally {
        await again.stop();
      }
    });
  });

  describe("config", () => {
    test("a bad app setting stops the start with the key named", async () => {
      let err: unknown;
      try {
        const s = await startTestService(identityAuthz, { engine, overrides: (c) => ((c as { app?: unknown }).app = { idp_url: "not a url" }) });
        await s.stop();
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string }).code).toBe("config_invalid");
      expect((err as Error).message).toContain("app.idp_url");
    });
  });
}
