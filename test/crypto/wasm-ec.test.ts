/**
 * Differential tests of the WASM core's EC functions against WebCrypto and
 * @noble/curves (random keys and messages for every curve/hash pair), plus
 * bad-input handling (typed errors or false, never a trap).
 */
import { describe, expect, test } from "bun:test";
import { p256, p384 } from "@noble/curves/nist.js";
import { sha512 } from "@noble/hashes/sha2.js";
import {
  derToP1363, ecdhSharedSecret, ecdsaSign, ecdsaVerify, ecGenerateKeyPair, ecPublicKey, ecValidatePublicKey,
  p1363ToDer, type EcCurve, type EcHash,
} from "../../src/crypto/wasm-ec.ts";
import { AppError } from "../../src/service/errors.ts";

const ROUNDS = 200; // per curve/hash pair
const noble = { "P-256": p256, "P-384": p384 } as const;
const size = { "P-256": 32, "P-384": 48 } as const;
const ORDER = {
  "P-256": 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  "P-384": 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
} as const;
const curves: EcCurve[] = ["P-256", "P-384"];
const hashes: EcHash[] = ["SHA-256", "SHA-384", "SHA-512"];
const b64u = (s: string) => Uint8Array.from(Buffer.from(s, "base64url"));
const be = (v: bigint, len: number) => Uint8Array.from(Buffer.from(v.toString(16).padStart(2 * len, "0"), "hex"));

function randomMessage(): Uint8Array<ArrayBuffer> {
  const len = Math.floor(Math.random() * 300);
  return crypto.getRandomValues(new Uint8Array(len));
}

async function webCryptoKeyPair(curve: EcCurve) {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { pair, d: b64u(jwk.d!), raw };
}

function expectMalformed(fn: () => unknown): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(AppError);
  expect((caught as AppError).code).toBe("malformed_input");
}

describe("ECDSA differential", () => {
  for (const curve of curves) {
    for (const hash of hashes) {
      test(`${curve} ${hash}: ${ROUNDS} random keys and messages against WebCrypto and noble`, async () => {
        const n = noble[curve];
        let checked = 0;
        for (let i = 0; i < ROUNDS; i++) {
          const { pair, d, raw } = await webCryptoKeyPair(curve);
          const msg = randomMessage();
          // public key derivation matches WebCrypto
          expect(ecPublicKey(curve, d)).toEqual(raw);
          // ours verifies under WebCrypto and noble (P1363 and DER)
          const sig = ecdsaSign(curve, hash, d, msg, { format: "p1363" });
          expect(sig.length).toBe(2 * size[curve]);
          const wcOk = await crypto.subtle.verify({ name: "ECDSA", hash }, pair.publicKey, sig, msg);
          expect(wcOk).toBe(true);
          const digest = new Uint8Array(await crypto.subtle.digest(hash, msg));
          const der = ecdsaSign(curve, hash, d, msg, { format: "der" });
          // noble (the slow reference) checks one of the two encodings per round
          if (i % 2 === 0) expect(n.verify(sig, digest, raw, { prehash: false, lowS: false })).toBe(true);
          else expect(n.verify(der, digest, raw, { prehash: false, lowS: false, format: "der" })).toBe(true);
          expect(ecdsaVerify(curve, hash, raw, msg, der, { format: "der" })).toBe(true);
          // theirs verifies under ours, with compressed and uncompressed keys
          const theirs = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash }, pair.privateKey, msg));
          expect(ecdsaVerify(curve, hash, raw, msg, theirs)).toBe(true);
          const compressed = n.Point.fromBytes(raw).toBytes(true);
          expect(ecdsaVerify(curve, hash, compressed, msg, theirs)).toBe(true);
          if (i % 4 === 0) {
            const nobleSig = n.sign(digest, d, { prehash: false, format: "der" });
            expect(ecdsaVerify(curve, hash, raw, msg, nobleSig, { format: "der" })).toBe(true);
          }
          // a flipped message bit or signature bit is rejected
          const bad = Uint8Array.from(theirs);
          bad[i % bad.length]! ^= 1 << (i % 8);
          expect(ecdsaVerify(curve, hash, raw, msg, bad)).toBe(false);
          const otherMsg = Uint8Array.from([...msg, 1]);
          expect(ecdsaVerify(curve, hash, raw, otherMsg, sig)).toBe(false);
          checked++;
        }
        expect(checked).toBe(ROUNDS);
      });
    }
  }

  test("signatures are hedged: two signatures of one message differ and both verify", () => {
    for (const curve of curves) {
      const { privateKey, publicKey } = ecGenerateKeyPair(curve);
      const msg = new TextEncoder().encode("same message");
      const a = ecdsaSign(curve, "SHA-256", privateKey, msg);
      const b = ecdsaSign(curve, "SHA-256", privateKey, msg);
      expect(a).not.toEqual(b);
      expect(ecdsaVerify(curve, "SHA-256", publicKey, msg, a)).toBe(true);
      expect(ecdsaVerify(curve, "SHA-256", publicKey, msg, b)).toBe(true);
    }
  });
});

