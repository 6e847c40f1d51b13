/**
 * The JWE pieces used for HSM-held keys, without a token: Concat KDF against RFC 7518
 * Appendix C, content encryption (A256GCM, A128CBC-HS256) both ways against `jose` (as `dir`
 * with the same CEK), OAEP decoding against WebCrypto, and strict parsing with stable codes.
 */
import { describe, expect, test } from "bun:test";
import { CompactEncrypt, compactDecrypt, flattenedDecrypt } from "jose";
import { concatKdf, decryptContent, encryptContent, oaepDecode, parseJwe } from "../../src/keyring/jwe-parts.ts";

const b64u = (b: Uint8Array | string) => Buffer.from(typeof b === "string" ? new TextEncoder().encode(b) : b).toString("base64url");
const text = (b: Uint8Array) => new TextDecoder().decode(b);

describe("Concat KDF", () => {
  test("RFC 7518 Appendix C", () => {
    const z = new Uint8Array([158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196]);
    const k = concatKdf(z, "A128GCM", 128, new TextEncoder().encode("Alice"), new TextEncoder().encode("Bob"));
    expect(b64u(k)).toBe("VqqN6vgjbSBcIijNcacQGg");
    expect(concatKdf(z, "A128GCM", 512, new Uint8Array(0), new Uint8Array(0)).length).toBe(64);
  });
});

describe("content encryption interoperates with jose", () => {
  for (const enc of ["A256GCM", "A128CBC-HS256"] as const) {
    test(`${enc}: ours opens in jose, jose's opens in ours, a changed tag or AAD fails`, async () => {
      const cek = crypto.getRandomValues(new Uint8Array(32));
      const p = b64u(JSON.stringify({ alg: "dir", enc }));
      const aad = new TextEncoder().encode(p);
      const c = await encryptContent(enc, cek, new TextEncoder().encode("ours"), aad);
      const compact = [p, "", b64u(c.iv), b64u(c.ciphertext), b64u(c.tag)].join(".");
      expect(text((await compactDecrypt(compact, cek)).plaintext)).toBe("ours");

      const theirs = await new CompactEncrypt(new TextEncoder().encode("theirs")).setProtectedHeader({ alg: "dir", enc }).encrypt(cek);
      expect(text(await decryptContent(enc, cek, parseJwe(theirs)))).toBe("theirs");
      const parts = parseJwe(theirs);
      await expect(decryptContent(enc, cek, { ...parts, tag: parts.tag.map((x, i) => (i === 0 ? x ^ 1 : x)) })).rejects.toMatchObject({ code: "decryption_failed" });
      await expect(decryptContent(enc, cek, { ...parts, aad: new TextEncoder().encode(`${p}x`) })).rejects.toMatchObject({ code: "decryption_failed" });
      await expect(decryptContent(enc, cek, { ...parts, iv: parts.iv.subarray(1) })).rejects.toMatchObject({ code: "decryption_failed" });

      // Flattened JSON with a JWE aad: the AAD is protected || '.' || aad.
      const jsonAad = b64u('{"a":"1"}');
      const full = new TextEncoder().encode(`${p}.${jsonAad}`);
      const j = await encryptContent(enc, cek, new TextEncoder().encode("json"), full);
      const flat = { protected: p, iv: b64u(j.iv), ciphertext: b64u(j.ciphertext), tag: b64u(j.tag), aad: jsonAad };
      expect(text((await flattenedDecrypt(flat, cek)).plaintext)).toBe("json");
      expect(Buffer.from(parseJwe(flat).aad).toString()).toBe(`${p}.${jsonAad}`);
    });
  }
});

describe("OAEP decoding", () => {
  test("decodes what WebCrypto's RSA-OAEP-256 encodes (through the raw private operation in BigInt)", async () => {
    const pair = (await crypto.subtle.generateKey({ name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, [
      "encrypt",
      "decrypt",
    ])) as CryptoKeyPair;
    const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
    const big = (s: string) => BigInt(`0x${Buffer.from(s, "base64url").toString("hex")}`);
    const [n, d] = [big(jwk.n!), big(jwk.d!)];
    const modpow = (b: bigint, e: bigint, m: bigint) => {
      let r = 1n;
      for (b %= m; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
      return r;
    };
    for (const len of [0, 1, 32, 190]) {
      const msg = crypto.getRandomValues(new Uint8Array(len));
      const c = new Uint8Array(await crypto.subtle.encrypt({ name: "RSA-OAEP" }, pair.publicKey, msg));
      const em = Buffer.from(modpow(big(b64u(c)), d, n).toString(16).padStart(512, "0"), "hex");
      expect(Buffer.from(oaepDecode(new Uint8Array(em))!)).toEqual(Buffer.from(msg));
      em[0] = 1;
      expect(oaepDecode(new Uint8Array(em))).toBeUndefined();
    }
    expect(oaepDecode(new Uint8Array(10))).toBeUndefined();
    expect(oaepDecode(new Uint8Array(256))).toBeUndefined();
  });
});

describe("parsing", () => {
  test("not JOSE is malformed_jose; zip and crit are decryption_failed; unprotected headers merge, disjoint", () => {
    for (const bad of ["a.b.c", "!!.a.b.c.d", `${b64u("[1]")}....`, `${b64u('{"alg":1,"enc":"A256GCM"}')}....`, `${b64u("not json")}....`]) {
      expect(() => parseJwe(bad)).toThrow(expect.objectContaining({ code: "malformed_jose" }));
    }
    expect(() => parseJwe(`${b64u('{"alg":"dir","enc":"A256GCM","zip":"DEF"}')}....`)).toThrow(expect.objectContaining({ code: "decryption_failed" }));
    expect(() => parseJwe(`${b64u('{"alg":"dir","enc":"A256GCM","crit":["x"],"x":1}')}....`)).toThrow(expect.objectContaining({ code: "decryption_failed" }));
    const p = b64u('{"alg":"dir","enc":"A256GCM"}');
    expect(parseJwe({ protected: p, iv: "", ciphertext: "", tag: "", header: { kid: "x" }, unprotected: { cty: "y" } }).header).toEqual({ alg: "dir", enc: "A256GCM", kid: "x", cty: "y" });
    expect(() => parseJwe({ protected: p, iv: "", ciphertext: "", tag: "", header: { alg: "dir" } })).toThrow(expect.objectContaining({ code: "malformed_jose" }));
    expect(() => parseJwe({ protected: p, iv: "", ciphertext: "", tag: "", header: { kid: "x" }, unprotected: { kid: "x" } })).toThrow(expect.objectContaining({ code: "malformed_jose" }));
    expect(() => parseJwe({ protected: p, iv: "", ciphertext: "", tag: "", header: "kid" })).toThrow(expect.objectContaining({ code: "malformed_jose" }));
    expect(() => parseJwe({ protected: p, iv: "", ciphertext: "", tag: "", aad: "+/" })).toThrow(expect.objectContaining({ code: "malformed_jose" }));
    expect(parseJwe(`${p}....`).header).toEqual({ alg: "dir", enc: "A256GCM" });
  });
});
