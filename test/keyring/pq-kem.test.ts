/**
 * ML-KEM-768 JWE (src/keyring/pq-kem.ts): draft test vectors, round trips, tampering, malformed
 * input, fuzzing, FIPS 203 sizes, an independent re-derivation of the CEK/KEK (KMAC256 built
 * here from cSHAKE256, content opened with @noble/ciphers) and noble <-> WebCrypto ML-KEM interop.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { cshake256 } from "@noble/hashes/sha3-addons.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, hexToBytes } from "@noble/hashes/utils.js";
import { aeskw, cbc, gcm } from "@noble/ciphers/aes.js";
import { AppError } from "../../src/service/errors.ts";
import {
  decryptMlKem,
  encryptMlKem,
  generateMlKemJwk,
  importMlKemPrivateJwk,
  MlKemDecapsulationKey,
  ML_KEM_768_SIZES,
  ML_KEM_ALGS,
  ML_KEM_ENCS,
  publicMlKemJwk,
  readMlKemJweHeader,
  validateMlKemJwk,
  type FlattenedMlKemJwe,
  type MlKemAlg,
  type MlKemPrivateJwk,
} from "../../src/keyring/pq-kem.ts";

const te = new TextEncoder();
const td = new TextDecoder();
const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");
const unb64u = (s: string) => new Uint8Array(Buffer.from(s, "base64url"));

const vectors = JSON.parse(readFileSync(new URL("./fixtures/pq-kem/draft-vectors.json", import.meta.url), "utf8"));

// --- an independent KMAC256 (SP 800-185 §4.3) on top of cSHAKE256, and the draft's KDF input --

function leftEncode(x: number): Uint8Array {
  const bytes: number[] = [];
  for (let v = x; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  if (bytes.length === 0) bytes.push(0);
  return Uint8Array.from([bytes.length, ...bytes]);
}
function rightEncode(x: number): Uint8Array {
  const l = leftEncode(x);
  return Uint8Array.from([...l.subarray(1), l[0]!]);
}
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) (out.set(p, i), (i += p.length));
  return out;
};
const encodeString = (s: Uint8Array) => concat(leftEncode(s.length * 8), s);
function bytepad(x: Uint8Array, w: number): Uint8Array {
  const z = concat(leftEncode(w), x);
  return concat(z, new Uint8Array((w - (z.length % w)) % w));
}
function kmac256ByHand(key: Uint8Array, data: Uint8Array, outBits: number, custom = new Uint8Array(0)): Uint8Array {
  const newX = concat(bytepad(encodeString(key), 136), data, rightEncode(outBits));
  return cshake256(newX, { NISTfn: te.encode("KMAC"), personalization: custom, dkLen: outBits / 8 });
}
/** RFC 7518 §4.6.2 AlgorithmID || SuppPubInfo, without PartyUInfo/PartyVInfo, as the draft says. */
function kdfByHand(ss: Uint8Array, algorithmId: string, outBytes: number): Uint8Array {
  const id = te.encode(algorithmId);
  const u32 = (n: number) => Uint8Array.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]);
  return kmac256ByHand(ss, concat(u32(id.length), id, u32(outBytes * 8)), outBytes * 8);
}

/** Opens a JWE content layer with @noble/ciphers, independent of the module's WebCrypto path. */
function openContentByHand(enc: string, cek: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, aad: Uint8Array): Uint8Array {
  if (enc.endsWith("GCM")) return gcm(cek, iv, aad).decrypt(concat(ciphertext, tag));
  if (enc !== "A128CBC-HS256") throw new Error(`test helper does not do ${enc}`);
  const al = new Uint8Array(8);
  new DataView(al.buffer).setBigUint64(0, BigInt(aad.length * 8));
  const mac = hmac(sha256, cek.subarray(0, 16), concat(aad, iv, ciphertext, al)).subarray(0, 16);
  if (bytesToHex(mac) !== bytesToHex(tag)) throw new Error("tag mismatch");
  return cbc(cek.subarray(16), iv).decrypt(ciphertext);
}

/** The JWE pieces of either serialization. */
function partsOf(jwe: string | FlattenedMlKemJwe) {
  if (typeof jwe === "string") {
    const [p, k, iv, c, t] = jwe.split(".") as [string, string, string, string, string];
    return { protectedB64: p, encryptedKey: unb64u(k), iv: unb64u(iv), ciphertext: unb64u(c), tag: unb64u(t), aadB64: undefined as string | undefined };
  }
  return { protectedB64: jwe.protected, encryptedKey: unb64u(jwe.encrypted_key ?? ""), iv: unb64u(jwe.iv), ciphertext: unb64u(jwe.ciphertext), tag: unb64u(jwe.tag), aadB64: jwe.aad };
}

