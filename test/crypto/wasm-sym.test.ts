// Differential tests of the WASM core's symmetric functions against WebCrypto
// and @noble/*, plus its error contract.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { gcm } from "@noble/ciphers/aes.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { wasmCore, wasmVariant } from "../../src/crypto/wasm.ts";
import type { SymExports } from "../../src/crypto/wasm-runtime.ts";
import { AppError } from "../../src/service/errors.ts";

const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const randInt = (n: number): number => Math.floor(Math.random() * n);
const noble = { "SHA-256": sha256, "SHA-384": sha384, "SHA-512": sha512 } as const;
const hashes = ["SHA-256", "SHA-384", "SHA-512"] as const;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof AppError ? `${e.code}/${e.status}` : `other: ${String(e)}`;
  }
  return "no error";
}

describe("AES-GCM", () => {
  test("every plaintext size 0..1024 matches WebCrypto and @noble/ciphers, and round-trips", async () => {
    const mismatches: number[] = [];
    for (let n = 0; n <= 1024; n++) {
      const key = rnd(n % 2 === 0 ? 32 : 16);
      // Mostly 96-bit IVs (the fast path); every fifth size another length.
      const iv = rnd(n % 5 === 0 ? 8 + randInt(57) : 12);
      const aad = rnd(randInt(3) === 0 ? 0 : randInt(80));
      const pt = rnd(n);
      const got = wasmCore.aesGcmEncrypt(key, iv, pt, aad);
      const ck = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
      const want = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad }, ck, pt));
      const nob = gcm(key, iv, aad).encrypt(pt);
      if (!Buffer.from(got).equals(want) || !Buffer.from(got).equals(nob)) mismatches.push(n);
      else if (!Buffer.from(wasmCore.aesGcmDecrypt(key, iv, got, aad)).equals(pt)) mismatches.push(-n - 1);
    }
    expect(mismatches).toEqual([]);
  });

  test("AES-192 and short IVs match @noble/ciphers / WebCrypto", async () => {
    for (let i = 0; i < 64; i++) {
      const key = rnd(24), iv = rnd(8 + randInt(30)), pt = rnd(randInt(300)), aad = rnd(randInt(40));
      expect(Buffer.from(wasmCore.aesGcmEncrypt(key, iv, pt, aad))).toEqual(Buffer.from(gcm(key, iv, aad).encrypt(pt)));
      const k2 = rnd(16), iv2 = rnd(1 + randInt(7));
      const ck = await crypto.subtle.importKey("raw", k2, "AES-GCM", false, ["encrypt"]);
      const want = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv: iv2 }, ck, pt));
      expect(Buffer.from(wasmCore.aesGcmEncrypt(k2, iv2, pt))).toEqual(Buffer.from(want));
    }
  });

  test("a large message (1 MiB + 13) matches @noble/ciphers", () => {
    const key = rnd(32), iv = rnd(12), pt = rnd((1 << 20) + 13), aad = rnd(33);
    const c = wasmCore.aesGcmEncrypt(key, iv, pt, aad);
    expect(Buffer.from(c).equals(gcm(key, iv, aad).encrypt(pt))).toBe(true);
    expect(Buffer.from(wasmCore.aesGcmDecrypt(key, iv, c, aad)).equals(pt)).toBe(true);
  });

  test("any change to ciphertext, tag, AAD, IV or key fails with decryption_failed", () => {
    const key = rnd(32), iv = rnd(12), aad = rnd(20), pt = rnd(100);
    const c = wasmCore.aesGcmEncrypt(key, iv, pt, aad);
    for (const pos of [0, 50, 99, 100, 115]) {
      const bad = c.slice();
      bad[pos]! ^= 1;
      expect(codeOf(() => wasmCore.aesGcmDecrypt(key, iv, bad, aad))).toBe("decryption_failed/400");
    }
    const flip = (b: Uint8Array) => { const x = b.slice(); x[0]! ^= 0x80; return x; };
    expect(codeOf(() => wasmCore.aesGcmDecrypt(key, iv, c, flip(aad)))).toBe("decryption_failed/400");
    expect(codeOf(() => wasmCore.aesGcmDecrypt(key, flip(iv), c, aad))).toBe("decryption_failed/400");
    expect(codeOf(() => wasmCore.aesGcmDecrypt(flip(key), iv, c, aad))).toBe("decryption_failed/400");
    expect(codeOf(() => wasmCore.aesGcmDecrypt(key, iv, c.subarray(0, 15), aad))).toBe("decryption_failed/400");
    expect(codeOf(() => wasmCore.aesGcmDecrypt(key, iv, c.subarray(0, c.length - 1), aad))).toBe("decryption_failed/400");
  });

  test("a prepared key gives the raw key's answers: every size 0..300, IVs of 1..64 bytes, AES-128/192/256", () => {
    for (const keyLen of [16, 24, 32]) {
      const key = rnd(keyLen);
      const k = wasmCore.aesGcmPrepareKey(key);
      expect(k.length).toBe(keyLen);
      for (let n = 0; n <= 300; n++) {
        const iv = rnd(n % 7 === 0 ? 1 + randInt(64) : 12), aad = rnd(n % 23), pt = rnd(n);
        const sealed = wasmCore.aesGcmEncrypt(k, iv, pt, aad);
        // @noble/ciphers takes IVs of 8 bytes and more; the raw-key path (checked against
        // WebCrypto for short IVs above) answers for all.
        expect(Buffer.from(sealed)).toEqual(Buffer.from(wasmCore.aesGcmEncrypt(key, iv, pt, aad)));
        if (iv.length >= 8) expect(Buffer.from(sealed).toString("hex")).toBe(Buffer.from(gcm(key, iv, aad).encrypt(pt)).toString("hex"));
        expect(Buffer.from(wasmCore.aesGcmDecrypt(k, iv, sealed, aad))).toEqual(Buffer.from(pt));
        const forged = sealed.slice();
        forged[randInt(forged.length)]! ^= 1 << randInt(8);
        expect(codeOf(() => wasmCore.aesGcmDecrypt(k, iv, forged, aad))).toBe("decryption_failed/400");
      }
      // Long messages and AAD (H powers from the prepared state).
      const big = rnd(70_000), aad = rnd(5000), iv = rnd(12);
      expect(Buffer.from(wasmCore.aesGcmEncrypt(k, iv, big, aad))).toEqual(Buffer.from(gcm(key, iv, aad).encrypt(big)));
      k.destroy();
      expect(codeOf(() => wasmCore.aesGcmEncrypt(k, iv, big))).toBe("malformed_input/400");
      expect(codeOf(() => wasmCore.aesGcmEncrypt(new wasmCore.AesGcmKey(keyLen), iv, big))).toBe("malformed_input/400");
    }
    expect(codeOf(() => wasmCore.aesGcmPrepareKey(rnd(20)))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.aesGcmPrepareKey("k" as never))).toBe("malformed_input/400");
  });

  test("bad arguments give malformed_input", () => {
    const pt = rnd(10);
    for (const len of [0, 8, 15, 17, 31, 33, 64]) {
      expect(codeOf(() => wasmCore.aesGcmEncrypt(rnd(len), rnd(12), pt))).toBe("malformed_input/400");
      expect(codeOf(() => wasmCore.aesGcmDecrypt(rnd(len), rnd(12), rnd(32)))).toBe("malformed_input/400");
    }
    expect(codeOf(() => wasmCore.aesGcmEncrypt(rnd(16), new Uint8Array(0), pt))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.aesGcmDecrypt(rnd(16), new Uint8Array(0), rnd(32)))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.aesGcmEncrypt("k" as unknown as Uint8Array, rnd(12), pt))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.aesGcmEncrypt(rnd(16), rnd(12), [1, 2] as unknown as Uint8Array))).toBe("malformed_input/400");
  });
});

