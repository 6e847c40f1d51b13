/**
 * Differential tests on random inputs: wasm, webcrypto and pkcs11 (SoftHSM2) must produce
 * the same AES-GCM ciphertexts, digests and HMACs, accept each other's ECDSA signatures, and
 * agree on ECDH secrets.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type CryptoProvider, type EcCurve, type HashAlg, type KeyHandle, rawKey } from "../../src/crypto/provider.ts";
import { Pkcs11Provider } from "../../src/crypto/pkcs11/index.ts";
import { createWasmProvider } from "../../src/crypto/wasm-provider.ts";
import { createWebCryptoProvider } from "../../src/crypto/webcrypto.ts";
import { setupSoftHsm } from "../support/softhsm.ts";

const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));
const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)] as T;
const HASHES: HashAlg[] = ["SHA-256", "SHA-384", "SHA-512"];
const SIZES = [0, 1, 15, 16, 17, 63, 64, 65, 255, 1000, 4096, 5003];

const wasm = createWasmProvider();
const web = createWebCryptoProvider();
const hsm = await setupSoftHsm();
let p11: Pkcs11Provider | undefined;

beforeAll(async () => {
  if (hsm) p11 = await Pkcs11Provider.open(hsm.createToken("cu-diff").config);
});
afterAll(async () => {
  await p11?.close();
  hsm?.cleanup();
});

/** The providers in play, each with the key form it takes for the given raw material. */
async function contenders(material: Uint8Array, type: "aes" | "secret"): Promise<[CryptoProvider, KeyHandle][]> {
  const raw = rawKey(type, material);
  const out: [CryptoProvider, KeyHandle][] = [
    [wasm, raw],
    [web, raw],
  ];
  if (p11) out.push([p11, await p11.importKey(raw)]);
  return out;
}

describe(`differential: wasm vs webcrypto${hsm ? " vs pkcs11" : " (pkcs11 skipped: SoftHSM2 missing)"}`, () => {
  test("AES-GCM: identical ciphertexts, and each decrypts the others' output", async () => {
    for (let i = 0; i < 36; i++) {
      const bits = pick([128, 192, 256] as const);
      const each = await contenders(rand(bits / 8), "aes");
      const iv = rand(12);
      const data = rand(SIZES[i % SIZES.length] as number);
      const aad = i % 3 === 0 ? undefined : rand(i % 40);
      const outs = await Promise.all(each.map(([p, k]) => p.aesGcmEncrypt(k, iv, data, aad)));
      const hexes = outs.map(toHex);
      expect(new Set(hexes).size).toBe(1);
      for (const [p, k] of each) expect(toHex(await p.aesGcmDecrypt(k, iv, outs[(i + 1) % outs.length] as Uint8Array, aad))).toBe(toHex(data));
    }
  });

  test("digest and HMAC: identical outputs", async () => {
    for (let i = 0; i < 24; i++) {
      const hash = HASHES[i % 3] as HashAlg;
      const data = rand(SIZES[i % SIZES.length] as number);
      const each = await contenders(rand(64), "secret");
      const macs = await Promise.all(each.map(([p, k]) => p.hmac(hash, k, data)));
      expect(new Set(macs.map(toHex)).size).toBe(1);
      const digests = await Promise.all(each.map(([p]) => p.digest(hash, data)));
      expect(new Set(digests.map(toHex)).size).toBe(1);
    }
  });

  for (const curve of ["P-256", "P-384"] as EcCurve[]) {
    test(`${curve} ECDSA: every provider verifies every other's signatures`, async () => {
      const signers: CryptoProvider[] = p11 ? [wasm, web, p11] : [wasm, web];
      for (const signer of signers) {
        const pair = await signer.generateEcKeyPair(curve);
        for (let i = 0; i < 3; i++) {
          const hash = pick(HASHES);
          const msg = rand(1 + Math.floor(Math.random() * 300));
          const sig = await signer.sign(pair.privateKey, hash, msg);
          for (const v of signers) expect(await v.verify(pair.publicKey, hash, msg, sig)).toBe(true);
          const bad = sig.slice();
          const at = Math.floor(Math.random() * bad.length);
          bad[at] = (bad[at] as number) ^ (1 << Math.floor(Math.random() * 8));
          for (const v of signers) expect(await v.verify(pair.publicKey, hash, msg, bad)).toBe(false);
        }
      }
    });

    test(`${curve} ECDH: all providers derive the same secret`, async () => {
      const a = await wasm.generateEcKeyPair(curve);
      const b = await web.generateEcKeyPair(curve);
      const zw = await wasm.ecdh(a.privateKey, b.publicKey.material);
      const zb = await web.ecdh(b.privateKey, a.publicKey.material);
      expect(zw.location === "raw" && toHex(zw.material)).toBe(zb.location === "raw" ? toHex(zb.material) : "");
      if (p11) {
        const c = await p11.generateEcKeyPair(curve);
        const inToken = await p11.ecdh(c.privateKey, a.publicKey.material);
        const outside = await wasm.ecdh(a.privateKey, c.publicKey.material);
        // The token's secret cannot be read: compare HMACs under it.
        const msg = rand(40);
        const hash: HashAlg = curve === "P-256" ? "SHA-256" : "SHA-384";
        expect(toHex(await p11.hmac(hash, inToken, msg))).toBe(toHex(await web.hmac(hash, outside, msg)));
      }
    });
  }

  test("key wrap: webcrypto and pkcs11 produce the same RFC 3394 output", async () => {
    if (!p11) {
      console.warn("[skip] pkcs11 wrap differential: SoftHSM2 missing");
      return;
    }
    for (const len of [16, 24, 32, 40, 64]) {
      const kekMaterial = rand(pick([16, 24, 32]));
      const kek = await p11.importKey(rawKey("aes", kekMaterial));
      const key = rawKey("secret", rand(len));
      expect(toHex(await p11.wrapKey(kek, key))).toBe(toHex(await web.wrapKey(rawKey("aes", kekMaterial), key)));
    }
  });
});