/** Decrypts a module-made JWE with everything but the KEM done by hand, from the shared secret. */
function decryptByHand(jwe: string | FlattenedMlKemJwe, sharedSecret: Uint8Array): Uint8Array {
  const p = partsOf(jwe);
  const header = JSON.parse(td.decode(unb64u(p.protectedB64)));
  const cekLen = header.enc === "A128CBC-HS256" ? 32 : Number(header.enc.slice(1, 4)) / 8;
  let cek: Uint8Array;
  if (header.alg === "ML-KEM-768") cek = kdfByHand(sharedSecret, header.enc, cekLen);
  else cek = aeskw(kdfByHand(sharedSecret, header.alg, header.alg.endsWith("A192KW") ? 24 : 32)).decrypt(p.encryptedKey);
  const aad = te.encode(p.aadB64 === undefined ? p.protectedB64 : `${p.protectedB64}.${p.aadB64}`);
  return openContentByHand(header.enc, cek, p.iv, p.ciphertext, p.tag, aad);
}

async function expectCode(promise: Promise<unknown> | (() => unknown), code: string) {
  let err: unknown;
  try {
    await (typeof promise === "function" ? promise() : promise);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).code).toBe(code);
}

const key = generateMlKemJwk("ML-KEM-768", { kid: "kem-1" });
const pub = publicMlKemJwk(key);
const other = generateMlKemJwk();
const message = te.encode("a data key, or any secret: ☃");

describe("ML-KEM-768 keys", () => {
  test("FIPS 203 sizes: pub 1184, ciphertext 1088, seed 64 octets", async () => {
    expect(unb64u(key.pub).length).toBe(1184);
    expect(unb64u(key.priv).length).toBe(64);
    expect(ML_KEM_768_SIZES).toEqual({ publicKey: 1184, cipherText: 1088, seed: 64, sharedSecret: 32 });
    const jwe = await encryptMlKem(pub, message);
    expect(unb64u(readMlKemJweHeader(jwe).kemct).length).toBe(1088);
    expect(ml_kem768.keygen(unb64u(key.priv)).publicKey.length).toBe(1184);
  });

  test("AKP JWK shape; the public JWK has no private member; pub derives from priv", () => {
    expect(Object.keys(key).sort()).toEqual(["alg", "kid", "kty", "priv", "pub"]);
    expect(pub).toEqual({ kty: "AKP", alg: "ML-KEM-768", pub: key.pub, kid: "kem-1" });
    expect(b64u(ml_kem768.keygen(unb64u(key.priv)).publicKey)).toBe(key.pub);
    expect(validateMlKemJwk(key, "ML-KEM-768+A192KW")).toEqual(key);
    expect(validateMlKemJwk(pub)).toEqual(pub);
    // A private JWK without pub is completed from its seed.
    expect(validateMlKemJwk({ kty: "AKP", alg: "ML-KEM-768", priv: key.priv }).pub).toBe(key.pub);
    expect(generateMlKemJwk("ML-KEM-768+A256KW").alg).toBe("ML-KEM-768+A256KW");
  });

  test("an imported key decrypts repeatedly, shows no secret, and is gone once destroyed", async () => {
    const dk = importMlKemPrivateJwk(key);
    expect(dk).toBeInstanceOf(MlKemDecapsulationKey);
    expect(dk.publicJwk).toEqual(pub);
    expect(dk.kid).toBe("kem-1");
    const shown = JSON.stringify(dk) + Bun.inspect(dk) + Object.getOwnPropertyNames(dk).join();
    expect(shown).not.toContain(key.priv);
    expect(shown).not.toContain(key.priv.slice(0, 16));
    for (const alg of ML_KEM_ALGS) expect(await decryptMlKem(dk, await encryptMlKem(dk.publicJwk, message, { alg }))).toEqual(message);
    await expectCode(decryptMlKem(dk, await encryptMlKem(pub, message), { algorithms: ["ML-KEM-768+A256KW"] }), "malformed_jose");
    await expectCode(decryptMlKem(importMlKemPrivateJwk(other), await encryptMlKem(pub, message)), "decryption_failed");
    dk.destroy();
    await expectCode(decryptMlKem(dk, await encryptMlKem(pub, message)), "malformed_key");
    await expectCode(() => importMlKemPrivateJwk(pub as MlKemPrivateJwk), "malformed_key");
    await expectCode(() => importMlKemPrivateJwk({ ...key, pub: other.pub }), "malformed_key");
  });

  test("malformed keys are malformed_key", async () => {
    const bad: unknown[] = [
      null,
      "jwk",
      { ...key, kty: "OKP" },
      { ...key, alg: "ML-KEM-1024" },
      { ...key, pub: other.pub }, // pub does not match priv
      { ...key, priv: key.priv.slice(0, 40) },
      { ...key, priv: key.priv + "A" },
      { ...pub, pub: pub.pub.slice(0, 100) },
      { ...pub, pub: "!!" + pub.pub.slice(2) },
      { ...pub, pub: b64u(new Uint8Array(1184).fill(0xff)) }, // fails the modulus check
      { kty: "AKP", alg: "ML-KEM-768" },
      { ...key, kid: 7 },
    ];
    for (const jwk of bad) await expectCode(() => validateMlKemJwk(jwk), "malformed_key");
    // A key pinned to one JWE alg refuses the others.
    const pinned = generateMlKemJwk("ML-KEM-768+A192KW");
    await expectCode(() => validateMlKemJwk(pinned, "ML-KEM-768"), "malformed_key");
    await expectCode(encryptMlKem(publicMlKemJwk(pinned), message, { alg: "ML-KEM-768+A256KW" }), "malformed_key");
    await expectCode(encryptMlKem({ ...pub, pub: b64u(new Uint8Array(1184).fill(0xff)) }, message), "malformed_key");
    await expectCode(decryptMlKem({ ...key, pub: other.pub }, await encryptMlKem(pub, message)), "malformed_key");
    await expectCode(decryptMlKem(pub as MlKemPrivateJwk, await encryptMlKem(pub, message)), "malformed_key");
  });
});