describe("ECDH and keys differential", () => {
  for (const curve of curves) {
    test(`${curve}: ${ROUNDS} shared secrets match WebCrypto and noble`, async () => {
      const n = noble[curve];
      for (let i = 0; i < ROUNDS; i++) {
        const alice = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: curve }, true, ["deriveBits"]);
        const bob = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: curve }, true, ["deriveBits"]);
        const aliceD = b64u((await crypto.subtle.exportKey("jwk", alice.privateKey)).d!);
        const bobRaw = new Uint8Array(await crypto.subtle.exportKey("raw", bob.publicKey));
        const expected = new Uint8Array(
          await crypto.subtle.deriveBits({ name: "ECDH", public: bob.publicKey }, alice.privateKey, size[curve] * 8),
        );
        expect(ecdhSharedSecret(curve, aliceD, bobRaw)).toEqual(expected);
        const bobCompressed = n.Point.fromBytes(bobRaw).toBytes(true);
        expect(ecdhSharedSecret(curve, aliceD, bobCompressed)).toEqual(expected);
        expect(n.getSharedSecret(aliceD, bobRaw).slice(1)).toEqual(expected);
      }
    });

    test(`${curve}: generated key pairs match noble and validate`, () => {
      const n = noble[curve];
      for (let i = 0; i < ROUNDS; i++) {
        const { privateKey, publicKey } = ecGenerateKeyPair(curve);
        expect(privateKey.length).toBe(size[curve]);
        expect(publicKey).toEqual(n.getPublicKey(privateKey, false));
        expect(ecValidatePublicKey(curve, publicKey)).toBe(true);
        expect(ecValidatePublicKey(curve, n.getPublicKey(privateKey, true))).toBe(true);
      }
    });

    test(`${curve}: structured scalars (zero runs, carry chains, powers of two) match noble`, () => {
      const n = noble[curve];
      const bits = size[curve] * 8;
      const scalars: bigint[] = [];
      for (let i = 0; i < bits; i += 7) scalars.push(1n << BigInt(i));
      const rep = (nib: bigint) => BigInt("0x" + nib.toString(16).repeat(bits / 4 - 1));
      for (let nib = 1n; nib < 16n; nib++) scalars.push(rep(nib), ORDER[curve] - rep(nib));
      // repeated digits at 5-bit window carry boundaries (16 / 17) and 2^bits - n,
      // 2^(bits+1) - 2n; the P-256 comb's own 6-bit cases are in wasm-ec-p256-core.test.ts
      for (const digit of [15n, 16n, 17n, 31n]) {
        let v = 0n;
        for (let i = 0n; i * 5n < BigInt(bits); i++) v += digit << (5n * i);
        scalars.push(v % ORDER[curve], (ORDER[curve] - v % ORDER[curve]) % ORDER[curve]);
      }
      const R = 1n << BigInt(bits);
      scalars.push(R - ORDER[curve], 2n * R - 2n * ORDER[curve], (1n << BigInt(bits - 1)) + 1n, ORDER[curve] - (1n << BigInt(bits - 1)));
      for (let i = 0; i < 40; i++) {
        // random scalar with a random run of zero nibbles and a run of 8s or 9s (carry boundaries)
        let v = BigInt("0x" + Buffer.from(crypto.getRandomValues(new Uint8Array(size[curve]))).toString("hex")) % ORDER[curve];
        const at = BigInt(4 * Math.floor(Math.random() * (bits / 4 - 16)));
        const mask = ((1n << 64n) - 1n) << at;
        v = (v & ~mask) | ((i % 3 === 0 ? 0n : i % 3 === 1 ? 0x8888888888888888n : 0x9999999999999999n) << at);
        if (v % ORDER[curve] !== 0n) scalars.push(v % ORDER[curve]);
      }
      const peer = n.getPublicKey(n.utils.randomSecretKey(), false);
      for (const k of scalars) {
        if (k === 0n) continue;
        const d = be(k, size[curve]);
        expect(ecPublicKey(curve, d)).toEqual(n.getPublicKey(d, false));
        expect(ecdhSharedSecret(curve, d, peer)).toEqual(n.getSharedSecret(d, peer).slice(1));
      }
    });

    test(`${curve}: edge scalars 1, 2, n-1 match noble`, () => {
      const n = noble[curve];
      for (const k of [1n, 2n, 3n, ORDER[curve] - 1n, ORDER[curve] - 2n, 1n << BigInt(size[curve] * 8 - 33)]) {
        const d = be(k, size[curve]);
        expect(ecPublicKey(curve, d)).toEqual(n.getPublicKey(d, false));
        const peer = n.getPublicKey(n.utils.randomSecretKey(), false);
        expect(ecdhSharedSecret(curve, d, peer)).toEqual(n.getSharedSecret(d, peer).slice(1));
        const msg = randomMessage();
        const sig = ecdsaSign(curve, "SHA-384", d, msg);
        expect(ecdsaVerify(curve, "SHA-384", n.getPublicKey(d, false), msg, sig)).toBe(true);
      }
    });
  }
});

