/** Post-quantum: ML-DSA (FIPS 204) and ES512 signatures verified by jose; ML-KEM-768 (FIPS 203) JWE key encapsulation. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { compactVerify, decodeProtectedHeader, importJWK } from "jose";
import { encryptMlKem, type MlKemAlg } from "../../src/keyring/pq-kem.ts";
import { b64u, startKms, type Kms } from "./harness.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms();
});
afterAll(async () => {
  await kms?.stop();
});

for (const algorithm of ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87", "ES512"]) {
  test(`${algorithm}: signatures verify with jose against the exported public JWK; tampering fails`, async () => {
    const created = await kms.req("POST", "/keys", { name: `pq-${algorithm}`, algorithm });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const signed = await kms.req("POST", `/keys/${id}/sign`, { payload: b64u(`signed with ${algorithm}`) });
    expect(signed.status).toBe(200);
    const pub = await kms.req("GET", `/keys/${id}/public-key`);
    expect(pub.status).toBe(200);
    const jwk = pub.body.keys?.[0] ?? pub.body;
    expect(jwk.priv).toBeUndefined();
    expect(jwk.d).toBeUndefined();
    if (algorithm.startsWith("ML-DSA")) expect(jwk).toMatchObject({ kty: "AKP", alg: algorithm });
    const key = await importJWK(jwk, algorithm);
    const { payload, protectedHeader } = await compactVerify(signed.body.jws, key);
    expect(new TextDecoder().decode(payload)).toBe(`signed with ${algorithm}`);
    expect(protectedHeader).toMatchObject({ alg: algorithm, kid: `${id}.v1` });
    const verified = await kms.req("POST", `/keys/${id}/verify`, { jws: signed.body.jws });
    expect(verified.status).toBe(200);
    const [h, , s] = signed.body.jws.split(".");
    const forged = `${h}.${b64u("other payload")}.${s}`;
    await expect(compactVerify(forged, key)).rejects.toThrow();
    expect((await kms.req("POST", `/keys/${id}/verify`, { jws: forged })).status).toBe(400);
  });
}

// ML-KEM-768 (FIPS 203) key encapsulation, opt-in: draft-ietf-jose-pqc-kem JWEs. No JOSE library
// reads these yet; test/keyring/pq-kem.test.ts checks the format against the draft's vectors and
// an independent ML-KEM, and here a JWE made outside the service to the exported key opens in it.
for (const algorithm of ["ML-KEM-768", "ML-KEM-768+A192KW"]) {
  test(`${algorithm}: encrypt/decrypt with context (compact and JSON), data keys, rotation and rewrap, tampering refused`, async () => {
    const created = await kms.req("POST", "/keys", { name: `pq-${algorithm.replace("+", "-")}`, algorithm });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    const pub = await kms.req("GET", `/keys/${id}/public-key`);
    const jwk = pub.body.keys?.[0] ?? pub.body;
    expect(jwk).toMatchObject({ kty: "AKP", alg: algorithm, use: "enc", kid: `${id}.v1` });
    expect(jwk.priv).toBeUndefined();
    expect(Buffer.from(jwk.pub, "base64url").length).toBe(1184);

    const context = { app: "pq" };
    for (const enc of ["A256GCM", "A128CBC-HS256"]) {
      const r = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u(`secret ${enc}`), context, enc });
      expect(r.status).toBe(200);
      const header = decodeProtectedHeader(r.body.jwe);
      expect(header).toMatchObject({ alg: algorithm, enc, kid: `${id}.v1` });
      expect(Buffer.from(header.kemct as string, "base64url").length).toBe(1088);
      const d = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: r.body.jwe, context });
      expect(Buffer.from(d.body.plaintext, "base64url").toString()).toBe(`secret ${enc}`);
      const wrong = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: r.body.jwe, context: { app: "other" } });
      expect([wrong.status, wrong.body.error.code]).toEqual([400, "decryption_failed"]);
      const parts = (r.body.jwe as string).split(".");
      const ct = Buffer.from(parts[3]!, "base64url");
      ct[0]! ^= 1;
      parts[3] = ct.toString("base64url");
      expect((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: parts.join("."), context })).body.error.code).toBe("decryption_failed");
    }
    // A JWE made outside the service, to the exported public key, opens in the service.
    const outside = await encryptMlKem(jwk, new TextEncoder().encode("from outside"), { alg: algorithm as MlKemAlg, kid: jwk.kid, header: {} });
    // (no context: sm-kms binds a context only when one was given)
    expect(Buffer.from((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: outside })).body.plaintext, "base64url").toString()).toBe("from outside");

    const json = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("json"), context, format: "json" });
    expect(json.body.jwe.aad).toBeDefined();
    const dk = await kms.req("POST", `/keys/${id}/data-key`, { bytes: 32 });
    expect((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: dk.body.wrapped_key })).body.plaintext).toBe(dk.body.plaintext_key);

    expect((await kms.req("POST", `/keys/${id}/rotate`)).status).toBe(200);
    const re = await kms.req("POST", `/keys/${id}/rewrap`, { jwe: json.body.jwe, context });
    expect(re.status).toBe(200);
    expect(decodeProtectedHeader(re.body.jwe)).toMatchObject({ alg: algorithm, kid: `${id}.v2` });
    expect(Buffer.from((await kms.req("POST", `/keys/${id}/decrypt`, { jwe: re.body.jwe, context })).body.plaintext, "base64url").toString()).toBe("json");

    // Garbage in the ML-KEM-shaped slots (wrong part count, a kemct of the wrong size) is malformed_jose, never a 5xx.
    for (const jwe of ["a.b.c.d.e", `${b64u('{"alg":"' + algorithm + '","enc":"A256GCM","kid":"' + id + '.v1","kemct":"AAAA"}')}..${b64u("iv")}.${b64u("ct")}.${b64u("tag")}`]) {
      const r = await kms.req("POST", `/keys/${id}/decrypt`, { jwe });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("malformed_jose");
    }
  });
}
