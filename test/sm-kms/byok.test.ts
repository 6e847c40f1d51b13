/**
 * BYOK: key material wrapped by the caller (jose, RSA-OAEP-256 + A256GCM) to a one-off import
 * key, imported as the new version, then used: what sm-kms signs with it verifies with the
 * caller's own public key, and what the caller encrypts under it decrypts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { CompactEncrypt, compactVerify, exportJWK, generateKeyPair, generateSecret, importJWK, type JWK } from "jose";
import { readdirSync, readFileSync } from "node:fs";
import { b64u, startKms, text, type Kms } from "./harness.ts";

let kms: Kms;
beforeAll(async () => {
  kms = await startKms();
});
afterAll(async () => {
  await kms?.stop();
});

async function wrap(importJwk: JWK, material: JWK): Promise<string> {
  const pub = await importJWK(importJwk, "RSA-OAEP-256");
  return new CompactEncrypt(new TextEncoder().encode(JSON.stringify(material))).setProtectedHeader({ alg: "RSA-OAEP-256", enc: "A256GCM" }).encrypt(pub);
}

async function importable(name: string, algorithm: string) {
  const r = await kms.req("POST", "/keys", { name, algorithm, import_allowed: true });
  expect(r.status).toBe(201);
  return r.body.id as string;
}

describe("BYOK", () => {
  test("an imported ES256 key signs; the signature verifies with the caller's own public key", async () => {
    const id = await importable("byok-sign", "ES256");
    const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
    const params = await kms.req("POST", `/keys/${id}/import-params`);
    expect(params.status).toBe(200);
    expect(params.body.public_jwk).toMatchObject({ kty: "RSA", alg: "RSA-OAEP-256", kid: params.body.import_token });
    expect(params.body.public_jwk.d).toBeUndefined();
    const wrapped = await wrap(params.body.public_jwk, await exportJWK(privateKey));
    const imported = await kms.req("POST", `/keys/${id}/import`, { import_token: params.body.import_token, wrapped_key: wrapped });
    expect(imported.status).toBe(200);
    expect(imported.body.current_version).toBe(2);
    const signed = await kms.req("POST", `/keys/${id}/sign`, { payload: b64u("byok payload") });
    expect(signed.status).toBe(200);
    const { payload, protectedHeader } = await compactVerify(signed.body.jws, publicKey);
    expect(new TextDecoder().decode(payload)).toBe("byok payload");
    expect(protectedHeader.kid).toBe(`${id}.v2`);
  });

  test("an imported A256GCM key decrypts what was encrypted under the same material", async () => {
    const id = await importable("byok-aes", "A256GCM");
    const secret = (await generateSecret("A256GCM", { extractable: true })) as CryptoKey;
    const params = await kms.req("POST", `/keys/${id}/import-params`);
    const wrapped = await wrap(params.body.public_jwk, await exportJWK(secret));
    expect((await kms.req("POST", `/keys/${id}/import`, { import_token: params.body.import_token, wrapped_key: wrapped })).status).toBe(200);
    const ct = await kms.req("POST", `/keys/${id}/encrypt`, { plaintext: b64u("hello byok") });
    const pt = await kms.req("POST", `/keys/${id}/decrypt`, { jwe: ct.body.jwe });
    expect(text(pt.body.plaintext)).toBe("hello byok");
  });

  test("refusals: used token, another tenant, key without import, wrong material, tampered JWE", async () => {
    const id = await importable("byok-neg", "ES256");
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const params = await kms.req("POST", `/keys/${id}/import-params`);
    const wrapped = await wrap(params.body.public_jwk, await exportJWK(privateKey));
    // Another tenant cannot see the key, nor use the token.
    expect((await kms.req("POST", `/keys/${id}/import-params`, undefined, { tenant: "tenant-b" })).status).toBe(404);
    expect((await kms.req("POST", `/keys/${id}/import`, { import_token: params.body.import_token, wrapped_key: wrapped }, { tenant: "tenant-b" })).status).toBe(404);
    // Tampered ciphertext: refused, and the token is spent.
    const parts = wrapped.split(".");
    parts[3] = parts[3]!.slice(0, -2) + (parts[3]!.endsWith("AA") ? "BB" : "AA");
    const bad = await kms.req("POST", `/keys/${id}/import`, { import_token: params.body.import_token, wrapped_key: parts.join(".") });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("decryption_failed");
    expect((await kms.req("POST", `/keys/${id}/import`, { import_token: params.body.import_token, wrapped_key: wrapped })).status).toBe(404);
    // Material of the wrong type for the key's algorithm.
    const p2 = await kms.req("POST", `/keys/${id}/import-params`);
    const rsa = await generateKeyPair("RS256", { extractable: true });
    const wrong = await kms.req("POST", `/keys/${id}/import`, { import_token: p2.body.import_token, wrapped_key: await wrap(p2.body.public_jwk, await exportJWK(rsa.privateKey)) });
    expect(wrong.status).toBe(400);
    // Malformed inputs.
    expect((await kms.req("POST", `/keys/${id}/import`, { import_token: "x", wrapped_key: "y" })).status).toBe(400);
    // A key created without import_allowed gives no import parameters.
    const closed = await kms.req("POST", "/keys", { name: "closed", algorithm: "ES256" });
    expect((await kms.req("POST", `/keys/${closed.body.id}/import-params`)).body.error.code).toBe("import_not_allowed");
  });

  test("import keys and imported material are not in the database files in clear", async () => {
    const dir = kms.svc.dataDir;
    for (const f of readdirSync(dir).filter((f) => f.includes(".db"))) {
      const bytes = readFileSync(`${dir}/${f}`).toString("latin1");
      expect(bytes).not.toContain('"d":"');
      expect(bytes).not.toContain('"k":"');
    }
  });
});