describe("bad input", () => {
  for (const curve of curves) {
    const L = size[curve];
    const { privateKey, publicKey } = ecGenerateKeyPair(curve);
    const msg = new TextEncoder().encode("m");
    const sig = ecdsaSign(curve, "SHA-256", privateKey, msg);

    test(`${curve}: private keys of wrong length, zero or >= n are malformed_input`, () => {
      const bad = [
        new Uint8Array(L - 1), new Uint8Array(L + 1), new Uint8Array(0), new Uint8Array(L),
        be(ORDER[curve], L), be(ORDER[curve] + 1n, L), new Uint8Array(L).fill(0xff),
      ];
      for (const d of bad) {
        expectMalformed(() => ecdsaSign(curve, "SHA-256", d, msg));
        expectMalformed(() => ecPublicKey(curve, d));
        expectMalformed(() => ecdhSharedSecret(curve, d, publicKey));
      }
      expectMalformed(() => ecdsaSign(curve, "SHA-256", "key" as unknown as Uint8Array, msg));
    });

    test(`${curve}: malformed public keys are rejected`, () => {
      const n = noble[curve];
      const offCurve = Uint8Array.from(publicKey);
      offCurve[offCurve.length - 1]! ^= 1;
      const xTooBig = Uint8Array.from(publicKey);
      xTooBig.fill(0xff, 1, 1 + L);
      const badTag = Uint8Array.from(publicKey);
      badTag[0] = 0x05;
      const compressed = n.getPublicKey(privateKey, true);
      const compressedNoRoot = new Uint8Array(1 + L);
      compressedNoRoot[0] = 2;
      // find an x with no square root (x^3 - 3x + b not a residue)
      let found = false;
      for (let x = 1n; x < 100n && !found; x++) {
        compressedNoRoot.set(be(x, L), 1);
        try {
          n.Point.fromBytes(compressedNoRoot);
        } catch {
          found = true;
        }
      }
      expect(found).toBe(true);
      const infinity = new Uint8Array([0]);
      const bad = [
        offCurve, xTooBig, badTag, compressedNoRoot, infinity, new Uint8Array(0), publicKey.subarray(0, L),
        Uint8Array.from([...publicKey, 0]), compressed.subarray(0, L), new Uint8Array(1 + 2 * L), new Uint8Array(1000),
      ];
      for (const q of bad) {
        expect(ecValidatePublicKey(curve, q)).toBe(false);
        expect(ecdsaVerify(curve, "SHA-256", q, msg, sig)).toBe(false);
        expectMalformed(() => ecdhSharedSecret(curve, privateKey, q));
      }
      expect(ecValidatePublicKey(curve, compressed)).toBe(true);
    });

    test(`${curve}: malformed signatures verify as false`, () => {
      const der = p1363ToDer(sig);
      const r = BigInt("0x" + Buffer.from(sig.subarray(0, L)).toString("hex"));
      const s = BigInt("0x" + Buffer.from(sig.subarray(L)).toString("hex"));
      const rs = (a: bigint, b: bigint) => Uint8Array.from([...be(a, L), ...be(b, L)]);
      const badP1363 = [
        sig.subarray(0, 2 * L - 1), Uint8Array.from([...sig, 0]), new Uint8Array(2 * L),
        rs(0n, s), rs(r, 0n), rs(r + ORDER[curve], s), rs(r, s + ORDER[curve] < 1n << BigInt(8 * L) ? s + ORDER[curve] : ORDER[curve]),
      ];
      for (const b of badP1363) expect(ecdsaVerify(curve, "SHA-256", publicKey, msg, b)).toBe(false);
      const badDer = [
        Uint8Array.from([...der, 0]), // trailing byte
        der.subarray(0, der.length - 1), // truncated
        Uint8Array.from([0x31, ...der.subarray(1)]), // not a SEQUENCE
        Uint8Array.from([0x30, 0x81, der[1]!, ...der.subarray(2)]), // long-form length
        new Uint8Array(0),
        sig, // P1363 bytes given as DER
      ];
      for (const b of badDer) expect(ecdsaVerify(curve, "SHA-256", publicKey, msg, b, { format: "der" })).toBe(false);
      expect(ecdsaVerify(curve, "SHA-256", publicKey, msg, der, { format: "der" })).toBe(true);
    });

    test(`${curve}: unknown curve, hash or format are malformed_input`, () => {
      expectMalformed(() => ecdsaSign("P-521" as EcCurve, "SHA-256", privateKey, msg));
      expectMalformed(() => ecdsaSign(curve, "SHA-1" as EcHash, privateKey, msg));
      expectMalformed(() => ecdsaSign(curve, "SHA-256", privateKey, msg, { format: "jose" as "der" }));
      expectMalformed(() => ecGenerateKeyPair("secp256k1" as EcCurve));
      expectMalformed(() => ecValidatePublicKey("toString" as EcCurve, publicKey));
    });
  }

  test("strict DER: non-minimal and negative integers", () => {
    const L = 32;
    const int = (body: number[]) => [0x02, body.length, ...body];
    const seq = (...parts: number[][]) => Uint8Array.from([0x30, parts.flat().length, ...parts.flat()]);
    expect(derToP1363(seq(int([1]), int([2])), L)).toEqual(Uint8Array.from([...new Uint8Array(31), 1, ...new Uint8Array(31), 2]));
    expect(derToP1363(seq(int([0, 1]), int([2])), L)).toBeUndefined(); // leading zero not needed
    expect(derToP1363(seq(int([0x80]), int([2])), L)).toBeUndefined(); // negative
    expect(derToP1363(seq(int([0, 0x80]), int([2])), L)).toEqual(Uint8Array.from([...new Uint8Array(31), 0x80, ...new Uint8Array(31), 2]));
    expect(derToP1363(seq(int([]), int([2])), L)).toBeUndefined(); // empty integer
    expect(derToP1363(seq(int(new Array(33).fill(1)), int([2])), L)).toBeUndefined(); // wider than the curve
    expect(derToP1363(seq(int([1]), int([2]), int([3])), L)).toBeUndefined(); // extra element
  });

  test("large messages are hashed in the core", () => {
    const { privateKey, publicKey } = ecGenerateKeyPair("P-256");
    const big = crypto.getRandomValues(new Uint8Array(1 << 16));
    big.fill(7, 0, 1 << 15);
    const sig = ecdsaSign("P-256", "SHA-512", privateKey, big);
    expect(p256.verify(sig, sha512(big), publicKey, { lowS: false, prehash: false })).toBe(true);
    expect(ecdsaVerify("P-256", "SHA-512", publicKey, big, sig)).toBe(true);
  });
});

