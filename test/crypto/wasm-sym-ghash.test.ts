// GHASH paths of both wasm builds against @noble/ciphers: the one-block path,
// the four-block path with precomputed H^2..H^4 (entered from the AAD, the
// ciphertext or a long IV), and the switch between them at every offset.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { gcm } from "@noble/ciphers/aes.js";
import type { SymExports } from "../../src/crypto/wasm-runtime.ts";
import { wasmBuilds } from "../support/wasm-builds.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));

function seal(ex: SymExports, key: Uint8Array, iv: Uint8Array, pt: Uint8Array, aad: Uint8Array): Uint8Array {
  const base = ex.scratch(64 + iv.length + aad.length + 2 * pt.length + 64);
  const m = new Uint8Array(ex.memory.buffer);
  const ko = base, io = ko + 32, ao = io + iv.length, po = ao + aad.length, oo = po + pt.length;
  m.set(key, ko); m.set(iv, io); m.set(aad, ao); m.set(pt, po);
  expect(ex.aesGcmSeal(ko, key.length, io, iv.length, ao, aad.length, po, pt.length, oo)).toBe(0);
  return m.slice(oo, oo + pt.length + 16);
}

function open(ex: SymExports, key: Uint8Array, iv: Uint8Array, sealed: Uint8Array, aad: Uint8Array): number {
  const len = sealed.length - 16;
  const base = ex.scratch(64 + iv.length + aad.length + 2 * sealed.length + 64);
  const m = new Uint8Array(ex.memory.buffer);
  const ko = base, io = ko + 32, ao = io + iv.length, co = ao + aad.length, oo = co + sealed.length;
  m.set(key, ko); m.set(iv, io); m.set(aad, ao); m.set(sealed, co);
  return ex.aesGcmOpen(ko, key.length, io, iv.length, ao, aad.length, co, len, co + len, oo);
}

const builds = wasmBuilds<SymExports>();

describe("GHASH, both builds", () => {
  for (const { file, ex } of builds) {
    test(`${file}: AAD of 0..700 bytes (one-block and four-block paths) matches @noble/ciphers`, () => {
      const key = rnd(32), iv = rnd(12), pt = rnd(37);
      const bad: number[] = [];
      for (let a = 0; a <= 700; a++) {
        const aad = rnd(a);
        if (hex(seal(ex, key, iv, pt, aad)) !== hex(gcm(key, iv, aad).encrypt(pt))) bad.push(a);
      }
      expect(bad).toEqual([]);
    });

    test(`${file}: long IVs, long AAD and ciphertext together, and forged tags`, () => {
      const bad: string[] = [];
      const cases: [number, number, number][] = [[255, 0, 0], [256, 0, 300], [300, 1000, 257], [1024, 17, 4099], [16, 256, 256], [12, 5000, 65]];
      for (const [ivLen, aadLen, n] of cases) {
        const key = rnd(ivLen % 2 ? 16 : 32), iv = rnd(ivLen), aad = rnd(aadLen), pt = rnd(n);
        const got = seal(ex, key, iv, pt, aad);
        if (hex(got) !== hex(gcm(key, iv, aad).encrypt(pt))) bad.push(`iv ${ivLen}, aad ${aadLen}, ${n} bytes`);
        expect(open(ex, key, iv, got, aad)).toBe(0);
        got[got.length - 1 - (n % 16)]! ^= 0x80;
        expect(open(ex, key, iv, got, aad)).toBe(2);
      }
      expect(bad).toEqual([]);
    });
  }
});
