/** jose-ja's config section and the importer's JWK checks, without a server. */
import { describe, expect, test } from "bun:test";
import { exportJWK, generateKeyPair } from "jose";
import { parseJoseConfig } from "../../apps/jose-ja/domain.ts";
import { normalizeImportedJwk } from "../../src/keyring/import.ts";

describe("app config", () => {
  test("defaults", () => {
    expect(parseJoseConfig(undefined)).toEqual({ jwks_max_age_s: 300, jwt_max_ttl_s: 86_400, rotation_check_s: 60, key_cache_size: 1000, jwks_max_keys: 1000, keyring_software_fallback: false });
    expect(parseJoseConfig({ keyring_software_fallback: true }).keyring_software_fallback).toBe(true);
  });
  test("bad values name the key", () => {
    for (const [cfg, key] of [[{ jwks_max_age_s: -1 }, "app.jwks_max_age_s"], [{ jwt_max_ttl_s: "x" }, "app.jwt_max_ttl_s"], [{ keyring_software_fallback: "yes" }, "app.keyring_software_fallback"], [{ typo: 1 }, "app"]] as const) {
      let err: { code?: string; message?: string } = {};
      try {
        parseJoseConfig(cfg);
      } catch (e) {
        err = e as typeof err;
      }
      expect(err.code).toBe("config_invalid");
      expect(err.message!.startsWith(key)).toBe(true);
    }
  });
});

describe("imported JWK checks", () => {
  test("RSA keys below 2048 bits and private RSA keys without CRT members are refused", async () => {
    // jose refuses to make one, so WebCrypto does.
    const pair = (await crypto.subtle.generateKey({ name: "RSASSA-PKCS1-v1_5", modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
    const small = await crypto.subtle.exportKey("jwk", pair.privateKey);
    await expect(normalizeImportedJwk("RS256", small as Record<string, unknown>)).rejects.toMatchObject({ code: "validation_failed" });
    const big = await exportJWK((await generateKeyPair("PS256", { extractable: true })).privateKey);
    const { p: _p, ...noP } = big;
    await expect(normalizeImportedJwk("PS256", noP as Record<string, unknown>)).rejects.toMatchObject({ code: "validation_failed" });
    const ok = await normalizeImportedJwk("PS256", { ...big, key_ops: ["sign"], ext: true, x5c: ["AAAA"] } as Record<string, unknown>);
    expect(ok.isPrivate).toBe(true);
    expect(Object.keys(ok.jwk).sort()).toEqual(["d", "dp", "dq", "e", "kty", "n", "p", "q", "qi"]);
    const { d: _d, p: _p2, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = big;
    expect((await normalizeImportedJwk("RSA-OAEP-256", pub as Record<string, unknown>)).isPrivate).toBe(false);
  });
  test("unknown algorithms and non-string members are refused", async () => {
    await expect(normalizeImportedJwk("ES999", { kty: "EC" })).rejects.toMatchObject({ code: "validation_failed" });
    await expect(normalizeImportedJwk("HS256", { kty: "oct", k: 42 })).rejects.toMatchObject({ code: "validation_failed" });
    const hs = await normalizeImportedJwk("HS512", { kty: "oct", k: Buffer.from(new Uint8Array(80)).toString("base64url") });
    expect(hs.isPrivate).toBe(true);
  });
});