describe("fuzz (public inputs)", () => {
  for (const curve of curves) {
    test(`${curve}: random SEC1 encodings validate exactly when noble accepts them`, () => {
      const n = noble[curve];
      const L = size[curve];
      let valid = 0;
      for (let i = 0; i < 400; i++) {
        const compressed = i % 2 === 0;
        const key = crypto.getRandomValues(new Uint8Array(compressed ? 1 + L : 1 + 2 * L));
        key[0] = compressed ? 2 + (i & 2 ? 1 : 0) : 4;
        let nobleOk = true;
        try {
          n.Point.fromBytes(key).assertValidity();
        } catch {
          nobleOk = false;
        }
        expect(ecValidatePublicKey(curve, key)).toBe(nobleOk);
        if (nobleOk) valid++;
      }
      expect(valid).toBeGreaterThan(50); // about half of the random x have a square root
    });

    test(`${curve}: random bytes never trap`, () => {
      const { privateKey, publicKey } = ecGenerateKeyPair(curve);
      const msg = new Uint8Array(3);
      for (let i = 0; i < 500; i++) {
        const junk = crypto.getRandomValues(new Uint8Array(i % 130));
        if (junk.length > 1 && i % 3 === 0) junk[0] = 0x30;
        expect(ecdsaVerify(curve, "SHA-256", publicKey, msg, junk, { format: i % 2 ? "der" : "p1363" })).toBe(false);
        expect(ecdsaVerify(curve, "SHA-256", junk, msg, junk)).toBe(false);
        expect(typeof ecValidatePublicKey(curve, junk)).toBe("boolean");
        try {
          ecdhSharedSecret(curve, privateKey, junk);
        } catch (err) {
          expect((err as AppError).code).toBe("malformed_input");
        }
      }
    });
  }
});
