/**
 * The in-memory providers (wasm and webcrypto) behind the CryptoProvider interface:
 * Wycheproof AES-GCM, ECDSA (P1363) and ECDH, RFC 3394 key wrap, HMAC, and the errors bad
 * input gives.
 */
import { describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { p256, p384 } from "@noble/curves/nist.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { AppError } from "../../src/service/errors.ts";
import { type CryptoProvider, type EcCurve, type HashAlg, type TokenKey, rawKey } from "../../src/crypto/provider.ts";
import { createWasmProvider } from "../../src/crypto/wasm-provider.ts";
import { createWebCryptoProvider } from "../../src/crypto/webcrypto.ts";
import { appError } from "../support/app-error.ts";

const here = fileURLToPath(new URL(".", import.meta.url));
const vectors = (name: string) => JSON.parse(readFileSync(join(here, "../vectors/wycheproof", name), "utf8"));
const fromHex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const noble = { "P-256": p256, "P-384": p384 } as const;


/** An in-memory EC private key from a scalar, with its public point computed by @noble/curves (memoized: vectors reuse scalars). */
const publicOf = new Map<string, Uint8Array>();
function ecPrivate(curve: EcCurve, d: Uint8Array) {
  const id = `${curve}:${toHex(d)}`;
  let pub = publicOf.get(id);
  if (!pub) publicOf.set(id, (pub = noble[curve].getPublicKey(d, false)));
  return rawKey("ec-private", d, { curve, publicKey: pub });
}

const providers: CryptoProvider[] = [createWasmProvider(), createWebCryptoProvider()];

for (const p of providers) {
  describe(`${p.name} provider`, () => {
    test("Wycheproof aes_gcm (96-bit IV, 128-bit tag)", async () => {
      let checked = 0;
      for (const g of vectors("aes_gcm_test.json").testGroups) {
        if (g.ivSize !== 96 || g.tagSize !== 128) continue;
        for (const t of g.tests) {
          const key = rawKey("aes", fromHex(t.key));
          const iv = fromHex(t.iv);
          const aad = t.aad ? fromHex(t.aad) : undefined;
          if (t.result === "valid") {
            expect(toHex(await p.aesGcmEncrypt(key, iv, fromHex(t.msg), aad))).toBe(t.ct + t.tag);
            expect(toHex(await p.aesGcmDecrypt(key, iv, fromHex(t.ct + t.tag), aad))).toBe(t.msg);
          } else {
            const e = await appError(p.aesGcmDecrypt(key, iv, fromHex(t.ct + t.tag), aad));
            expect([e.code, e.status]).toEqual(["decryption_failed", 400]);
          }
          checked++;
        }
      }
      expect(checked).toBe(197);
    });

    for (const file of ["ecdsa_secp256r1_sha256_p1363_test.json", "ecdsa_secp384r1_sha384_p1363_test.json"]) {
      test(`Wycheproof ${file}`, async () => {
        let checked = 0;
        for (const g of vectors(file).testGroups) {
          const curve: EcCurve = g.publicKey.curve === "secp256r1" ? "P-256" : "P-384";
          const pub = rawKey("ec-public", fromHex(g.publicKey.uncompressed), { curve });
          for (const t of g.tests) {
            if (t.result === "acceptable") continue;
            const ok = await p.verify(pub, g.sha, fromHex(t.msg), fromHex(t.sig));
            if (ok !== (t.result === "valid")) throw new Error(`tcId ${t.tcId} (${t.comment}): got ${ok}, expected ${t.result}`);
            checked++;
          }
        }
        expect(checked).toBeGreaterThan(200);
      });
    }

    for (const [file, curve, prefix] of [
      ["ecdh_secp256r1_test.json", "P-256", "3059301306072a8648ce3d020106082a8648ce3d030107034200"],
      ["ecdh_secp384r1_test.json", "P-384", "3076301006072a8648ce3d020106052b81040022036200"],
    ] as const) {
      test(`Wycheproof ${file} (uncompressed named-curve public keys)`, async () => {
        const n = curve === "P-256" ? 32 : 48;
        let valid = 0;
        let refused = 0;
        for (const g of vectors(file).testGroups) {
          for (const t of g.tests) {
            if (t.result === "acceptable") continue;
            // Keys in other encodings (compressed, explicit parameters, wrong curve) are out of scope of this API.
            if (!t.public.startsWith(prefix) || t.public.length !== prefix.length + (2 * n + 1) * 2) continue;
            const dHex = (t.private as string).replace(/^(00)+/, "").padStart(2 * n, "0");
            if (dHex.length !== 2 * n) continue;
            const priv = ecPrivate(curve, fromHex(dHex));
            const peer = fromHex(t.public.slice(prefix.length));
            if (t.result === "valid") {
              const z = await p.ecdh(priv, peer);
              expect(z.location === "raw" && toHex(z.material)).toBe(t.shared);
              valid++;
            } else {
              expect((await appError(p.ecdh(priv, peer))).code).toBe("malformed_input");
              refused++;
            }
          }
        }
        expect(valid).toBeGreaterThan(10);
        expect(refused).toBeGreaterThan(0);
      });
    }

    for (const curve of ["P-256", "P-384"] as EcCurve[]) {
      test(`${curve}: generated keys sign (P1363) for every hash; noble and WebCrypto agree`, async () => {
        const { privateKey, publicKey } = await p.generateEcKeyPair(curve);
        expect(publicKey.material.length).toBe(curve === "P-256" ? 65 : 97);
        for (const hash of ["SHA-256", "SHA-384", "SHA-512"] as HashAlg[]) {
          const msg = crypto.getRandomValues(new Uint8Array(77));
          const sig = await p.sign(privateKey, hash, msg);
          const digest = hash === "SHA-512" ? sha512(msg) : new Uint8Array(await crypto.subtle.digest(hash, msg));
          expect(noble[curve].verify(sig, digest, publicKey.material, { prehash: false, lowS: false })).toBe(true);
          for (const q of providers) expect(await q.verify(publicKey, hash, msg, sig)).toBe(true);
          msg[0] = (msg[0] as number) ^ 1;
          for (const q of providers) expect(await q.verify(publicKey, hash, msg, sig)).toBe(false);
        }
      });
    }

    test("HMAC matches Wycheproof hmac_sha256 (full-length tags); digest matches SHA-256 of 'abc'", async () => {
      let checked = 0;
      for (const g of vectors("hmac_sha256_test.json").testGroups) {
        if (g.tagSize !== 256) continue;
        for (const t of g.tests) {
          if (t.key.length === 0) continue;
          const mac = await p.hmac("SHA-256", rawKey("secret", fromHex(t.key)), fromHex(t.msg));
          expect(toHex(mac) === t.tag).toBe(t.result === "valid");
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(50);
      expect(toHex(await p.digest("SHA-256", new TextEncoder().encode("abc")))).toBe(
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
      );
    });

    test("bad input gives typed errors", async () => {
      const key = await p.generateAesKey(128);
      expect((await appError(p.aesGcmEncrypt(key, new Uint8Array(8), new Uint8Array(1)))).code).toBe("malformed_input");
      expect((await appError(p.aesGcmDecrypt(key, new Uint8Array(12), new Uint8Array(10)))).code).toBe("malformed_input");
      expect((await appError(p.aesGcmEncrypt(key, new Uint8Array(12), "text" as unknown as Uint8Array))).code).toBe("malformed_input");
      expect((await appError(p.digest("MD5" as HashAlg, new Uint8Array(1)))).code).toBe("malformed_input");
      expect((await appError(p.generateEcKeyPair("P-521" as EcCurve))).code).toBe("malformed_input");
      expect((await appError(p.generateAesKey(100 as 128))).code).toBe("malformed_input");
      const pair = await p.generateEcKeyPair("P-256");
      expect((await appError(p.aesGcmEncrypt(pair.privateKey, new Uint8Array(12), new Uint8Array(1)))).code).toBe("malformed_input");
      expect(await p.verify(pair.publicKey, "SHA-256", new Uint8Array(3), new Uint8Array(63))).toBe(false);
      const offCurve = pair.publicKey.material.slice();
      offCurve[40] = (offCurve[40] as number) ^ 1;
      expect((await appError(p.ecdh(pair.privateKey, offCurve))).code).toBe("malformed_input");
      expect((await appError(p.ecdh(pair.privateKey, pair.publicKey.material.subarray(1)))).code).toBe("malformed_input");
      // A key that lives in a token is never handed to an in-memory provider.
      const tokenKey: TokenKey = { location: "token", provider: "pkcs11", token: "t", type: "aes", label: "k", id: "00", persistent: false, handle: 1, bits: 128 };
      expect((await appError(p.aesGcmEncrypt(tokenKey, new Uint8Array(12), new Uint8Array(1)))).code).toBe("bad_request");
    });
  });
}

describe("key wrap (RFC 3394)", () => {
  const web = createWebCryptoProvider();
  const wasm = createWasmProvider();

  test("webcrypto matches RFC 3394 section 4.6 (256-bit key under a 256-bit KEK)", async () => {
    const kek = rawKey("aes", fromHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"));
    const key = rawKey("aes", fromHex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f"));
    const wrapped = await web.wrapKey(kek, key);
    expect(toHex(wrapped)).toBe("28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21");
    const back = await web.unwrapKey(kek, wrapped, { type: "aes" });
    expect(back.location === "raw" && toHex(back.material)).toBe(toHex(key.material));
    wrapped[0] = (wrapped[0] as number) ^ 1;
    expect((await appError(web.unwrapKey(kek, wrapped, { type: "aes" }))).code).toBe("decryption_failed");
    expect((await appError(web.wrapKey(kek, rawKey("secret", new Uint8Array(12))))).code).toBe("malformed_input");
  });

  test("wasm says it does not wrap, and refuses clearly", async () => {
    expect(wasm.supports("wrapKey")).toBe(false);
    expect(wasm.supports("unwrapKey")).toBe(false);
    expect(web.supports("wrapKey", { keyBits: 256 })).toBe(true);
    const k = rawKey("aes", new Uint8Array(16));
    expect((await appError(wasm.wrapKey(k, k))).code).toBe("unavailable");
  });
});

describe("Deno", () => {
  const deno = fileURLToPath(new URL("../../node_modules/.bin/deno", import.meta.url));
  if (!existsSync(deno)) {
    if (process.env.CI === "true") test("deno is installed (devDependency)", () => expect(existsSync(deno)).toBe(true));
    else console.warn("[skip] Deno import check: node_modules/.bin/deno not found (run npm install)");
    return;
  }
  test("src/crypto imports unchanged on Deno and the dispatcher works there", () => {
    const index = new URL("../../src/crypto/index.ts", import.meta.url).href;
    const script = `
      const m = await import(${JSON.stringify(index)});
      const d = await m.createCrypto();
      const k = await d.generateAesKey(256);
      const iv = new Uint8Array(12);
      const pt = await d.aesGcmDecrypt(k, iv, await d.aesGcmEncrypt(k, iv, new Uint8Array([7, 8, 9])));
      const pair = await d.generateEcKeyPair("P-384");
      const sig = await d.sign(pair.privateKey, "SHA-384", pt);
      console.log(JSON.stringify({ pt: [...pt], ok: await d.verify(pair.publicKey, "SHA-384", pt, sig), small: d.route("aesGcmEncrypt", { size: 10 }).name }));
    `;
    const r = spawnSync(deno, ["eval", "--no-prompt", script], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" }, timeout: 60_000 });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout.trim())).toEqual({ pt: [7, 8, 9], ok: true, small: "wasm" });
  }, 60_000);
});