describe("SHA-2, HMAC, HKDF", () => {
  test("SHA-256/384/512 match @noble/hashes on random sizes", () => {
    const sizes = [0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 1000, 100_000];
    for (let i = 0; i < 60; i++) sizes.push(randInt(3000));
    for (const n of sizes) {
      const d = rnd(n);
      expect(Buffer.from(wasmCore.sha256(d)).toString("hex")).toBe(Buffer.from(sha256(d)).toString("hex"));
      expect(Buffer.from(wasmCore.sha384(d)).toString("hex")).toBe(Buffer.from(sha384(d)).toString("hex"));
      expect(Buffer.from(wasmCore.sha512(d)).toString("hex")).toBe(Buffer.from(sha512(d)).toString("hex"));
    }
  });

  test("SHA-256 matches WebCrypto", async () => {
    for (const n of [0, 3, 64, 200, 5000]) {
      const d = rnd(n);
      const want = new Uint8Array(await crypto.subtle.digest("SHA-256", d));
      expect(Buffer.from(wasmCore.sha256(d))).toEqual(Buffer.from(want));
    }
  });

  test("HMAC matches @noble/hashes and WebCrypto on random key and data sizes", async () => {
    for (let i = 0; i < 60; i++) {
      const h = hashes[i % 3]!;
      const key = rnd(randInt(i % 4 === 0 ? 300 : 140)), data = rnd(randInt(600));
      const got = wasmCore.hmac(h, key, data);
      expect(Buffer.from(got)).toEqual(Buffer.from(hmac(noble[h], key, data)));
      if (key.length > 0) {
        const ck = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: h }, false, ["sign"]);
        expect(Buffer.from(got)).toEqual(Buffer.from(new Uint8Array(await crypto.subtle.sign("HMAC", ck, data))));
      }
    }
  });

  test("HKDF matches @noble/hashes and WebCrypto on random sizes", async () => {
    for (let i = 0; i < 60; i++) {
      const h = hashes[i % 3]!;
      const ikm = rnd(1 + randInt(100)), salt = rnd(randInt(200)), info = rnd(randInt(100));
      const len = randInt(i % 5 === 0 ? 2000 : 100);
      const got = wasmCore.hkdf(h, ikm, salt, info, len);
      expect(Buffer.from(got)).toEqual(Buffer.from(hkdf(noble[h], ikm, salt, info, len)));
      if (len > 0) {
        const ck = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveBits"]);
        const bits = await crypto.subtle.deriveBits({ name: "HKDF", hash: h, salt, info }, ck, len * 8);
        expect(Buffer.from(got)).toEqual(Buffer.from(new Uint8Array(bits)));
      }
    }
  });

  test("bad arguments give malformed_input", () => {
    expect(codeOf(() => wasmCore.hmac("MD5" as "SHA-256", rnd(3), rnd(3)))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.hkdf("SHA-256", rnd(3), rnd(3), rnd(3), 255 * 32 + 1))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.hkdf("SHA-512", rnd(3), rnd(3), rnd(3), -1))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.hkdf("SHA-512", rnd(3), rnd(3), rnd(3), 1.5))).toBe("malformed_input/400");
    expect(codeOf(() => wasmCore.sha256("abc" as unknown as Uint8Array))).toBe("malformed_input/400");
    expect(wasmCore.hkdf("SHA-384", rnd(3), rnd(3), rnd(3), 255 * 48).length).toBe(255 * 48);
  });
});

