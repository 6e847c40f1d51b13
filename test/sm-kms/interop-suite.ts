/**
 * sm-kms interop with the `jose` library as the independent client, over real HTTPS: every
 * signature the service makes verifies with its exported public JWK, every JWE a client makes
 * with an exported public key decrypts in the service, and every service JWE round-trips.
 *
 * A suite, run against a service started without an HSM (interop.test.ts) and with one
 * (hsm-interop.test.ts): the outputs must be the same standard JOSE either way.
 */
import { describe, expect, test } from "bun:test";
import { CompactEncrypt, FlattenedEncrypt, compactVerify, decodeProtectedHeader, flattenedVerify, importJWK } from "jose";
import { b64u, text, type Kms } from "./harness.ts";

/** Registers the interop tests against the running service `kms()` returns. */
export function kmsInteropSuite(kms: () => Kms): void {
  const create = async (name: string, algorithm: string) => {
    const r = await kms().req("POST", "/keys", { name: name.replace(/[^A-Za-z0-9._-]/g, "_"), algorithm });
    expect(r.status).toBe(201);
    return r.body as { id: string; purpose: string; current_version: number };
  };

  describe("sign keys: the service signs, jose verifies with the exported JWK", () => {
    for (const alg of ["ES256", "ES384", "PS256", "RS256", "EdDSA"]) {
      test(alg, async () => {
        const key = await create(`sig-${alg}`, alg);
        expect(key.purpose).toBe("sign");
        const pub = await kms().req("GET", `/keys/${key.id}/public-key`);
        expect(pub.status).toBe(200);
        expect(pub.body).toMatchObject({ kid: `${key.id}.v1`, alg, use: "sig" });
        expect(pub.body.d).toBeUndefined();
        const publicKey = await importJWK(pub.body, alg);

        const payload = b64u(`hello ${alg}`);
        const signed = await kms().req("POST", `/keys/${key.id}/sign`, { payload });
        expect(signed.status).toBe(200);
        const v = await compactVerify(signed.body.jws, publicKey, { algorithms: [alg] });
        expect(new TextDecoder().decode(v.payload)).toBe(`hello ${alg}`);
        expect(v.protectedHeader).toMatchObject({ alg, kid: `${key.id}.v1` });
        expect((await kms().req("POST", `/keys/${key.id}/verify`, { jws: signed.body.jws })).body).toEqual({ valid: true, kid: `${key.id}.v1` });

        // Detached: "header..signature", checked by jose as flattened JWS with the payload re-attached.
        const det = await kms().req("POST", `/keys/${key.id}/sign`, { payload, detached: true });
        const [h, mid, s] = det.body.jws.split(".");
        expect(mid).toBe("");
        await flattenedVerify({ protected: h, payload, signature: s }, publicKey);
        expect((await kms().req("POST", `/keys/${key.id}/verify`, { jws: det.body.jws, payload })).status).toBe(200);
        expect((await kms().req("POST", `/keys/${key.id}/verify`, { jws: det.body.jws, payload: b64u("other") })).body.error.code).toBe("signature_invalid");
        expect((await kms().req("POST", `/keys/${key.id}/verify`, { jws: det.body.jws })).status).toBe(400);
      });
    }
  });

  describe("asymmetric encrypt keys: jose encrypts to the exported JWK, the service decrypts", () => {
    for (const alg of ["RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A256KW"]) {
      test(alg, async () => {
        const key = await create(`enc-${alg}`, alg);
        const pub = await kms().req("GET", `/keys/${key.id}/public-key?version=1`);
        expect(pub.body).toMatchObject({ kid: `${key.id}.v1`, alg, use: "enc" });
        const jwe = await new CompactEncrypt(new TextEncoder().encode(`secret for ${alg}`))
          .setProtectedHeader({ alg, enc: "A256GCM", kid: pub.body.kid })
          .encrypt(await importJWK(pub.body, alg));
        const dec = await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe });
        expect(dec.status).toBe(200);
        expect(text(dec.body.plaintext)).toBe(`secret for ${alg}`);
        // Tampering with any segment the client produced (header with epk, encrypted key, iv, ciphertext, tag) is refused.
        const parts = jwe.split(".");
        for (let i = 0; i < 5; i++) {
          if (parts[i] === "") continue; // ECDH-ES (direct) has no encrypted key
          const t = [...parts];
          const at = t[i]!.length >> 1;
          t[i] = t[i]!.slice(0, at) + (t[i]![at] === "A" ? "B" : "A") + t[i]!.slice(at + 1);
          const r = await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: t.join(".") });
          expect([i, r.status]).toEqual([i, 400]);
          expect(["decryption_failed", "malformed_jose"]).toContain(r.body.error.code);
        }
        // And the service's own encryption round-trips, naming alg, enc and kid.
        const enc = await kms().req("POST", `/keys/${key.id}/encrypt`, { plaintext: b64u("round trip") });
        expect(decodeProtectedHeader(enc.body.jwe)).toMatchObject({ alg, enc: "A256GCM", kid: `${key.id}.v1` });
        expect(text((await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: enc.body.jwe })).body.plaintext)).toBe("round trip");
      });
    }
  });

  describe("symmetric keys", () => {
    for (const alg of ["A256GCM", "A256KW", "A256GCMKW"]) {
      test(`${alg}: encrypt, decrypt with context, data keys`, async () => {
        const key = await create(`sym-${alg}`, alg);
        const pub = await kms().req("GET", `/keys/${key.id}/public-key`);
        expect(pub.body.error.code).toBe("key_not_asymmetric");
        const context = { b: "2", a: "1" };
        const enc = await kms().req("POST", `/keys/${key.id}/encrypt`, { plaintext: b64u("x".repeat(1024)), context });
        expect(decodeProtectedHeader(enc.body.jwe)).toMatchObject({ alg: alg === "A256GCM" ? "dir" : alg, enc: "A256GCM", kid: `${key.id}.v1` });
        // The context is canonical (key order does not matter) and required.
        const ok = await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: enc.body.jwe, context: { a: "1", b: "2" } });
        expect(text(ok.body.plaintext)).toBe("x".repeat(1024));
        for (const bad of [undefined, { a: "1" }, { a: "1", b: "3" }]) {
          const r = await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: enc.body.jwe, context: bad });
          expect([r.status, r.body.error.code]).toEqual([400, "decryption_failed"]);
        }
        const dk = await kms().req("POST", `/keys/${key.id}/data-key`, { bytes: 32 });
        expect(dk.status).toBe(200);
        const plain = dk.body.plaintext_key as string;
        expect(Buffer.from(plain, "base64url").length).toBe(32);
        expect((await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: dk.body.wrapped_key })).body.plaintext).toBe(plain);
        const wrappedOnly = await kms().req("POST", `/keys/${key.id}/data-key`, { include_plaintext: false });
        expect(wrappedOnly.body.plaintext_key).toBeUndefined();
        expect(typeof wrappedOnly.body.wrapped_key).toBe("string");
      });
    }

    test("flattened JSON JWE: the context is the JWE's aad; rewrap keeps the format", async () => {
      const key = await create("json-A256GCM", "A256GCM");
      const context = { tenant: "t", purpose: "json" };
      const enc = await kms().req("POST", `/keys/${key.id}/encrypt`, { plaintext: b64u("json form"), context, format: "json" });
      expect(enc.status).toBe(200);
      const jwe = enc.body.jwe as { protected: string; aad: string; iv: string; ciphertext: string; tag: string };
      expect(text(jwe.aad)).toBe('{"purpose":"json","tenant":"t"}');
      expect(decodeProtectedHeader(jwe)).toMatchObject({ alg: "dir", enc: "A256GCM", kid: `${key.id}.v1` });
      expect(text((await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe, context })).body.plaintext)).toBe("json form");
      for (const [bad, ctx] of [[jwe, undefined], [jwe, { tenant: "u", purpose: "json" }], [{ ...jwe, aad: b64u('{"purpose":"json","tenant":"u"}') }, { tenant: "u", purpose: "json" }]] as const) {
        const r = await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: bad, context: ctx });
        expect([r.status, r.body.error.code]).toEqual([400, "decryption_failed"]);
      }
      // Unprotected headers are allowed (RFC 7516 §7.2.2), but a parameter may not appear twice.
      const twice = await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: { ...jwe, header: { kid: "x" } }, context });
      expect([twice.status, twice.body.error.code]).toEqual([400, "malformed_jose"]);
      await kms().req("POST", `/keys/${key.id}/rotate`);
      const re = await kms().req("POST", `/keys/${key.id}/rewrap`, { jwe, context });
      expect(typeof re.body.jwe).toBe("object");
      expect(decodeProtectedHeader(re.body.jwe).kid).toBe(`${key.id}.v2`);
      expect(text((await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe: re.body.jwe, context })).body.plaintext)).toBe("json form");
      const dk = await kms().req("POST", `/keys/${key.id}/data-key`, { format: "json", include_plaintext: false });
      expect(typeof dk.body.wrapped_key.ciphertext).toBe("string");
    });

    test("flattened JSON JWE made by jose with an exported ECDH-ES+A256KW key and aad decrypts in the service", async () => {
      const key = await create("json-ecdh", "ECDH-ES+A256KW");
      const pub = (await kms().req("GET", `/keys/${key.id}/public-key`)).body;
      const jwe = await new FlattenedEncrypt(new TextEncoder().encode("from jose"))
        .setProtectedHeader({ alg: "ECDH-ES+A256KW", enc: "A256GCM", kid: pub.kid })
        .setAdditionalAuthenticatedData(new TextEncoder().encode('{"a":"1"}'))
        .encrypt(await importJWK(pub, "ECDH-ES+A256KW"));
      const r = await kms().req("POST", `/keys/${key.id}/decrypt`, { jwe, context: { a: "1" } });
      expect([r.status, text(r.body.plaintext)]).toEqual([200, "from jose"]);
    });

    for (const alg of ["HS256", "HS384", "HS512"]) {
      test(`${alg}: MAC generate and verify, matching WebCrypto's output length`, async () => {
        const key = await create(`mac-${alg}`, alg);
        const data = b64u("mac me");
        const m = await kms().req("POST", `/keys/${key.id}/mac`, { data });
        expect(m.status).toBe(200);
        expect(Buffer.from(m.body.mac, "base64url").length).toBe(Number(alg.slice(2)) / 8);
        expect((await kms().req("POST", `/keys/${key.id}/mac/verify`, { data, mac: m.body.mac, kid: m.body.kid })).body.valid).toBe(true);
        const bad = await kms().req("POST", `/keys/${key.id}/mac/verify`, { data: b64u("mac mf"), mac: m.body.mac, kid: m.body.kid });
        expect([bad.status, bad.body.error.code]).toEqual([400, "mac_invalid"]);
        expect((await kms().req("POST", `/keys/${key.id}/encrypt`, { plaintext: data })).body.error.code).toBe("key_purpose_mismatch");
      });
    }

    test("random bytes: 1..1024", async () => {
      const r = await kms().req("POST", "/random", { bytes: 1024 });
      expect(Buffer.from(r.body.random, "base64url").length).toBe(1024);
      const r2 = await kms().req("POST", "/random", { bytes: 1024 });
      expect(r2.body.random).not.toBe(r.body.random);
      for (const bytes of [0, 1025, 1.5, "8"]) expect((await kms().req("POST", "/random", { bytes })).status).toBe(400);
    });
  });
}