describe("draft-ietf-jose-pqc-kem test vectors (ML-KEM-768)", () => {
  const c = vectors.common;
  const seed = unb64u(vectors.key.priv);
  const { publicKey } = ml_kem768.keygen(seed);
  // The draft's deterministic encapsulation (m = the given seed) reproduces its `kemct`.
  const { cipherText, sharedSecret } = ml_kem768.encapsulate(publicKey, hexToBytes(c.kem_encapsulation_seed_hex));

  test("the key derived from priv is the vector's pub", () => {
    const p = b64u(publicKey);
    expect(p.length).toBe(vectors.key.pub_length);
    expect(p.startsWith(vectors.key.pub_prefix)).toBe(true);
    expect(p.endsWith(vectors.key.pub_suffix)).toBe(true);
  });

  for (const v of vectors.vectors) {
    const protectedB64 = b64u(te.encode(JSON.stringify({ alg: v.alg, enc: v.enc, kemct: b64u(cipherText) })));
    const jwe: FlattenedMlKemJwe = { protected: protectedB64, aad: v.aad, iv: v.iv, ciphertext: v.ciphertext, tag: v.tag };
    if (v.encrypted_key) jwe.encrypted_key = v.encrypted_key;

    test(`${v.alg}: the module decrypts the draft's JWE (the tag covers the whole protected header)`, async () => {
      expect(protectedB64.startsWith(v.protected_prefix)).toBe(true);
      expect(protectedB64.endsWith(v.protected_suffix)).toBe(true);
      const privateJwk = { kty: "AKP" as const, alg: vectors.key.alg, pub: b64u(publicKey), priv: vectors.key.priv };
      expect(td.decode(await decryptMlKem(privateJwk, jwe))).toBe(c.plaintext);
    });

    test(`${v.alg}: the KDF by hand (KMAC256 from cSHAKE256) reproduces the vector byte for byte`, () => {
      const aad = te.encode(`${protectedB64}.${b64u(te.encode(c.aad))}`);
      expect(b64u(te.encode(c.aad))).toBe(v.aad);
      let cek: Uint8Array;
      if (v.alg === "ML-KEM-768") {
        cek = kdfByHand(sharedSecret, v.enc, 24);
      } else {
        const kek = kdfByHand(sharedSecret, v.alg, 24);
        cek = hexToBytes(c.cek_source_hex).subarray(0, 24);
        expect(b64u(aeskw(kek).encrypt(cek))).toBe(v.encrypted_key);
      }
      const sealed = gcm(cek, hexToBytes(c.iv_hex), aad).encrypt(te.encode(c.plaintext));
      expect(b64u(sealed.subarray(0, -16))).toBe(v.ciphertext);
      expect(b64u(sealed.subarray(-16))).toBe(v.tag);
    });
  }

  test("the hand-built KMAC256 matches NIST SP 800-185 KMAC sample #4", () => {
    const k = hexToBytes("404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f");
    const out = kmac256ByHand(k, hexToBytes("00010203"), 512, te.encode("My Tagged Application"));
    expect(bytesToHex(out)).toBe(
      "20c570c31346f703c9ac36c61c03cb64c3970d0cfc787e9b79599d273a68d2f7f69d4cc3de9d104a351689f27cf6f5951f0103f33f4f24871024d9c27773a8dd",
    );
  });
});

