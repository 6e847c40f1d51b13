/**
 * jose-ja's JWKS caching and rotation, JWT validation rules and their error codes, and
 * refusal of malformed or tampered JOSE input, over real HTTPS.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SignJWT, compactVerify, createLocalJWKSet, exportJWK, generateKeyPair } from "jose";
import { b64u, startJose, type Jose } from "./harness.ts";

let j: Jose;
beforeAll(async () => {
  j = await startJose();
});
afterAll(async () => {
  await j?.stop();
});

const kidsOf = (body: { keys: Array<{ kid: string }> }) => body.keys.map((k) => k.kid);

describe("JWKS", () => {
  test("ETag and If-None-Match give 304; a rotated ring still publishes and verifies the old version", async () => {
    const key = (await j.req("POST", "/keys", { name: "jwks-es256", algorithm: "ES256" })).body;
    const first = await j.pub(`/t/tenant-a/jwks/${key.id}`);
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toContain("application/jwk-set+json");
    expect(first.headers.get("cache-control")).toBe("public, max-age=300");
    const etag = first.headers.get("etag")!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    const again = await j.pub(`/t/tenant-a/jwks/${key.id}`, { "if-none-match": etag });
    expect(again.status).toBe(304);
    expect(again.body).toBeUndefined();
    expect(again.headers.get("etag")).toBe(etag);
    expect((await j.pub(`/t/tenant-a/jwks/${key.id}`, { "if-none-match": `W/${etag}, "other"` })).status).toBe(304);
    expect((await j.pub(`/t/tenant-a/jwks/${key.id}`, { "if-none-match": '"stale"' })).status).toBe(200);

    const oldSig = (await j.req("POST", `/keys/${key.id}/sign`, { payload: b64u("signed under v1") })).body.jws;
    const oldJwt = (await j.req("POST", `/keys/${key.id}/jwt`, { ttl_s: 600 })).body.jwt;
    const rotated = await j.req("POST", `/keys/${key.id}/rotate`);
    expect(rotated.body.current_version).toBe(2);

    const after = await j.pub(`/t/tenant-a/jwks/${key.id}`, { "if-none-match": etag });
    expect(after.status).toBe(200); // the set changed, so the old ETag no longer matches
    expect(after.headers.get("etag")).not.toBe(etag);
    expect(kidsOf(after.body)).toEqual([`${key.id}.v2`, `${key.id}.v1`]);
    const jwks = createLocalJWKSet(after.body);
    await compactVerify(oldSig, jwks);
    const newSig = (await j.req("POST", `/keys/${key.id}/sign`, { payload: b64u("v2") })).body.jws;
    expect((await compactVerify(newSig, jwks)).protectedHeader.kid).toBe(`${key.id}.v2`);
    expect((await j.req("POST", `/keys/${key.id}/jwt/validate`, { jwt: oldJwt })).status).toBe(200);

    // The authenticated API serves the same set with the same ETag.
    const api = await j.req("GET", `/jwks/${key.id}`);
    expect(api.headers.get("etag")).toBe(after.headers.get("etag"));
    expect((await j.req("GET", `/jwks/${key.id}`, undefined, { headers: { "if-none-match": after.headers.get("etag")! } })).status).toBe(304);

    const tenantJwks = await j.pub("/t/tenant-a/jwks");
    expect(tenantJwks.status).toBe(200);
    expect(kidsOf(tenantJwks.body)).toEqual(expect.arrayContaining([`${key.id}.v1`, `${key.id}.v2`]));
    const tenantAgain = await j.pub("/t/tenant-a/jwks", { "if-none-match": tenantJwks.headers.get("etag")! });
    expect(tenantAgain.status).toBe(304);
  });

  test("raising the minimum decryption version unpublishes older versions and refuses their signatures; disabled keys stay published", async () => {
    const key = (await j.req("POST", "/keys", { name: "jwks-min", algorithm: "PS256" })).body;
    const v1 = (await j.req("POST", `/keys/${key.id}/sign`, { payload: b64u("v1") })).body.jws;
    await j.req("POST", `/keys/${key.id}/rotate`);
    await j.req("POST", `/keys/${key.id}/rotate`);
    expect(kidsOf((await j.pub(`/t/tenant-a/jwks/${key.id}`)).body)).toEqual([3, 2, 1].map((n) => `${key.id}.v${n}`));
    expect((await j.req("POST", `/keys/${key.id}/verify`, { jws: v1 })).status).toBe(200);
    const raised = await j.req("PATCH", `/keys/${key.id}`, { min_decryption_version: 2 });
    expect(raised.body.min_decryption_version).toBe(2);
    expect(kidsOf((await j.pub(`/t/tenant-a/jwks/${key.id}`)).body)).toEqual([`${key.id}.v3`, `${key.id}.v2`]);
    const refused = await j.req("POST", `/keys/${key.id}/verify`, { jws: v1 });
    expect([refused.status, refused.body.error.code]).toEqual([409, "key_version_below_minimum"]);
    expect((await j.req("PATCH", `/keys/${key.id}`, { min_decryption_version: 4 })).status).toBe(400);

    expect((await j.req("POST", `/keys/${key.id}/disable`)).body.status).toBe("disabled");
    expect((await j.req("POST", `/keys/${key.id}/sign`, { payload: b64u("x") })).body.error.code).toBe("key_disabled");
    expect(kidsOf((await j.pub("/t/tenant-a/jwks")).body)).toContain(`${key.id}.v3`);
    expect((await j.req("POST", `/keys/${key.id}/enable`)).body.status).toBe("enabled");
    expect((await j.req("POST", `/keys/${key.id}/sign`, { payload: b64u("x") })).status).toBe(200);
  });

  test("the tenant JWKS holds asymmetric keys only, never private members, and only the tenant's", async () => {
    const hs = (await j.req("POST", "/keys", { name: "jwks-hs", algorithm: "HS256" })).body;
    const gcm = (await j.req("POST", "/keys", { name: "jwks-gcm", algorithm: "A256GCM" })).body;
    const b = (await j.req("POST", "/keys", { name: "jwks-b", algorithm: "EdDSA" }, { tenant: "tenant-b" })).body;
    const a = await j.pub("/t/tenant-a/jwks");
    const kids = kidsOf(a.body);
    expect(kids.some((k) => k.startsWith(hs.id) || k.startsWith(gcm.id) || k.startsWith(b.id))).toBe(false);
    expect(JSON.stringify(a.body)).not.toMatch(/"(d|p|q|dp|dq|qi|k)":/);
    expect(kidsOf((await j.pub("/t/tenant-b/jwks")).body)).toEqual([`${b.id}.v1`]);
    // Another tenant's key through this tenant's path is not found; unknown tenants have an empty set.
    expect((await j.pub(`/t/tenant-a/jwks/${b.id}`)).status).toBe(404);
    expect((await j.pub("/t/nobody/jwks")).body).toEqual({ keys: [] });
    expect((await j.pub("/t/tenant-a/jwks/not-a-uuid")).status).toBe(404);
    expect((await j.pub("/t/bad%20tenant/jwks")).status).toBe(400);
    // A key pending deletion is no longer published.
    await j.req("DELETE", `/keys/${b.id}?waiting_period_days=7`, undefined, { tenant: "tenant-b" });
    expect((await j.pub("/t/tenant-b/jwks")).body).toEqual({ keys: [] });
    expect((await j.pub(`/t/tenant-b/jwks/${b.id}`)).status).toBe(404);
  });
});

describe("JWT validation", () => {
  let id: string;
  let priv: CryptoKey;
  let kid: string;
  const now = () => Math.floor(Date.now() / 1000);
  const make = (claims: Record<string, unknown>, header: Record<string, unknown> = {}) =>
    new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid, ...header }).sign(priv);
  const validate = (jwt: string, opts: Record<string, unknown> = {}) => j.req("POST", `/keys/${id}/jwt/validate`, { jwt, ...opts });
  const codeOf = async (jwt: string, opts: Record<string, unknown> = {}) => {
    const r = await validate(jwt, opts);
    expect(r.status).toBe(400);
    return r.body.error.code as string;
  };

  beforeAll(async () => {
    const pair = await generateKeyPair("ES256", { extractable: true });
    priv = pair.privateKey;
    const imp = await j.req("POST", "/keys/import", { name: "jwt-rules", algorithm: "ES256", jwk: await exportJWK(priv) });
    id = imp.body.id;
    kid = `${id}.v1`;
  });

  test("exp, nbf and iat with clock skew", async () => {
    const expired = await make({ exp: now() - 30, iat: now() - 90 });
    expect(await codeOf(expired)).toBe("jwt_expired");
    expect((await validate(expired, { clock_skew_s: 60 })).status).toBe(200);
    const early = await make({ nbf: now() + 30, exp: now() + 300 });
    expect(await codeOf(early)).toBe("jwt_not_yet_valid");
    expect((await validate(early, { clock_skew_s: 60 })).status).toBe(200);
    const future = await make({ iat: now() + 120, exp: now() + 300 });
    const r = await validate(future);
    expect([r.status, r.body.error.code, r.body.error.details?.claim]).toEqual([400, "jwt_claim_invalid", "iat"]);
    expect((await validate(future, { clock_skew_s: 300 })).status).toBe(200);
    const old = await validate(await make({ iat: now() - 600, exp: now() + 60 }), { max_age_s: 60 });
    expect([old.status, old.body.error.code, old.body.error.details?.claim]).toEqual([400, "jwt_expired", "iat"]);
    const exp = await validate(expired);
    expect(exp.body.error.details?.claim).toBe("exp");
  });

  test("tenant-wide validate and verify find the key from the kid, within the tenant only", async () => {
    const t = await make({ exp: now() + 60, sub: "bob" });
    const r = await j.req("POST", "/jwt/validate", { jwt: t });
    expect(r.body).toMatchObject({ valid: true, kid, claims: { sub: "bob" } });
    expect((await j.req("POST", "/jws/verify", { jws: t })).body).toMatchObject({ valid: true, kid });
    expect((await j.req("POST", "/jwt/validate", { jwt: t }, { tenant: "tenant-b" })).status).toBe(404);
    expect((await j.req("POST", "/jwt/validate", { jwt: await make({}, { kid: "someone-else" }) })).body.error.code).toBe("signature_invalid");
    expect((await j.req("POST", "/jws/verify", { jws: "x.y" })).body.error.code).toBe("malformed_jose");
  });

  test("iss, aud, typ and required claims", async () => {
    const t = await make({ iss: "https://a.example", aud: ["x", "y"], exp: now() + 60, iat: now() }, { typ: "at+jwt" });
    expect((await validate(t, { iss: "https://a.example", aud: "y", typ: "at+jwt", required_claims: ["iss", "aud"] })).status).toBe(200);
    expect(await codeOf(t, { iss: "https://b.example" })).toBe("jwt_claim_invalid");
    expect(await codeOf(t, { aud: "z" })).toBe("jwt_claim_invalid");
    expect(await codeOf(t, { typ: "JWT" })).toBe("jwt_claim_invalid");
    const missing = await validate(t, { required_claims: ["sub"] });
    expect([missing.body.error.code, missing.body.error.details?.claim]).toEqual(["jwt_claim_invalid", "sub"]);
  });

  test("signature and structure", async () => {
    const t = await make({ exp: now() + 60 });
    const [h, p, s] = t.split(".");
    const tampered = `${h}.${b64u(JSON.stringify({ exp: now() + 60, admin: true }))}.${s}`;
    expect(await codeOf(tampered)).toBe("signature_invalid");
    // Signed by another key under this key's kid.
    const other = await generateKeyPair("ES256");
    expect(await codeOf(await new SignJWT({}).setProtectedHeader({ alg: "ES256", kid }).sign(other.privateKey))).toBe("signature_invalid");
    // A kid of another key, no kid, or an alg that is not the key's.
    expect(await codeOf(await make({}, { kid: `${crypto.randomUUID()}.v1` }))).toBe("signature_invalid");
    expect(await codeOf(await new SignJWT({}).setProtectedHeader({ alg: "ES256" }).sign(priv))).toBe("signature_invalid");
    expect(await codeOf(`${b64u(JSON.stringify({ alg: "none", kid }))}.${p}.`)).toBe("signature_invalid");
    // Not JOSE at all.
    for (const bad of ["not-a-jwt", "a.b", "a.b.c.d", `${b64u("{not json")}.${p}.${s}`, `${h}.${b64u("[1,2]")}.${s}`]) {
      expect([bad, await codeOf(bad)]).toEqual([bad, expect.stringMatching(/^(malformed_jose|signature_invalid)$/)]);
    }
    expect(await codeOf("not-a-jwt")).toBe("malformed_jose");
    expect(await codeOf(`${b64u("{not json")}.${p}.${s}`)).toBe("malformed_jose");
  });

  test("issue refuses reserved claims, too long a ttl and wrong types", async () => {
    const sig = (await j.req("POST", "/keys", { name: "jwt-issue", algorithm: "ES256" })).body;
    expect((await j.req("POST", `/keys/${sig.id}/jwt`, { claims: { exp: 1 }, ttl_s: 60 })).body.error.code).toBe("validation_failed");
    expect((await j.req("POST", `/keys/${sig.id}/jwt`, { ttl_s: 10_000_000 })).body.error.code).toBe("validation_failed");
    expect((await j.req("POST", `/keys/${sig.id}/jwt`, { ttl_s: "60" })).status).toBe(400);
    expect((await j.req("POST", `/keys/${sig.id}/jwt`, { ttl_s: 60, typ: "bad typ!" })).status).toBe(400);
    expect((await j.req("POST", `/keys/${sig.id}/jwt/validate`, { jwt: 42 })).body.error.code).toBe("validation_failed");
  });
});

describe("malformed and mismatched JOSE", () => {
  test("JWS, JWE and wrong key purposes give 4xx with stable codes", async () => {
    const sig = (await j.req("POST", "/keys", { name: "mal-sig", algorithm: "ES256" })).body;
    const enc = (await j.req("POST", "/keys", { name: "mal-enc", algorithm: "A256GCM" })).body;
    const jws = (await j.req("POST", `/keys/${sig.id}/sign`, { payload: b64u("p") })).body.jws as string;
    const jwe = (await j.req("POST", `/keys/${enc.id}/encrypt`, { plaintext: b64u("p") })).body.jwe as string;
    const code = async (path: string, body: unknown) => {
      const r = await j.req("POST", path, body);
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      return r.body.error.code;
    };
    expect(await code(`/keys/${sig.id}/verify`, { jws: "garbage" })).toBe("malformed_jose");
    expect(await code(`/keys/${sig.id}/verify`, { jws: jws.slice(0, -4) + (jws.endsWith("AAAA") ? "BBBB" : "AAAA") })).toBe("signature_invalid");
    expect(await code(`/keys/${enc.id}/decrypt`, { jwe: "a.b.c" })).toBe("malformed_jose");
    const parts = jwe.split(".");
    parts[3] = parts[3]!.slice(0, -2) + (parts[3]!.endsWith("AA") ? "BB" : "AA");
    expect(await code(`/keys/${enc.id}/decrypt`, { jwe: parts.join(".") })).toBe("decryption_failed");
    expect(await code(`/keys/${enc.id}/decrypt`, { jwe: jws })).toBe("malformed_jose");
    expect(await code(`/keys/${sig.id}/verify`, { jws: jwe })).toBe("malformed_jose");
    // Wrong purposes and wrong types.
    expect(await code(`/keys/${enc.id}/sign`, { payload: b64u("p") })).toBe("key_purpose_mismatch");
    expect(await code(`/keys/${sig.id}/encrypt`, { plaintext: b64u("p") })).toBe("key_purpose_mismatch");
    expect(await code(`/keys/${sig.id}/sign`, { payload: 12 })).toBe("validation_failed");
    expect(await code(`/keys/${sig.id}/sign`, { payload: "not base64url!" })).toBe("validation_failed");
    expect(await code(`/keys/${sig.id}/sign`, { payload: b64u("p"), extra: 1 })).toBe("validation_failed");
    expect((await j.req("POST", `/keys/${sig.id}/sign`, undefined, { raw: "{not json" })).body.error.code).toBe("malformed_json");
    // A verify-only token cannot sign.
    const verifyOnly = await j.token("tenant-a", "jose:verify");
    expect((await j.req("POST", `/keys/${sig.id}/sign`, { payload: b64u("p") }, { token: verifyOnly })).status).toBe(403);
    expect((await j.req("POST", `/keys/${sig.id}/verify`, { jws }, { token: verifyOnly })).status).toBe(200);
  });
});
