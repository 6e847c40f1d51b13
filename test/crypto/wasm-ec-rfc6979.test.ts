/**
 * Nonce derivation of the core's ECDSA signing: RFC 6979 (section 3.2) with the
 * hedging "additional data" of section 3.6. The public API always hedges with
 * fresh randomness, so this test drives the core export directly with chosen
 * extra bytes: none gives the RFC's deterministic signatures (appendix A.2.5
 * vectors), chosen bytes must match @noble/curves' `extraEntropy`.
 */
import { describe, expect, test } from "bun:test";
import { p256, p384 } from "@noble/curves/nist.js";
import { wasmExports, scratch, put, take } from "../../src/crypto/wasm-runtime.ts";

interface SignExport {
  ecdsaSignDigest(curve: number, alg: number, priv: number, msg: number, msgLen: number, extra: number, extraLen: number, out: number): number;
}
const ex = wasmExports() as unknown as SignExport;
const hex = (s: string) => Uint8Array.from(Buffer.from(s, "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");

function coreSign(curve: 256 | 384, alg: 256 | 384 | 512, priv: Uint8Array, msg: Uint8Array, extra: Uint8Array): Uint8Array {
  const base = scratch(512 + msg.length);
  put(base, priv);
  put(base + 64, extra);
  put(base + 512, msg);
  expect(ex.ecdsaSignDigest(curve, alg, base, base + 512, msg.length, base + 64, extra.length, base + 256)).toBe(0);
  return take(base + 256, (2 * curve) / 8);
}

describe("RFC 6979 nonces", () => {
  test("appendix A.2.5 (P-256, message 'sample')", () => {
    const d = hex("c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721");
    const msg = new TextEncoder().encode("sample");
    expect(toHex(coreSign(256, 256, d, msg, new Uint8Array(0)))).toBe(
      "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716" +
        "f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8",
    );
    expect(toHex(coreSign(256, 512, d, msg, new Uint8Array(0)))).toBe(
      "8496a60b5e9b47c825488827e0495b0e3fa109ec4568fd3f8d1097678eb97f00" +
        "2362ab1adbe2b8adf9cb9edab740ea6049c028114f2460f96554f61fae3302fe",
    );
  });

  test("appendix A.2.6 (P-384, message 'sample', SHA-384)", () => {
    const d = hex("6b9d3dad2e1b8c1c05b19875b6659f4de23c3b667bf297ba9aa47740787137d896d5724e4c70a825f872c9ea60d2edf5");
    const msg = new TextEncoder().encode("sample");
    expect(toHex(coreSign(384, 384, d, msg, new Uint8Array(0)))).toBe(
      "94edbb92a5ecb8aad4736e56c691916b3f88140666ce9fa73d64c4ea95ad133c81a648152e44acf96e36dd1e80fabe46" +
        "99ef4aeb15f178cea1fe40db2603138f130e740a19624526203b6351d0a3a94fa329c145786e679e7b82c71a38628ac8",
    );
  });

  for (const [curve, noble] of [[256, p256], [384, p384]] as const) {
    test(`P-${curve}: hedged nonces match noble's extraEntropy (RFC 6979 section 3.6)`, () => {
      for (let i = 0; i < 20; i++) {
        const d = noble.utils.randomSecretKey();
        const msg = crypto.getRandomValues(new Uint8Array(i * 7));
        const extra = crypto.getRandomValues(new Uint8Array(32));
        const ours = coreSign(curve, curve, d, msg, extra);
        const theirs = noble.sign(msg, d, { lowS: false, extraEntropy: extra });
        expect(toHex(ours)).toBe(toHex(theirs));
        expect(toHex(coreSign(curve, curve, d, msg, new Uint8Array(0)))).toBe(
          toHex(noble.sign(msg, d, { lowS: false, extraEntropy: false })),
        );
      }
    });
  }
});