describe("round trips", () => {
  for (const alg of ML_KEM_ALGS) {
    for (const enc of ["A256GCM", "A128CBC-HS256"] as const) {
      test(`${alg} / ${enc}: compact and flattened (with AAD)`, async () => {
        const compact = await encryptMlKem(pub, message, { alg, enc });
        expect(compact.split(".").length).toBe(5);
        expect(compact.split(".")[1]!.length === 0).toBe(alg === "ML-KEM-768");
        const header = readMlKemJweHeader(compact);
        expect(header).toEqual({ alg, enc, kemct: header.kemct, kid: "kem-1" });
        expect(await decryptMlKem(key, compact)).toEqual(message);

        const aad = te.encode("tenant=t1;purpose=data-key");
        const flat = await encryptMlKem(pub, message, { alg, enc, aad, format: "flattened", kid: "explicit" });
        expect(flat.aad).toBe(b64u(aad));
        expect("encrypted_key" in flat).toBe(alg !== "ML-KEM-768");
        expect(readMlKemJweHeader(flat).kid).toBe("explicit");
        expect(await decryptMlKem(key, flat)).toEqual(message);
        expect(await decryptMlKem(key, JSON.stringify(flat))).toEqual(message);
        await expectCode(decryptMlKem(key, { ...flat, aad: b64u(te.encode("tenant=t2;purpose=data-key")) }), "decryption_failed");
      });
    }
  }

  test("every supported enc, and empty / 1 MiB plaintexts", async () => {
    for (const enc of ML_KEM_ENCS) {
      for (const alg of ["ML-KEM-768", "ML-KEM-768+A256KW"] as const) {
        const jwe = await encryptMlKem(pub, message, { alg, enc });
        expect(await decryptMlKem(key, jwe)).toEqual(message);
      }
    }
    expect((await decryptMlKem(key, await encryptMlKem(pub, new Uint8Array(0)))).length).toBe(0);
    const big = crypto.getRandomValues(new Uint8Array(65536));
    const large = new Uint8Array(1 << 20);
    for (let i = 0; i < 16; i++) large.set(big, i * 65536);
    expect(await decryptMlKem(key, await encryptMlKem(pub, large, { enc: "A128CBC-HS256", alg: "ML-KEM-768+A256KW" }))).toEqual(large);
  });

  test("each encryption is fresh: new KEM ciphertext, IV and (for key wrap) CEK", async () => {
    const a = partsOf(await encryptMlKem(pub, message, { alg: "ML-KEM-768+A192KW" }));
    const b = partsOf(await encryptMlKem(pub, message, { alg: "ML-KEM-768+A192KW" }));
    expect(a.protectedB64).not.toBe(b.protectedB64);
    expect(b64u(a.iv)).not.toBe(b64u(b.iv));
    expect(b64u(a.encryptedKey)).not.toBe(b64u(b.encryptedKey));
  });

  test("the module's CEK derivation matches the draft, checked by hand from the decapsulated secret", async () => {
    const secretKey = ml_kem768.keygen(unb64u(key.priv)).secretKey;
    for (const alg of ML_KEM_ALGS) {
      for (const enc of ["A256GCM", "A128CBC-HS256", "A128GCM", "A192GCM"] as const) {
        const aad = te.encode("bound context");
        const jwe = await encryptMlKem(pub, message, { alg, enc, aad, format: "flattened" });
        const ss = ml_kem768.decapsulate(unb64u(readMlKemJweHeader(jwe).kemct), secretKey);
        expect(decryptByHand(jwe, ss)).toEqual(message);
      }
    }
  });

  test("the algorithm allowlists are enforced", async () => {
    const jwe = await encryptMlKem(pub, message, { alg: "ML-KEM-768", enc: "A128CBC-HS256" });
    await expectCode(decryptMlKem(key, jwe, { algorithms: ["ML-KEM-768+A192KW"] }), "malformed_jose");
    await expectCode(decryptMlKem(key, jwe, { encryptionAlgorithms: ["A256GCM"] }), "malformed_jose");
    expect(await decryptMlKem(key, jwe, { algorithms: ["ML-KEM-768"], encryptionAlgorithms: ["A128CBC-HS256"] })).toEqual(message);
    // A key pinned to key wrap refuses a direct JWE.
    await expectCode(decryptMlKem({ ...key, alg: "ML-KEM-768+A192KW" }, jwe), "malformed_key");
  });

  test("extra protected header members are carried, integrity protected, and cannot replace ours", async () => {
    const jwe = await encryptMlKem(pub, message, { alg: "ML-KEM-768+A256KW", header: { cty: "JWT", binding: "tenant-1" } });
    const h = readMlKemJweHeader(jwe);
    expect(h.cty).toBe("JWT");
    expect(h.binding).toBe("tenant-1");
    expect(await decryptMlKem(key, jwe)).toEqual(message);
    const [p, ...rest] = jwe.split(".");
    await expectCode(decryptMlKem(key, [reheader(p!, (x) => (x.binding = "tenant-2")), ...rest].join(".")), "decryption_failed");
    for (const name of ["alg", "enc", "kemct", "kid", "zip", "crit"]) {
      await expectCode(encryptMlKem(pub, message, { header: { [name]: "x" } }), "validation_failed");
    }
    await expectCode(encryptMlKem(pub, message, { header: { n: 1 as never } }), "validation_failed");
  });

  test("caller errors on encrypt are validation_failed", async () => {
    await expectCode(encryptMlKem(pub, message, { aad: te.encode("x") }), "validation_failed");
    await expectCode(encryptMlKem(pub, message, { enc: "A128KW" as never }), "validation_failed");
    await expectCode(encryptMlKem(pub, message, { alg: "ECDH-ES" as never }), "validation_failed");
    await expectCode(encryptMlKem(pub, "text" as never), "validation_failed");
  });
});

