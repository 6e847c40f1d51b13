/**
 * Edge cases of the P-256 signing core's fast paths, through the public API:
 * - the fixed-base comb's signed 6-bit windows (digits at the carry boundary)
 *   and the scalars named in its exceptional-case argument (top window);
 * - the safegcd inversion mod n, reached by verification (s^-1) with chosen s:
 *   valid signatures are built for any s by solving for the private key;
 * - sign/verify round trips against @noble/curves;
 * - both wasm builds (the SIMD build selects comb entries with v128 code).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { p256 } from "@noble/curves/nist.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { ecdsaSign, ecdsaVerify, ecPublicKey, ecdhSharedSecret } from "../../src/crypto/wasm-ec.ts";
import { wasmBuilds } from "../support/wasm-builds.ts";

const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const WB = 6;
const WIN = 43;
const be = (v: bigint) => Uint8Array.from(Buffer.from(v.toString(16).padStart(64, "0"), "hex"));
const num = (b: Uint8Array) => BigInt("0x" + Buffer.from(b).toString("hex"));
const mod = (a: bigint) => ((a % N) + N) % N;

function invN(a: bigint): bigint {
  let [r0, r1, s0, s1] = [N, mod(a), 0n, 1n];
  while (r1 !== 0n) {
    const q = r0 / r1;
    [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
  }
  return mod(s0);
}

/** The comb's signed recoding (same rule as the core): digits in [-32, 32] and the final carry. */
function recode(k: bigint): { digits: number[]; carry: number } {
  const half = 1 << (WB - 1);
  let carry = 0;
  const digits: number[] = [];
  for (let w = 0; w < WIN; w++) {
    const v = Number((k >> BigInt(w * WB)) & 63n) + carry;
    carry = (v + half - 1) >> WB;
    digits.push(v - (carry << WB));
  }
  return { digits, carry };
}

function expectKeyMatchesNoble(k: bigint, peer: Uint8Array): void {
  const d = be(k);
  expect(ecPublicKey("P-256", d)).toEqual(p256.getPublicKey(d, false));
  expect(ecdhSharedSecret("P-256", d, peer)).toEqual(p256.getSharedSecret(d, peer).slice(1));
}

describe("P-256 fixed-base comb (6-bit signed windows)", () => {
  const peer = p256.getPublicKey(p256.utils.randomSecretKey(), false);

  test("43 windows hold every scalar below n without a final carry", () => {
    for (const k of [N - 1n, (1n << 256n) - 1n - (1n << 224n), 1n << 255n]) {
      const { digits, carry } = recode(k % N);
      expect(carry).toBe(0);
      expect(digits[WIN - 1]).toBeLessThanOrEqual(16);
      expect(digits.reduce((acc, d, w) => acc + BigInt(d) * (1n << BigInt(WB * w)), 0n)).toBe(k % N);
    }
  });

  test("top-window scalars of the exceptional-case argument give the right keys", () => {
    // A == E in the top window would need k = d 2^253 mod n with top digit d: never the case
    for (let d = 1; d <= 16; d++) {
      const k = mod(BigInt(d) << 253n);
      expect(recode(k).digits[WIN - 1]).not.toBe(d);
      for (const v of [k, mod(k - 1n), mod(k + 1n), mod(BigInt(d) << 252n), mod((BigInt(d) << 252n) - 1n)]) {
        if (v !== 0n) expectKeyMatchesNoble(v, peer);
      }
    }
  });

  test("digits at the carry boundary (31, 32, 33, 63 in every window) give the right keys", () => {
    for (const digit of [1n, 31n, 32n, 33n, 63n]) {
      let v = 0n;
      for (let w = 0n; w < 43n; w++) v += digit << (6n * w);
      for (const k of [mod(v), mod(-v), mod(v >> 6n), mod(v + 1n)]) if (k !== 0n) expectKeyMatchesNoble(k, peer);
    }
  });
});

