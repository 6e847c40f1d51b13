/**
 * jose-ja's JWK management (generate, import and its checks, get, list, delete, restore,
 * rotate, rotation schedule), tenant isolation, and the audit log: what it records, its
 * filters and pages, and that neither it nor the database holds plaintext or key material.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair } from "jose";
import { b64u, startJose, type Jose } from "./harness.ts";

let j: Jose;
beforeAll(async () => {
  j = await startJose();
});
afterAll(async () => {
  await j?.stop();
});

const PRIVATE = ["d", "p", "q", "dp", "dq", "qi", "k"];

describe("JWK management", () => {
  test("generate, get (public JWK only), list with pages, rotate, rotation schedule, delete and restore", async () => {
    const ids: string[] = [];
    for (const [i, alg] of ["ES256", "EdDSA", "HS256", "A256GCM", "ES384"].entries()) {
      const r = await j.req("POST", "/keys", { name: `mgmt-${i}`, algorithm: alg, tags: ["mgmt"] });
      expect(r.status).toBe(201);
      ids.push(r.body.id);
    }
    const got = await j.req("GET", `/keys/${ids[0]}`);
    expect(got.body).toMatchObject({ id: ids[0], algorithm: "ES256", purpose: "sign", current_version: 1, public_jwk: { kid: `${ids[0]}.v1`, kty: "EC", crv: "P-256", use: "sig" } });
    for (const m of PRIVATE) expect(got.body.public_jwk[m]).toBeUndefined();
    expect((await j.req("GET", `/keys/${ids[2]}`)).body.public_jwk).toBeUndefined(); // HMAC: nothing public
    expect((await j.req("GET", `/keys/${ids[1]}/jwk`)).body).toMatchObject({ kty: "OKP", crv: "Ed25519", alg: "EdDSA" });
    expect((await j.req("GET", `/keys/${ids[2]}/jwk`)).body.error.code).toBe("key_not_asymmetric");

    const seen: string[] = [];
    let token: string | null = null;
    do {
      const page: { body: { items: Array<{ id: string }>; next_page_token: string | null } } = await j.req("GET", `/keys?tag=mgmt&limit=2${token ? `&page_token=${token}` : ""}`);
      expect(page.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.items.map((k) => k.id));
      token = page.body.next_page_token;
    } while (token);
    expect(seen).toEqual(ids);
    expect((await j.req("GET", "/keys?limit=2&page_token=%%%")).status).toBe(400);

    const rot = await j.req("POST", `/keys/${ids[0]}/rotate`);
    expect(rot.body.current_version).toBe(2);
    expect(rot.body.versions.map((v: { kid: string }) => v.kid)).toEqual([`${ids[0]}.v1`, `${ids[0]}.v2`]);
    const sched = await j.req("PUT", `/keys/${ids[0]}/rotation`, { rotation_period_days: 30 });
    expect(sched.body.rotation_period_days).toBe(30);
    expect(Date.parse(sched.body.next_rotation_at) - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect((await j.req("PUT", `/keys/${ids[0]}/rotation`, { rotation_period_days: null })).body.next_rotation_at).toBeNull();
    expect((await j.req("PUT", `/keys/${ids[0]}/rotation`, { rotation_period_days: 0 })).status).toBe(400);

    const del = await j.req("DELETE", `/keys/${ids[4]}?waiting_period_days=7`);
    expect(del.body.status).toBe("pending_deletion");
    expect((await j.req("POST", `/keys/${ids[4]}/sign`, { payload: b64u("x") })).body.error.code).toBe("key_pending_deletion");
    expect((await j.req("DELETE", `/keys/${ids[4]}?waiting_period_days=3`)).status).toBe(400);
    expect((await j.req("POST", `/keys/${ids[4]}/restore`)).body.status).toBe("disabled");
  });

  test("import checks that the JWK fits the algorithm, and import of new versions needs import allowed", async () => {
    const ec = await generateKeyPair("ES256", { extractable: true });
    const ecJwk = await exportJWK(ec.privateKey);
    const p384 = await exportJWK((await generateKeyPair("ES384", { extractable: true })).privateKey);
    const ed = await exportJWK((await generateKeyPair("EdDSA", { extractable: true })).privateKey);
    const bad = async (algorithm: string, jwk: unknown) => {
      const r = await j.req("POST", "/keys/import", { name: `bad-${crypto.randomUUID().slice(0, 8)}`, algorithm, jwk });
      expect([algorithm, r.status]).toEqual([algorithm, 400]);
      return r.body.error.code;
    };
    expect(await bad("ES256", p384)).toBe("validation_failed"); // wrong crv
    expect(await bad("ES256", ed)).toBe("validation_failed"); // wrong kty
    expect(await bad("RS256", ecJwk)).toBe("validation_failed");
    expect(await bad("ES256", { ...ecJwk, alg: "ES384" })).toBe("validation_failed");
    expect(await bad("ES256", { ...ecJwk, use: "enc" })).toBe("validation_failed");
    expect(await bad("ES256", { ...ecJwk, x: ecJwk.y })).toBe("validation_failed"); // not on the curve
    expect(await bad("ES256", { ...ecJwk, d: "!!" })).toBe("validation_failed");
    expect(await bad("HS256", { kty: "oct", k: b64u(new Uint8Array(16)) })).toBe("validation_failed"); // too short
    expect(await bad("A256GCM", { kty: "oct", k: b64u(new Uint8Array(16)) })).toBe("validation_failed");
    expect(await bad("A256GCM", { kty: "oct" })).toBe("validation_failed");
    expect(await bad("ES256", "not a jwk")).toBe("validation_failed");

    // Extra members (key_ops, ext) are dropped; the stored key works.
    const ok = await j.req("POST", "/keys/import", { name: "imp-ok", algorithm: "ES256", jwk: { ...ecJwk, key_ops: ["sign"], ext: true, kid: "mine" } });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ import_allowed: true, current_version: 1 });
    expect((await j.req("POST", "/keys/import", { name: "imp-ok", algorithm: "ES256", jwk: ecJwk })).status).toBe(409);

    // A new version by import becomes current and is published next to v1.
    const next = await exportJWK((await generateKeyPair("ES256", { extractable: true })).privateKey);
    const v2 = await j.req("POST", `/keys/${ok.body.id}/import`, { jwk: next });
    expect(v2.body.current_version).toBe(2);
    expect(v2.body.versions.map((v: { origin: string }) => v.origin)).toEqual(["imported", "imported"]);
    const jwks = (await j.pub(`/t/tenant-a/jwks/${ok.body.id}`)).body.keys;
    expect(jwks.map((k: { x: string }) => k.x)).toEqual([next.x, ecJwk.x]);
    expect((await j.req("POST", `/keys/${ok.body.id}/import`, { jwk: p384 })).status).toBe(400);

    const gen = await j.req("POST", "/keys", { name: "no-import", algorithm: "ES256" });
    const refused = await j.req("POST", `/keys/${gen.body.id}/import`, { jwk: next });
    expect([refused.status, refused.body.error.code]).toEqual([409, "import_not_allowed"]);
  });

  test("another tenant's key is not found (404) for every operation", async () => {
    const a = (await j.req("POST", "/keys", { name: "iso-a", algorithm: "ES256", import_allowed: true })).body;
    const jws = (await j.req("POST", `/keys/${a.id}/sign`, { payload: b64u("x") })).body.jws;
    const asB = { tenant: "tenant-b" };
    const ops: Array<[string, string, unknown?]> = [
      ["GET", `/keys/${a.id}`],
      ["GET", `/keys/${a.id}/jwk`],
      ["POST", `/keys/${a.id}/sign`, { payload: b64u("x") }],
      ["POST", `/keys/${a.id}/verify`, { jws }],
      ["POST", `/keys/${a.id}/jwt`, { ttl_s: 60 }],
      ["POST", `/keys/${a.id}/rotate`],
      ["PUT", `/keys/${a.id}/rotation`, { rotation_period_days: 5 }],
      ["DELETE", `/keys/${a.id}`],
      ["POST", `/keys/${a.id}/import`, { jwk: await exportJWK((await generateKeyPair("ES256", { extractable: true })).privateKey) }],
      ["GET", `/jwks/${a.id}`],
    ];
    for (const [method, path, body] of ops) {
      const r = await j.req(method, path, body, asB);
      expect([method, path, r.status, r.body?.error?.code]).toEqual([method, path, 404, "not_found"]);
    }
    expect((await j.req("GET", "/keys", undefined, asB)).body.items.map((k: { id: string }) => k.id)).not.toContain(a.id);
    expect((await j.req("GET", `/keys/${a.id}`)).body.current_version).toBe(1); // untouched
  });
});

describe("audit log", () => {
  test("records who, what, key, version and result; filters and pages; never plaintext or key material", async () => {
    const MARK = `plaintext-marker-${crypto.randomUUID()}`;
    const PAYLOAD = `payload-marker-${crypto.randomUUID()}`;
    const CLAIM = `claim-marker-${crypto.randomUUID()}`;
    const t = "tenant-audit";
    const opts = { tenant: t };
    const from = new Date().toISOString();
    const sig = (await j.req("POST", "/keys", { name: "audit-sig", algorithm: "ES256" }, opts)).body;
    const enc = (await j.req("POST", "/keys", { name: "audit-enc", algorithm: "A256GCM" }, opts)).body;
    const pair = await generateKeyPair("ES256", { extractable: true });
    const privJwk = await exportJWK(pair.privateKey);
    const imp = (await j.req("POST", "/keys/import", { name: "audit-imp", algorithm: "ES256", jwk: privJwk }, opts)).body;
    const jws = (await j.req("POST", `/keys/${sig.id}/sign`, { payload: b64u(PAYLOAD) }, opts)).body.jws;
    await j.req("POST", `/keys/${sig.id}/verify`, { jws }, opts);
    const jwe = (await j.req("POST", `/keys/${enc.id}/encrypt`, { plaintext: b64u(MARK) }, opts)).body.jwe;
    expect((await j.req("POST", `/keys/${enc.id}/decrypt`, { jwe }, opts)).status).toBe(200);
    const jwt = (await j.req("POST", `/keys/${sig.id}/jwt`, { claims: { secret_claim: CLAIM }, ttl_s: 60 }, opts)).body.jwt;
    await j.req("POST", `/keys/${sig.id}/jwt/validate`, { jwt }, opts);
    await j.req("POST", `/keys/${sig.id}/rotate`, undefined, opts);
    const failed = await j.req("POST", `/keys/${sig.id}/verify`, { jws: jws.slice(0, -6) + "AAAAAA" }, opts);
    expect(failed.status).toBe(400);
    await j.req("POST", `/keys/${enc.id}/sign`, { payload: b64u(PAYLOAD) }, opts); // purpose mismatch
    await j.req("GET", `/keys/${sig.id}`, undefined, opts);

    const all = await j.req("GET", "/audit?limit=500", undefined, opts);
    expect(all.status).toBe(200);
    const rows = all.body.items as Array<Record<string, unknown>>;
    expect(rows.map((r) => r.operation)).toEqual(["get", "sign", "verify", "rotate", "jwt_validate", "jwt_issue", "decrypt", "encrypt", "verify", "sign", "import", "generate", "generate"]);
    for (const r of rows) {
      expect(r).toMatchObject({ tenant: t, subject: `user-of-${t}`, client_id: "test-client" });
      expect(Date.parse(r.at as string)).toBeGreaterThanOrEqual(Date.parse(from));
    }
    expect(rows.find((r) => r.operation === "sign" && r.result === "ok")).toMatchObject({ key_id: sig.id, version: 1 });
    expect(rows.find((r) => r.operation === "rotate")).toMatchObject({ key_id: sig.id, version: 2, result: "ok" });
    expect(rows.find((r) => r.operation === "import")).toMatchObject({ key_id: imp.id, version: 1, result: "ok" });
    expect(rows[1]).toMatchObject({ operation: "sign", key_id: enc.id, result: "key_purpose_mismatch", version: null });
    expect(rows[2]).toMatchObject({ operation: "verify", key_id: sig.id, result: "signature_invalid" });

    // Filters and pages.
    const byKey = (await j.req("GET", `/audit?key=${enc.id}`, undefined, opts)).body.items;
    expect(byKey.map((r: { operation: string }) => r.operation)).toEqual(["sign", "decrypt", "encrypt", "generate"]);
    expect((await j.req("GET", `/audit?operation=verify`, undefined, opts)).body.items).toHaveLength(2);
    expect((await j.req("GET", `/audit?to=${encodeURIComponent(from)}`, undefined, opts)).body.items).toHaveLength(0);
    expect((await j.req("GET", `/audit?from=${encodeURIComponent(from)}&operation=generate`, undefined, opts)).body.items).toHaveLength(2);
    const paged: unknown[] = [];
    let token: string | null = null;
    do {
      const page: { body: { items: unknown[]; next_page_token: string | null } } = await j.req("GET", `/audit?limit=5${token ? `&page_token=${token}` : ""}`, undefined, opts);
      paged.push(...page.body.items);
      token = page.body.next_page_token;
    } while (token);
    expect(paged).toEqual(rows);
    // Tenant-scoped: another tenant sees none of it; the query needs jose:admin.
    expect((await j.req("GET", "/audit", undefined, { tenant: "tenant-other" })).body.items).toEqual([]);
    expect((await j.req("GET", "/audit", undefined, { token: await j.token(t, "jose:sign") })).status).toBe(403);
    expect((await j.req("GET", "/audit?from=yesterday", undefined, opts)).status).toBe(400);

    // No row, and no byte of the database, holds plaintext, payloads, claims, tokens or private key material.
    const secrets = [MARK, b64u(MARK), PAYLOAD, b64u(PAYLOAD), CLAIM, privJwk.d!, jwt.split(".")[2]!, jws.split(".")[2]!];
    const dump = JSON.stringify(rows);
    for (const s of secrets) expect(dump.includes(s)).toBe(false);
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const f of readdirSync(dir)) {
        const p = join(dir, f);
        if (statSync(p).isDirectory()) walk(p);
        else files.push(p);
      }
    };
    walk(j.svc.dataDir);
    expect(files.some((f) => /\.(db|sqlite)/.test(f) || f.includes("-wal"))).toBe(true);
    const bytes = files.map((f) => readFileSync(f).toString("latin1")).join("\n");
    for (const s of secrets) expect([s.slice(0, 20), bytes.includes(s)]).toEqual([s.slice(0, 20), false]);
  });
});

describe("API document", () => {
  test("the OpenAPI document lists the routes under both prefixes and the public JWKS", async () => {
    const res = await j.svc.call("/docs/openapi.json");
    expect(res.status).toBe(200);
    const paths = Object.keys((await res.json()).paths);
    for (const p of ["/service/api/v1/keys/{id}/jwt/validate", "/browser/api/v1/keys/{id}/encrypt", "/service/api/v1/audit", "/browser/api/v1/jwks/{id}", "/t/{tenant}/jwks/{id}"]) {
      expect(paths).toContain(p);
    }
  });
});