// --- tampering -----------------------------------------------------------------------------------

const flipBit = (s: string, byteIndex: number) => {
  const b = unb64u(s);
  b[byteIndex % b.length]! ^= 0x01;
  return b64u(b);
};
const reheader = (protectedB64: string, edit: (h: Record<string, unknown>) => void) => {
  const h = JSON.parse(td.decode(unb64u(protectedB64)));
  edit(h);
  return b64u(te.encode(JSON.stringify(h)));
};

describe("tampering", () => {
  for (const alg of ["ML-KEM-768", "ML-KEM-768+A192KW", "ML-KEM-768+A256KW"] as MlKemAlg[]) {
    for (const enc of ["A256GCM", "A128CBC-HS256"] as const) {
      test(`${alg} / ${enc}: any change to any part is decryption_failed`, async () => {
        const jwe = await encryptMlKem(pub, message, { alg, enc });
        const [p, k, iv, c, t] = jwe.split(".") as [string, string, string, string, string];
        const variants: string[][] = [
          [reheader(p, (h) => (h.kemct = flipBit(h.kemct as string, 500))), k, iv, c, t], // KEM ciphertext
          [reheader(p, (h) => (h.kid = "kem-2")), k, iv, c, t], // any header change breaks the AAD
          [reheader(p, (h) => (h.x = 1)), k, iv, c, t],
          [p, k, flipBit(iv, 3), c, t],
          [p, k, iv, flipBit(c, 0), t],
          [p, k, iv, flipBit(c, 9999), t],
          [p, k, iv, c, flipBit(t, 15)],
        ];
        if (alg !== "ML-KEM-768") variants.push([p, flipBit(k, 0), iv, c, t], [p, flipBit(k, 39), iv, c, t]);
        for (const v of variants) await expectCode(decryptMlKem(key, v.join(".")), "decryption_failed");
        // Tag truncation is structural, not a shorter-tag oracle.
        await expectCode(decryptMlKem(key, [p, k, iv, c, b64u(unb64u(t).subarray(0, 12))].join(".")), "malformed_jose");
      });
    }
  }

  test("a different (valid) private key is decryption_failed", async () => {
    for (const alg of ML_KEM_ALGS) {
      for (const enc of ["A256GCM", "A128CBC-HS256"] as const) {
        await expectCode(decryptMlKem(other, await encryptMlKem(pub, message, { alg, enc })), "decryption_failed");
      }
    }
  });

  test("flattened: unprotected headers cannot override protected ones", async () => {
    const flat = await encryptMlKem(pub, message, { format: "flattened" });
    expect(await decryptMlKem(key, { ...flat, unprotected: { note: "ok" } })).toEqual(message);
    await expectCode(decryptMlKem(key, { ...flat, unprotected: { alg: "ML-KEM-768" } }), "malformed_jose");
    await expectCode(decryptMlKem(key, { ...flat, header: { kid: "kem-1" } }), "malformed_jose");
    await expectCode(decryptMlKem(key, { ...flat, header: { kemct: "x" } }), "malformed_jose");
  });
});

// --- malformed input -------------------------------------------------------------------------------