describe("P-256 inversion mod n (verification with chosen s)", () => {
  const msg = new TextEncoder().encode("chosen-s signature");
  const z = mod(num(sha256(msg)));

  /** A valid signature (r, s) of msg for the given s, with its public key: d = (s k - z) / r. */
  function forge(s: bigint): { pub: Uint8Array; sig: Uint8Array } {
    for (;;) {
      const k = mod(num(p256.utils.randomSecretKey()));
      const r = mod(p256.Point.BASE.multiply(k).toAffine().x);
      const d = mod((s * k - z) * invN(r));
      if (r === 0n || d === 0n) continue;
      const sig = new Uint8Array(64);
      sig.set(be(r), 0);
      sig.set(be(s), 32);
      return { pub: p256.getPublicKey(be(d), false), sig };
    }
  }

  const specials = [
    1n, 2n, 3n, N - 1n, N - 2n, (N + 1n) / 2n, 1n << 255n, (1n << 224n) - 1n, (1n << 30n), (1n << 30n) - 1n,
    (1n << 240n) + 1n, N - (1n << 128n), 0x5555555555555555555555555555555555555555555555555555555555555555n,
  ];

  test("valid signatures verify for edge and random s, and a nearby s does not", () => {
    const values = [...specials];
    for (let i = 0; i < 30; i++) values.push(mod(num(p256.utils.randomSecretKey()) >> BigInt(i * 8)) || 1n);
    for (const s of values) {
      const { pub, sig } = forge(s);
      expect(p256.verify(sig, msg, pub, { lowS: false })).toBe(true);
      expect(ecdsaVerify("P-256", "SHA-256", pub, msg, sig)).toBe(true);
      // (r, n - s) is valid too (ECDSA malleability), so skip that one
      const other = [mod(s + 1n), mod(s + 3n)].find((v) => v !== 0n && v !== mod(-s))!;
      const bad = sig.slice();
      bad.set(be(other), 32);
      expect(ecdsaVerify("P-256", "SHA-256", pub, msg, bad)).toBe(false);
    }
  });

  test("signatures of random keys verify with noble and with the core", () => {
    for (let i = 0; i < 100; i++) {
      const d = p256.utils.randomSecretKey();
      const pub = p256.getPublicKey(d, false);
      const m = crypto.getRandomValues(new Uint8Array(i));
      const sig = ecdsaSign("P-256", "SHA-256", d, m);
      expect(p256.verify(sig, m, pub, { lowS: false })).toBe(true);
      expect(ecdsaVerify("P-256", "SHA-256", pub, m, sig)).toBe(true);
    }
  });
});

interface CoreEc {
  memory: WebAssembly.Memory;
  scratch(size: number): number;
  ecPublicFromPrivate(curve: number, priv: number, out: number): number;
  ecdsaSignDigest(c: number, a: number, d: number, m: number, ml: number, x: number, xl: number, o: number): number;
}

const builds = wasmBuilds<CoreEc>();

describe("P-256 core, both builds", () => {
  for (const { file, ex } of builds) {
    test(`${file}: public keys of every top digit and random keys, and RFC 6979 signatures, match noble`, () => {
      const base = ex.scratch(1024);
      const mem = () => new Uint8Array(ex.memory.buffer);
      const keys: bigint[] = [1n, 2n, N - 1n];
      for (let d = 1n; d <= 16n; d++) keys.push(mod(d << 252n), mod(d << 253n), mod((d << 252n) + (1n << 251n) - 1n));
      for (let i = 0; i < 40; i++) keys.push(mod(num(p256.utils.randomSecretKey())) || 1n);
      for (const k of keys) {
        const d = be(k);
        mem().set(d, base);
        expect(ex.ecPublicFromPrivate(256, base, base + 64)).toBe(0);
        expect(mem().slice(base + 64, base + 129)).toEqual(p256.getPublicKey(d, false));
        const msg = crypto.getRandomValues(new Uint8Array(Number(k & 63n)));
        const extra = crypto.getRandomValues(new Uint8Array(32));
        mem().set(extra, base + 160);
        mem().set(msg, base + 512);
        expect(ex.ecdsaSignDigest(256, 256, base, base + 512, msg.length, base + 160, 32, base + 256)).toBe(0);
        const sig = mem().slice(base + 256, base + 320);
        expect(sig).toEqual(p256.sign(msg, d, { lowS: false, extraEntropy: extra }));
      }
    });
  }
});