// The dispatcher loads one build; check the other build's AES-GCM and SHA-2 too.
describe("both builds", () => {
  test(`loaded variant is ${wasmVariant()}; scalar and SIMD builds agree with @noble`, () => {
    for (const file of ["core.wasm", "core-simd.wasm"]) {
      const bytes = readFileSync(new URL(`../../wasm/build/${file}`, import.meta.url));
      if (file === "core-simd.wasm" && !WebAssembly.validate(bytes)) continue;
      const ex = new WebAssembly.Instance(new WebAssembly.Module(bytes), {}).exports as unknown as SymExports;
      for (const n of [0, 1, 16, 31, 32, 33, 64, 100, 127, 128, 129, 255, 256, 1000, 4099]) {
        for (const ivLen of [12, 16]) {
          const key = rnd(n % 3 === 0 ? 16 : 32), iv = rnd(ivLen), aad = rnd(n % 17), pt = rnd(n);
          const base = ex.scratch(96 + 3 * n + 256 + 16 + ex.aesGcmContextSize());
          const m = new Uint8Array(ex.memory.buffer);
          const [ko, io, ao, po] = [base, base + 32, base + 64, base + 96];
          const oo = po + n + 16;
          m.set(key, ko); m.set(iv, io); m.set(aad, ao); m.set(pt, po);
          expect(ex.aesGcmSeal(ko, key.length, io, iv.length, ao, aad.length, po, n, oo)).toBe(0);
          const got = m.slice(oo, oo + n + 16);
          expect(Buffer.from(got).toString("hex")).toBe(Buffer.from(gcm(key, iv, aad).encrypt(pt)).toString("hex"));
          // A forged tag: status 2 and not one byte of plaintext written.
          const tagAt = oo + n;
          const d = m.slice(oo, oo + n + 16);
          m[tagAt + randInt(16)]! ^= 1 << randInt(8);
          const outAt = oo + n + 32;
          m.fill(0xaa, outAt, outAt + n);
          expect(ex.aesGcmOpen(ko, key.length, io, iv.length, ao, aad.length, oo, n, tagAt, outAt)).toBe(2);
          expect(m.subarray(outAt, outAt + n).every((b) => b === 0xaa)).toBe(true);
          m.set(d, oo);
          expect(ex.aesGcmOpen(ko, key.length, io, iv.length, ao, aad.length, oo, n, tagAt, outAt)).toBe(0);
          expect(Buffer.from(m.slice(outAt, outAt + n))).toEqual(Buffer.from(pt));
          // Bad arguments are status codes, never traps.
          expect(ex.aesGcmSeal(ko, 20, io, iv.length, ao, aad.length, po, n, oo)).toBe(1);
          expect(ex.aesGcmSeal(ko, key.length, io, 0, ao, aad.length, po, n, oo)).toBe(3);
          expect(ex.aesGcmOpen(ko, key.length, io, iv.length, ao, -1, oo, n, tagAt, outAt)).toBe(4);
          // The same through a prepared key (its state at the end of scratch), and its
          // round count checked: a corrupted one is refused, not used.
          const cx = (base + 96 + 3 * n + 256 + 15) & ~15;
          expect(ex.aesGcmPrepare(ko, key.length, cx)).toBe(0);
          expect(ex.aesGcmSealPrepared(cx, io, iv.length, ao, aad.length, po, n, oo)).toBe(0);
          expect(Buffer.from(m.slice(oo, oo + n + 16))).toEqual(Buffer.from(got));
          expect(ex.aesGcmOpenPrepared(cx, io, iv.length, ao, aad.length, oo, n, tagAt, outAt)).toBe(0);
          expect(Buffer.from(m.slice(outAt, outAt + n))).toEqual(Buffer.from(pt));
          const roundsAt = cx + ex.aesGcmContextSize() - (file === "core.wasm" ? 15 * 64 : 15 * 128) - 16;
          const saved = m[roundsAt]!;
          m[roundsAt] = 11;
          expect(ex.aesGcmSealPrepared(cx, io, iv.length, ao, aad.length, po, n, oo)).toBe(1);
          m[roundsAt] = saved;
          ex.sha2Digest(256, po, n, oo);
          expect(Buffer.from(m.slice(oo, oo + 32))).toEqual(Buffer.from(sha256(pt)));
        }
      }
    }
  });
});