describe("malformed JWEs are malformed_jose", () => {
  test("structure, base64url, header JSON, lengths", async () => {
    const compact = await encryptMlKem(pub, message, { alg: "ML-KEM-768+A256KW" });
    const direct = await encryptMlKem(pub, message);
    const [p, k, iv, c, t] = compact.split(".") as [string, string, string, string, string];
    const [dp, , div, dc, dt] = direct.split(".") as [string, string, string, string, string];
    const hdr = (h: unknown) => b64u(te.encode(JSON.stringify(h)));
    const kemct = readMlKemJweHeader(compact).kemct;
    const cases: string[] = [
      "",
      "....",
      [p, k, iv, c].join("."),
      [p, k, iv, c, t, ""].join("."),
      [p, k, iv, c, t + "*"].join("."),
      [p, k + "=", iv, c, t].join("."),
      [p, k, iv, c, t.slice(0, -1) + B64U[B64U.indexOf(t.at(-1)!) | 1]].join("."), // non-canonical trailing bits
      [p, k, iv, c, t.slice(1)].join("."),
      ["", k, iv, c, t].join("."),
      [b64u(te.encode("not json")), k, iv, c, t].join("."),
      [b64u(Uint8Array.of(0xff, 0xfe, 0x7b, 0x7d)), k, iv, c, t].join("."), // not UTF-8
      [hdr([1, 2]), k, iv, c, t].join("."),
      [hdr(null), k, iv, c, t].join("."),
      [hdr({ enc: "A256GCM", kemct }), k, iv, c, t].join("."),
      [hdr({ alg: "RSA-OAEP-256", enc: "A256GCM", kemct }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-1024+A256KW", enc: "A256GCM", kemct }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A128KW", kemct }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM" }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", ek: kemct }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", kemct: kemct.slice(0, -4) }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", kemct: kemct + "AAAA" }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", kemct: 5 }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", kemct, kid: 5 }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", kemct, crit: ["exp"] }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", kemct, zip: "DEF" }), k, iv, c, t].join("."),
      [hdr({ alg: "ML-KEM-768+A256KW", enc: "A256GCM", kemct: "x".repeat(9000) }), k, iv, c, t].join("."),
      [p, "", iv, c, t].join("."), // key wrap without an encrypted key
      [p, k.slice(0, 32), iv, c, t].join("."),
      [p, k, b64u(new Uint8Array(16)), c, t].join("."), // GCM IV must be 12 octets
      [dp, k, div, dc, dt].join("."), // direct with an encrypted key
    ];
    for (const [i, jwe] of cases.entries()) {
      const err = await decryptMlKem(key, jwe).then(() => null, (e) => e);
      expect([i, err instanceof AppError ? err.code : String(err)]).toEqual([i, "malformed_jose"]);
    }
    const cbcJwe = await encryptMlKem(pub, message, { enc: "A128CBC-HS256" });
    const [cp, ck, civ, cc, ct] = cbcJwe.split(".") as [string, string, string, string, string];
    await expectCode(decryptMlKem(key, [cp, ck, civ, cc.slice(0, 10), ct].join(".")), "malformed_jose"); // not whole blocks
    await expectCode(decryptMlKem(key, [cp, ck, civ.slice(0, 16), cc, ct].join(".")), "malformed_jose");
  });

  test("flattened JSON: members, types and serializations", async () => {
    const flat = await encryptMlKem(pub, message, { alg: "ML-KEM-768+A192KW", format: "flattened", aad: te.encode("a") });
    const cases: unknown[] = [
      "{",
      "{}",
      "[]",
      "null",
      { ...flat, protected: undefined },
      { ...flat, iv: 12 },
      { ...flat, ciphertext: undefined },
      { ...flat, tag: null },
      { ...flat, encrypted_key: undefined },
      { ...flat, aad: "***" },
      { ...flat, unprotected: "x" },
      { ...flat, header: [] },
      { recipients: [{ encrypted_key: flat.encrypted_key }], protected: flat.protected, iv: flat.iv, ciphertext: flat.ciphertext, tag: flat.tag },
      42,
      null,
    ];
    for (const jwe of cases) await expectCode(decryptMlKem(key, jwe as never), "malformed_jose");
    await expectCode(() => readMlKemJweHeader("a.b.c"), "malformed_jose");
  });
});

// --- fuzz ------------------------------------------------------------------------------------------

