/**
 * identity-rs, the reference resource server, against a real identity-authz over HTTPS: the
 * profile and notes API with oauth4webapi's tokens, notes kept per subject, opaque tokens sent
 * to introspection with identity-rs's own client, and fuzzed bodies, Authorization and DPoP
 * headers (no 5xx).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as oauth from "oauth4webapi";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { identityRs } from "../../apps/identity-rs/service.ts";
import { accessTokenHash } from "../../src/auth/dpop.ts";
import { fuzz, mutateJson, mutateText, rng } from "../support/fuzz.ts";
import { quiet, startTestService, trustIdentity, type TestService } from "../support/service.ts";
import { startAuthz, type TestAuthz } from "./support/authz.ts";

const TENANT = "acme";
const API = "/service/api/v1";
let authz: TestAuthz;
let rs: TestService;
let as: oauth.AuthorizationServer;
const clients: Record<string, { client_id: string; client_secret: string }> = {};

const cf = () => ({ [oauth.customFetch]: (url: string, init: RequestInit) => authz.fetch(url, init) });

async function token(client: string, scope?: string): Promise<string> {
  const c: oauth.Client = { client_id: clients[client]!.client_id };
  const res = await oauth.clientCredentialsGrantRequest(as, c, oauth.ClientSecretBasic(clients[client]!.client_secret), { resource: "identity-rs", ...(scope ? { scope } : {}) }, cf());
  return (await oauth.processClientCredentialsResponse(as, c, res)).access_token;
}

const call = (path: string, tok: string, init: RequestInit = {}) =>
  rs.call(API + path, { ...init, headers: { authorization: `Bearer ${tok}`, ...(init.body ? { "content-type": "application/json" } : {}), ...(init.headers as Record<string, string>) } });

beforeAll(async () => {
  authz = await startAuthz();
  await authz.createTenant(TENANT);
  const common = { audiences: ["identity-rs"], scopes: ["notes:read", "notes:write"] };
  clients.alice = (await authz.createClient(TENANT, { client_id: "alice-app", client_name: "alice", ...common })) as typeof clients[string];
  clients.bob = (await authz.createClient(TENANT, { client_id: "bob-app", client_name: "bob", ...common })) as typeof clients[string];
  clients.opaque = (await authz.createClient(TENANT, { client_id: "opaque-app", client_name: "opaque", ...common, access_token_format: "opaque" })) as typeof clients[string];
  clients.introspector = (await authz.createClient(TENANT, { client_id: "rs-introspection", client_name: "identity-rs", audiences: [], scopes: [] })) as typeof clients[string];
  const secretFile = join(authz.root, "rs-introspection.secret");
  writeFileSync(secretFile, clients.introspector!.client_secret + "\n", { mode: 0o600 });
  rs = await startTestService(identityRs, {
    root: authz.root,
    overrides: (c) => {
      quiet(c);
      trustIdentity(c, authz.publicUrl, join(authz.dataDir, "trust-bundle.pem"), "identity-rs");
      // No reuse of introspection answers here, so a revocation shows at once.
      (c as { app?: unknown }).app = { introspection: { endpoint: `${authz.publicUrl}/t/${TENANT}/introspect`, client_id: "rs-introspection", client_secret_file: secretFile, cache_s: 0 } };
    },
  });
  const iss = new URL(`${authz.publicUrl}/t/${TENANT}`);
  as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, cf()));
});

afterAll(async () => {
  await rs?.stop();
  await authz?.stop();
});

describe("the example API", () => {
  test("profile echoes the token's tenant, subject, client and scopes", async () => {
    const res = await call("/profile", await token("alice", "notes:read"));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ tenant: TENANT, subject: "alice-app", client_id: "alice-app", scopes: ["notes:read"], binding: "none" });
  });

  test("notes: create, get, list, update, delete; another subject sees none of them", async () => {
    const alice = await token("alice");
    const made = await call("/notes", alice, { method: "POST", body: JSON.stringify({ title: "groceries", body: "milk" }) });
    expect(made.status).toBe(201);
    const note = (await made.json()) as { id: string; title: string; body: string };
    expect(note).toMatchObject({ title: "groceries", body: "milk" });
    expect(((await (await call(`/notes/${note.id}`, alice)).json()) as { body: string }).body).toBe("milk");
    const patched = await call(`/notes/${note.id}`, alice, { method: "PATCH", body: JSON.stringify({ body: "milk, eggs" }) });
    expect(((await patched.json()) as { body: string; title: string })).toMatchObject({ title: "groceries", body: "milk, eggs" });
    const list = (await (await call("/notes", alice)).json()) as { items: Array<{ id: string }> };
    expect(list.items.map((n) => n.id)).toContain(note.id);

    const bob = await token("bob");
    expect((await call(`/notes/${note.id}`, bob)).status).toBe(404);
    expect(((await (await call("/notes", bob)).json()) as { items: unknown[] }).items).toEqual([]);
    expect((await call(`/notes/${note.id}`, bob, { method: "DELETE" })).status).toBe(404);

    expect((await call(`/notes/${note.id}`, alice, { method: "DELETE" })).status).toBe(204);
    expect((await call(`/notes/${note.id}`, alice)).status).toBe(404);
  });

  test("the body is stored barrier-encrypted, never as plaintext", async () => {
    const alice = await token("alice");
    await call("/notes", alice, { method: "POST", body: JSON.stringify({ title: "secret", body: "the plaintext marker 7f3a" }) });
    const rows = await rs.ctx.db.selectFrom("notes").select("body").execute();
    for (const r of rows) expect(Buffer.from(r.body as Uint8Array).toString("latin1")).not.toContain("plaintext marker");
  });

  test("scopes are checked: a read-only token cannot write", async () => {
    const res = await call("/notes", await token("alice", "notes:read"), { method: "POST", body: JSON.stringify({ title: "x" }) });
    expect(res.status).toBe(403);
  });
});

describe("opaque tokens go to introspection", () => {
  test("an opaque token the issuer does not know is refused (inactive)", async () => {
    const res = await call("/profile", "not-a-jwt-but-an-opaque-token");
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string; message: string } }).error.message).toContain("not active");
  });

  test("an opaque access token works through introspection, with its scopes; revoked, it stops at once", async () => {
    const opaque = await token("opaque", "notes:read");
    expect(opaque.split(".")).toHaveLength(1);
    const res = await call("/profile", opaque);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ tenant: TENANT, subject: "opaque-app", client_id: "opaque-app", scopes: ["notes:read"], binding: "none" });
    expect((await call("/notes", opaque, { method: "POST", body: JSON.stringify({ title: "x" }) })).status).toBe(403);
    const c: oauth.Client = { client_id: "opaque-app" };
    const revoked = await oauth.revocationRequest(as, c, oauth.ClientSecretBasic(clients.opaque!.client_secret), opaque, cf());
    await oauth.processRevocationResponse(revoked);
    expect((await call("/profile", opaque)).status).toBe(401);
  });

  test("the introspection call is made with identity-rs's own client: a wrong secret makes it 503, not 401", async () => {
    const other = await startTestService(identityRs, {
      root: authz.root,
      overrides: (c) => {
        quiet(c);
        c.data.dir = join(authz.root, "identity-rs-wrong");
        trustIdentity(c, authz.publicUrl, join(authz.dataDir, "trust-bundle.pem"), "identity-rs");
        const bad = join(authz.root, "wrong.secret");
        writeFileSync(bad, "wrong\n", { mode: 0o600 });
        (c as { app?: unknown }).app = { introspection: { endpoint: `${authz.publicUrl}/t/${TENANT}/introspect`, client_id: "rs-introspection", client_secret_file: bad } };
      },
    });
    try {
      const res = await other.call(`${API}/profile`, { headers: { authorization: "Bearer opaque-token-value" } });
      expect(res.status).toBe(503);
      // JWTs do not depend on introspection.
      expect((await other.call(`${API}/profile`, { headers: { authorization: `Bearer ${await token("alice")}` } })).status).toBe(200);
    } finally {
      await other.stop();
    }
  });
});

describe("fuzz (no 5xx)", () => {
  test("500 mutated note bodies", async () => {
    const alice = await token("alice");
    const r = rng(0x1d_0001);
    const cases = Array.from({ length: 500 }, () => mutateJson({ title: "t", body: "b" }, r));
    const { statuses } = await fuzz(cases, (body) => call("/notes", alice, { method: "POST", body }), { describe: (b) => b, concurrency: 8, maxMs: 120_000 });
    expect([...statuses.keys()].some((s) => s >= 400 && s < 500)).toBe(true);
  }, 300_000);

  test("mutated Authorization and DPoP headers are refused with 4xx", async () => {
    const keys = await generateKeyPair("ES256");
    const alice = await token("alice");
    const url = `${rs.publicUrl}${API}/profile`;
    const good = await new SignJWT({ htm: "GET", htu: url, jti: crypto.randomUUID(), iat: Math.floor(Date.now() / 1000), ath: accessTokenHash(alice) })
      .setProtectedHeader({ alg: "ES256", typ: "dpop+jwt", jwk: await exportJWK(keys.publicKey) })
      .sign(keys.privateKey);
    const r = rng(0x1d_0002);
    const mutate = (x: string) => mutateText(x, r);
    const cases = Array.from({ length: 400 }, (_, i) =>
      i % 2 ? { authorization: `DPoP ${alice}`, dpop: mutate(good) } : { authorization: mutate(`DPoP ${alice}`), dpop: good },
    );
    const { statuses } = await fuzz(cases, (h) => rs.call(`${API}/profile`, { headers: h }), { describe: (h) => JSON.stringify(h), concurrency: 8, maxMs: 120_000 });
    for (const s of statuses.keys()) expect(s >= 400 && s < 500).toBe(true);
  }, 300_000);
});
