// The AES key schedule of both wasm builds (the SIMD build's SubWord and
// round-key planes are separate code): known answers and random keys of every
// size against @noble/ciphers, over message lengths that cross batch borders.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { gcm } from "@noble/ciphers/aes.js";
import type { SymExports } from "../../src/crypto/wasm-runtime.ts";
import { wasmBuilds } from "../support/wasm-builds.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));

function seal(ex: SymExports, key: Uint8Array, iv: Uint8Array, pt: Uint8Array, aad: Uint8Array): Uint8Array {
  const base = ex.scratch(96 + key.length + iv.length + aad.length + 2 * pt.length + 64);
  const m = new Uint8Array(ex.memory.buffer);
  const ko = base, io = ko + 32, ao = io + iv.length, po = ao + aad.length, oo = po + pt.length;
  m.set(key, ko); m.set(iv, io); m.set(aad, ao); m.set(pt, po);
  expect(ex.aesGcmSeal(ko, key.length, io, iv.length, ao, aad.length, po, pt.length, oo)).toBe(0);
  return m.slice(oo, oo + pt.length + 16);
}

const builds = wasmBuilds<SymExports>();

describe("AES key schedule, both builds", () => {
  for (const { file, ex } of builds) {
    test(`${file}: GCM spec test cases 13 and 14 (AES-256, zero key and IV)`, () => {
      const key = new Uint8Array(32), iv = new Uint8Array(12), none = new Uint8Array(0);
      expect(hex(seal(ex, key, iv, none, none))).toBe("530f8afbc74536b9a963b4f1c4cb738b");
      expect(hex(seal(ex, key, iv, new Uint8Array(16), none))).toBe(
        "cea7403d4d606b6e074ec5d3baf39d18" + "d0d1c8a799996bf0265b98b5d48ab919",
      );
    });

    test(`${file}: random 128/192/256-bit keys match @noble/ciphers across batch borders`, () => {
      const bad: string[] = [];
      for (const keyLen of [16, 24, 32]) {
        for (const n of [0, 1, 15, 16, 17, 63, 64, 65, 95, 96, 97, 127, 128, 129, 255, 256, 257, 600, 1024, 1031]) {
          const key = rnd(keyLen), iv = rnd(n % 7 === 0 ? 16 : 12), aad = rnd(n % 23), pt = rnd(n);
          const got = seal(ex, key, iv, pt, aad);
          if (hex(got) !== hex(gcm(key, iv, aad).encrypt(pt))) bad.push(`${keyLen * 8}-bit key, ${n} bytes`);
        }
      }
      expect(bad).toEqual([]);
    });
  }

  test("the scalar and SIMD builds agree on 200 random keys", () => {
    if (builds.length < 2) return; // reason printed at load
    const [a, b] = builds;
    let differ = 0;
    for (let i = 0; i < 200; i++) {
      const key = rnd([16, 24, 32][i % 3]!), iv = rnd(12), pt = rnd(i % 97);
      if (hex(seal(a!.ex, key, iv, pt, new Uint8Array(0))) !== hex(seal(b!.ex, key, iv, pt, new Uint8Array(0)))) differ++;
    }
    expect(differ).toBe(0);
  });
});