/** A small deterministic PRNG so a failure can be replayed from its seed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const B64U = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const NOISE = B64U + '.{}[]":,=+/ \\\u00e9\u0000';

function mutate(s: string, rnd: () => number): string {
  const at = Math.floor(rnd() * s.length);
  const ch = () => NOISE[Math.floor(rnd() * NOISE.length)]!;
  switch (Math.floor(rnd() * 7)) {
    case 0: {
      // Change one character to a different base64url character (the most dangerous kind).
      const cur = s[at]!;
      let next = B64U[Math.floor(rnd() * 64)]!;
      if (next === cur) next = B64U[(B64U.indexOf(next) + 1) % 64]!;
      return s.slice(0, at) + next + s.slice(at + 1);
    }
    case 1:
      return s.slice(0, at) + s.slice(at + 1);
    case 2:
      return s.slice(0, at) + ch() + s.slice(at);
    case 3:
      return s.slice(0, at);
    case 4: {
      const parts = s.split(".");
      const i = Math.floor(rnd() * parts.length), j = Math.floor(rnd() * parts.length);
      [parts[i], parts[j]] = [parts[j]!, parts[i]!];
      return parts.join(".");
    }
    case 5:
      return s.slice(0, at) + ch() + s.slice(at + 1);
    default: {
      const len = 1 + Math.floor(rnd() * 8);
      return s.slice(0, at) + s.slice(at, at + len).split("").reverse().join("") + s.slice(at + len);
    }
  }
}

describe("fuzz", () => {
  test("3000 random mutations give only malformed_jose or decryption_failed, never a forgery", async () => {
    const rnd = prng(0xc0ffee);
    const seeds = [
      await encryptMlKem(pub, message, { alg: "ML-KEM-768" }),
      await encryptMlKem(pub, message, { alg: "ML-KEM-768+A192KW", enc: "A128CBC-HS256" }),
      await encryptMlKem(pub, message, { alg: "ML-KEM-768+A256KW" }),
      JSON.stringify(await encryptMlKem(pub, message, { alg: "ML-KEM-768+A256KW", enc: "A128CBC-HS256", format: "flattened", aad: te.encode("ctx") })),
    ];
    const counts: Record<string, number> = { malformed_jose: 0, decryption_failed: 0 };
    const dk = importMlKemPrivateJwk(key);
    for (let i = 0; i < 3000; i++) {
      const original = seeds[i % seeds.length]!;
      let mutated = mutate(original, rnd);
      if (rnd() < 0.3) mutated = mutate(mutated, rnd);
      if (mutated === original) continue;
      try {
        await decryptMlKem(i % 2 ? dk : key, mutated);
        // Only a change that keeps every byte (e.g. JSON whitespace in the flattened form) may pass.
        const same = original.startsWith("{") && mutated.startsWith("{") && sameFlattened(original, mutated);
        if (!same) throw new Error(`mutation #${i} decrypted: ${mutated.slice(0, 80)}`);
      } catch (e) {
        if (!(e instanceof AppError) || !(e.code in counts)) throw new Error(`mutation #${i} threw ${String(e)}`, { cause: e });
        counts[e.code]!++;
      }
    }
    // Both failure kinds were really exercised.
    expect(counts.malformed_jose!).toBeGreaterThan(500);
    expect(counts.decryption_failed!).toBeGreaterThan(100);
  });
});

function sameFlattened(a: string, b: string): boolean {
  try {
    return JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b));
  } catch {
    return false;
  }
}

// --- interop with the runtime's WebCrypto ML-KEM (an independent FIPS 203 implementation) -------

interface KemSubtle {
  encapsulateBits(alg: { name: string }, key: CryptoKey): Promise<{ sharedKey: ArrayBuffer; ciphertext: ArrayBuffer }>;
  decapsulateBits(alg: { name: string }, key: CryptoKey, ct: BufferSource): Promise<ArrayBuffer>;
  generateKey(alg: { name: string }, extractable: boolean, usages: string[]): Promise<CryptoKeyPair>;
  importKey(format: string, data: BufferSource, alg: { name: string }, extractable: boolean, usages: string[]): Promise<CryptoKey>;
  exportKey(format: string, key: CryptoKey): Promise<ArrayBuffer>;
}

async function webCryptoMlKem(): Promise<KemSubtle | null> {
  const s = crypto.subtle as unknown as KemSubtle;
  if (typeof s.encapsulateBits !== "function" || typeof s.decapsulateBits !== "function") return null;
  try {
    await s.generateKey({ name: "ML-KEM-768" }, true, ["encapsulateBits", "decapsulateBits"]);
    return s;
  } catch {
    return null;
  }
}

describe("noble <-> WebCrypto ML-KEM-768", () => {
  const ML = { name: "ML-KEM-768" };

  test("keys, encapsulation and JWEs interoperate both ways", async () => {
    const s = await webCryptoMlKem();
    if (!s) {
      if (process.env.CI === "true") throw new Error("this runtime's WebCrypto has no ML-KEM-768 (encapsulateBits/decapsulateBits)");
      console.log("skipping WebCrypto ML-KEM interop: this runtime's WebCrypto has no ML-KEM-768");
      return;
    }
    // 1. A WebCrypto-generated key, exported as seed + public key, is the same key for noble.
    const kp = await s.generateKey(ML, true, ["encapsulateBits", "decapsulateBits"]);
    const seed = new Uint8Array(await s.exportKey("raw-seed", kp.privateKey));
    const wcPub = new Uint8Array(await s.exportKey("raw-public", kp.publicKey));
    expect(seed.length).toBe(64);
    expect(wcPub.length).toBe(1184);
    expect(bytesToHex(ml_kem768.keygen(seed).publicKey)).toBe(bytesToHex(wcPub));
    const wcJwk: MlKemPrivateJwk = { kty: "AKP", alg: "ML-KEM-768", pub: b64u(wcPub), priv: b64u(seed) };
    expect(validateMlKemJwk(wcJwk)).toEqual(wcJwk);

    // 2. The module (noble) encapsulates; WebCrypto decapsulates; the JWE opens by hand.
    for (const alg of ML_KEM_ALGS) {
      const jwe = await encryptMlKem(publicMlKemJwk(wcJwk), message, { alg, enc: "A128CBC-HS256", format: "flattened", aad: te.encode("i") });
      const ss = new Uint8Array(await s.decapsulateBits(ML, kp.privateKey, unb64u(readMlKemJweHeader(jwe).kemct)));
      expect(decryptByHand(jwe, ss)).toEqual(message);
    }

    // 3. WebCrypto encapsulates to a module-generated key; a JWE built by hand from that
    //    (KMAC256 by hand, AES by @noble/ciphers) decrypts with the module.
    const wcKey = await s.importKey("raw-public", unb64u(key.pub), ML, true, ["encapsulateBits"]);
    for (const [alg, enc] of [["ML-KEM-768", "A256GCM"], ["ML-KEM-768+A192KW", "A256GCM"], ["ML-KEM-768+A256KW", "A128GCM"]] as const) {
      const { sharedKey, ciphertext } = await s.encapsulateBits(ML, wcKey);
      const ss = new Uint8Array(sharedKey);
      expect(bytesToHex(ml_kem768.decapsulate(new Uint8Array(ciphertext), ml_kem768.keygen(unb64u(key.priv)).secretKey))).toBe(bytesToHex(ss));
      const protectedB64 = b64u(te.encode(JSON.stringify({ alg, enc, kemct: b64u(new Uint8Array(ciphertext)) })));
      const cekLen = Number(enc.slice(1, 4)) / 8;
      let cek: Uint8Array, encryptedKey = "";
      if (alg === "ML-KEM-768") {
        cek = kdfByHand(ss, enc, cekLen);
      } else {
        cek = crypto.getRandomValues(new Uint8Array(cekLen));
        encryptedKey = b64u(aeskw(kdfByHand(ss, alg, alg.endsWith("A192KW") ? 24 : 32)).encrypt(cek));
      }
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const sealed = gcm(cek, iv, te.encode(protectedB64)).encrypt(message);
      const compact = [protectedB64, encryptedKey, b64u(iv), b64u(sealed.subarray(0, -16)), b64u(sealed.subarray(-16))].join(".");
      expect(await decryptMlKem(key, compact)).toEqual(message);
    }

    // 4. A seed-imported WebCrypto key decapsulates what noble encapsulated.
    const imported = await s.importKey("raw-seed", unb64u(key.priv), ML, false, ["decapsulateBits"]);
    const e = ml_kem768.encapsulate(unb64u(key.pub));
    expect(bytesToHex(new Uint8Array(await s.decapsulateBits(ML, imported, e.cipherText)))).toBe(bytesToHex(e.sharedSecret));
  });
});

// --- Deno: src/ must run there unchanged -------------------------------------------------------------

describe("Deno", () => {
  test("the module runs on Deno, and JWEs cross between Bun and Deno both ways", async () => {
    const { mkdtemp, rm, writeFile } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const { join } = await import("node:path");
    const root = new URL("../../", import.meta.url).pathname;
    const deno = join(root, "node_modules", ".bin", "deno");
    expect(await Bun.file(deno).exists()).toBe(true); // a dev dependency, so never optional
    const dir = await mkdtemp(join(tmpdir(), "pq-kem-deno-"));
    try {
      const fromBun = await Promise.all(ML_KEM_ALGS.map((alg) => encryptMlKem(pub, message, { alg, enc: "A128CBC-HS256" })));
      const script = join(dir, "check.ts");
      const modUrl = new URL("../../src/keyring/pq-kem.ts", import.meta.url).href;
      await writeFile(
        script,
        `import * as kem from ${JSON.stringify(modUrl)};
const key = ${JSON.stringify(key)};
const opened = [];
for (const jwe of ${JSON.stringify(fromBun)}) opened.push(new TextDecoder().decode(await kem.decryptMlKem(key, jwe)));
let tampered = "";
try { await kem.decryptMlKem(key, ${JSON.stringify(fromBun[1]!.slice(0, -2) + (fromBun[1]!.endsWith("AA") ? "QA" : "AA"))}); } catch (e) { tampered = e.code; }
const sealed = [];
for (const alg of kem.ML_KEM_ALGS) sealed.push(await kem.encryptMlKem(kem.publicMlKemJwk(key), new TextEncoder().encode("from deno " + alg), { alg }));
console.log(JSON.stringify({ opened, tampered, sealed }));
`,
      );
      const p = Bun.spawn([deno, "run", "--allow-read", "--node-modules-dir=manual", script], { cwd: root, stdout: "pipe", stderr: "pipe" });
      const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
      expect(err).not.toContain("error");
      expect(code).toBe(0);
      const result = JSON.parse(out.trim().split("\n").pop()!);
      expect(result.opened).toEqual(ML_KEM_ALGS.map(() => td.decode(message)));
      expect(["decryption_failed", "malformed_jose"]).toContain(result.tampered);
      for (const [i, alg] of ML_KEM_ALGS.entries()) expect(td.decode(await decryptMlKem(key, result.sealed[i]))).toBe(`from deno ${alg}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
