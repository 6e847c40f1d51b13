/**
 * jose-ja interop with the `jose` library as the independent party, over real HTTPS: what the
 * service signs verifies with keys from its public JWKS; what `jose` encrypts to a published key
 * the service decrypts; what the service encrypts with imported keys `jose` decrypts; and tokens
 * `jose` signs with a private key imported into the service validate there.
 */
import { describe, expect, test } from "bun:test";
import {
  CompactEncrypt,
  SignJWT,
  compactDecrypt,
  compactVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  generateSecret,
  importJWK,
  jwtVerify,
} from "jose";
import { b64u, text, type Jose } from "./harness.ts";

/** Registers the interop tests against the running service `j()` returns. */
export function joseInteropSuite(j: () => Jose): void {
  const SIGN_ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"] as const;
  const ASYM_ENC_ALGS = ["RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A256KW"] as const;
  const SYM_ENC_ALGS = ["A256GCM", "A256KW", "A256GCMKW"] as const;
  const safe = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, "_");

  async function generate(name: string, algorithm: string): Promise<{ id: string }> {
    const r = await j().req("POST", "/keys", { name: safe(name), algorithm });
    expect(r.status).toBe(201);
    return r.body;
  }

  /** The key ring's JWKS from the public, unauthenticated endpoint. */
  async function publicJwks(id: string, tenant = "tenant-a") {
    const r = await j().pub(`/t/${tenant}/jwks/${id}`);
    expect(r.status).toBe(200);
    for (const k of r.body.keys) for (const m of ["d", "p", "q", "dp", "dq", "qi", "k"]) expect(k[m]).toBeUndefined();
    return r.body as { keys: Array<Record<string, string>> };
  }

  describe("the service signs, jose verifies with the public JWKS", () => {
    for (const alg of SIGN_ALGS) {
      test(alg, async () => {
        const key = await generate(`sig-${alg}`, alg);
        const jwks = createLocalJWKSet(await publicJwks(key.id));

        const signed = await j().req("POST", `/keys/${key.id}/sign`, { payload: b64u(`hello ${alg}`), typ: "example+jws" });
        expect(signed.status).toBe(200);
        const v = await compactVerify(signed.body.jws, jwks, { algorithms: [alg] });
        expect(new TextDecoder().decode(v.payload)).toBe(`hello ${alg}`);
        expect(v.protectedHeader).toMatchObject({ alg, kid: `${key.id}.v1`, typ: "example+jws" });
        const back = await j().req("POST", `/keys/${key.id}/verify`, { jws: signed.body.jws });
        expect(back.status).toBe(200);
        expect(back.body).toMatchObject({ valid: true, kid: `${key.id}.v1`, payload: b64u(`hello ${alg}`) });

        const jwt = await j().req("POST", `/keys/${key.id}/jwt`, { claims: { scope: "read", n: 7 }, ttl_s: 300, iss: "https://issuer.example", aud: "rp-1", sub: "alice" });
        expect(jwt.status).toBe(200);
        const r = await jwtVerify(jwt.body.jwt, jwks, { issuer: "https://issuer.example", audience: "rp-1", typ: "JWT", algorithms: [alg] });
        expect(r.payload).toMatchObject({ scope: "read", n: 7, sub: "alice" });
        expect(r.payload.exp! - r.payload.iat!).toBe(300);
        expect(Math.abs(r.payload.iat! - Date.now() / 1000)).toBeLessThan(30);
      });
    }
  });

  describe("jose encrypts to the published key, the service decrypts", () => {
    for (const alg of ASYM_ENC_ALGS) {
      test(alg, async () => {
        const key = await generate(`enc-${alg}`, alg);
        const { keys } = await publicJwks(key.id);
        expect(keys).toHaveLength(1);
        expect(keys[0]).toMatchObject({ kid: `${key.id}.v1`, alg, use: "enc" });
        const jwe = await new CompactEncrypt(new TextEncoder().encode(`to the service with ${alg}`))
          .setProtectedHeader({ alg, enc: "A256GCM", kid: keys[0]!.kid })
          .encrypt(await importJWK(keys[0]!, alg));
        const dec = await j().req("POST", `/keys/${key.id}/decrypt`, { jwe });
        expect(dec.status).toBe(200);
        expect(text(dec.body.plaintext)).toBe(`to the service with ${alg}`);
        // Its own encryption round-trips and names alg, enc and kid.
        const enc = await j().req("POST", `/keys/${key.id}/encrypt`, { plaintext: b64u("round trip") });
        expect(decodeProtectedHeader(enc.body.jwe)).toMatchObject({ alg, enc: "A256GCM", kid: `${key.id}.v1` });
        expect(text((await j().req("POST", `/keys/${key.id}/decrypt`, { jwe: enc.body.jwe })).body.plaintext)).toBe("round trip");
      });
    }
  });

  describe("the service encrypts with an imported key, jose decrypts with the caller's copy", () => {
    for (const alg of [...ASYM_ENC_ALGS, ...SYM_ENC_ALGS]) {
      test(alg, async () => {
        let priv: CryptoKey | Uint8Array;
        let jwk: Record<string, unknown>;
        if ((SYM_ENC_ALGS as readonly string[]).includes(alg)) {
          const secret = await generateSecret(alg === "A256GCM" ? "A256GCM" : alg, { extractable: true });
          jwk = { ...(await exportJWK(secret)) };
          priv = secret as CryptoKey;
        } else {
          const pair = await generateKeyPair(alg, { extractable: true });
          jwk = { ...(await exportJWK(pair.privateKey)), alg };
          priv = pair.privateKey;
        }
        const imp = await j().req("POST", "/keys/import", { name: safe(`imp-enc-${alg}`), algorithm: alg, jwk });
        expect(imp.status).toBe(201);
        expect(imp.body.versions[0].origin).toBe("imported");
        const enc = await j().req("POST", `/keys/${imp.body.id}/encrypt`, { plaintext: b64u(`from the service, ${alg}`) });
        expect(enc.status).toBe(200);
        const out = await compactDecrypt(enc.body.jwe, priv);
        expect(new TextDecoder().decode(out.plaintext)).toBe(`from the service, ${alg}`);
        expect(out.protectedHeader).toMatchObject({ alg: alg === "A256GCM" ? "dir" : alg, enc: "A256GCM", kid: `${imp.body.id}.v1` });

        // And jose encrypts with the caller's copy, the service decrypts.
        const encKey = (SYM_ENC_ALGS as readonly string[]).includes(alg) ? priv : await importJWK((await publicJwks(imp.body.id)).keys[0]!, alg);
        const jwe = await new CompactEncrypt(new TextEncoder().encode("from jose"))
          .setProtectedHeader({ alg: alg === "A256GCM" ? "dir" : alg, enc: "A256GCM", kid: `${imp.body.id}.v1` })
          .encrypt(encKey);
        const dec = await j().req("POST", `/keys/${imp.body.id}/decrypt`, { jwe });
        expect(dec.status).toBe(200);
        expect(text(dec.body.plaintext)).toBe("from jose");
      });
    }
  });

  describe("tokens jose signs with a private key imported into the service validate there", () => {
    for (const alg of SIGN_ALGS) {
      test(alg, async () => {
        const pair = await generateKeyPair(alg, { extractable: true });
        const imp = await j().req("POST", "/keys/import", { name: safe(`imp-sig-${alg}`), algorithm: alg, jwk: await exportJWK(pair.privateKey) });
        expect(imp.status).toBe(201);
        const kid = `${imp.body.id}.v1`;
        const now = Math.floor(Date.now() / 1000);
        const token = await new SignJWT({ role: "admin" })
          .setProtectedHeader({ alg, kid, typ: "at+jwt" })
          .setIssuer("https://jose-client.example")
          .setAudience("svc")
          .setIssuedAt(now)
          .setExpirationTime(now + 60)
          .sign(pair.privateKey);
        const ok = await j().req("POST", `/keys/${imp.body.id}/jwt/validate`, { jwt: token, iss: "https://jose-client.example", aud: "svc", typ: "at+jwt", required_claims: ["role"] });
        expect(ok.status).toBe(200);
        expect(ok.body).toMatchObject({ valid: true, kid, claims: { role: "admin" } });
        // The public JWKS publishes exactly the imported public key.
        const pub = (await publicJwks(imp.body.id)).keys[0]!;
        const mine = await exportJWK(pair.publicKey);
        expect(pub.x).toBe(mine.x!);
        expect(pub.n).toBe(mine.n!);
        // The service's own signatures with the imported key verify with the caller's public key.
        const signed = await j().req("POST", `/keys/${imp.body.id}/sign`, { payload: b64u("imported") });
        await compactVerify(signed.body.jws, pair.publicKey);
      });
    }

    test("a public-only import verifies jose's tokens but cannot sign", async () => {
      const pair = await generateKeyPair("ES256", { extractable: true });
      const imp = await j().req("POST", "/keys/import", { name: "imp-public-es256", algorithm: "ES256", jwk: await exportJWK(pair.publicKey) });
      expect(imp.status).toBe(201);
      const token = await new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: `${imp.body.id}.v1` }).setExpirationTime("1m").sign(pair.privateKey);
      expect((await j().req("POST", `/keys/${imp.body.id}/jwt/validate`, { jwt: token })).status).toBe(200);
      const refused = await j().req("POST", `/keys/${imp.body.id}/sign`, { payload: b64u("x") });
      expect([refused.status, refused.body.error.code]).toEqual([409, "key_public_only"]);
      expect((await j().req("POST", `/keys/${imp.body.id}/jwt`, { ttl_s: 60 })).body.error.code).toBe("key_public_only");
    });

    test("HS256: the service issues with an imported secret, jose verifies; jose's HS256 tokens validate", async () => {
      const secret = crypto.getRandomValues(new Uint8Array(32));
      const imp = await j().req("POST", "/keys/import", { name: "imp-hs256", algorithm: "HS256", jwk: { kty: "oct", k: b64u(secret) } });
      expect(imp.status).toBe(201);
      const issued = await j().req("POST", `/keys/${imp.body.id}/jwt`, { ttl_s: 60, aud: ["a", "b"], jti: true });
      const r = await jwtVerify(issued.body.jwt, secret, { audience: "b", algorithms: ["HS256"] });
      expect(typeof r.payload.jti).toBe("string");
      const token = await new SignJWT({ x: 1 }).setProtectedHeader({ alg: "HS256", kid: `${imp.body.id}.v1` }).setExpirationTime("1m").sign(secret);
      expect((await j().req("POST", `/keys/${imp.body.id}/jwt/validate`, { jwt: token })).body.claims.x).toBe(1);
      // HMAC keys are never published.
      expect((await j().pub(`/t/tenant-a/jwks/${imp.body.id}`)).status).toBe(400);
    });
  });
}
