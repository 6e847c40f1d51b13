/**
 * The `webcrypto` provider: every operation over the runtime's `crypto.subtle` (Bun, Deno,
 * Node and browsers all ship one), with keys held in memory as `RawKey`s.
 *
 * Constant time: as constant time as the runtime's native library (BoringSSL/OpenSSL in Bun
 * and Node, ring/aws-lc in Deno), which implements AES-GCM, HMAC, ECDSA and ECDH on P-256/P-384
 * in constant time. What this file adds (argument checks, P1363 length checks) depends only
 * on public lengths.
 * Validated: every argument, once, with the helpers of `provider.ts`; ECDH peer points are
 * checked by the runtime on import (an off-curve point is refused).
 */
import { AppError } from "../service/errors.ts";
import {
  type AesBits,
  type CryptoOp,
  type CryptoProvider,
  type EcCurve,
  type EcKeyPair,
  type HashAlg,
  type KeyGenOptions,
  type KeyHandle,
  type OpParams,
  type RawKey,
  CURVE_BYTES,
  checkAesBits,
  checkBytes,
  checkCurve,
  checkEcdhAs,
  checkGcmArgs,
  checkHash,
  checkSecp,
  checkWrappable,
  decryptionFailed,
  expectRaw,
  malformed,
  rawKey,
  randomAesKey,
} from "./provider.ts";

const subtle = globalThis.crypto.subtle;

// WebCrypto types want ArrayBuffer-backed views; copying also detaches us from the caller's buffer.
// WebCrypto copies its inputs when called, so views are passed as they are; only a view on
// shared memory (which WebCrypto refuses) is copied. Copying every input cost 30-45% of
// throughput at 64 KiB-1 MiB (bench/crypto.ts, dispatcher rows).
const buf = (b: Uint8Array): Uint8Array<ArrayBuffer> =>
  b.buffer instanceof ArrayBuffer ? (b as Uint8Array<ArrayBuffer>) : new Uint8Array(b);

const b64u = (b: Uint8Array): string => {
  let s = "";
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
};
const unb64u = (s: string): Uint8Array => {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
};

/** CryptoKeys imported from a RawKey, per usage; RawKeys are frozen so the cache cannot go stale. */
const cache = new WeakMap<RawKey, Map<string, CryptoKey>>();

async function imported(key: RawKey, slot: string, make: () => Promise<CryptoKey>): Promise<CryptoKey> {
  let m = cache.get(key);
  if (!m) cache.set(key, (m = new Map()));
  let k = m.get(slot);
  if (!k) {
    k = await make();
    m.set(slot, k);
  }
  return k;
}

function ecJwk(key: RawKey, withPrivate: boolean): JsonWebKey {
  const curve = key.curve as EcCurve;
  const n = CURVE_BYTES[curve];
  const pub = key.type === "ec-private" ? (key.publicKey as Uint8Array) : key.material;
  const jwk: JsonWebKey = { kty: "EC", crv: curve, x: b64u(pub.subarray(1, 1 + n)), y: b64u(pub.subarray(1 + n)), ext: false };
  if (withPrivate) jwk.d = b64u(key.material);
  return jwk;
}

async function importEc(key: RawKey, usage: "sign" | "verify" | "deriveBits"): Promise<CryptoKey> {
  const curve = key.curve as EcCurve;
  if (usage === "deriveBits") {
    return imported(key, "ecdh", () =>
      subtle.importKey("jwk", ecJwk(key, true), { name: "ECDH", namedCurve: curve }, false, ["deriveBits"]),
    );
  }
  return imported(key, usage, () =>
    subtle.importKey("jwk", ecJwk(key, usage === "sign"), { name: "ECDSA", namedCurve: curve }, false, [usage]),
  );
}

/** Exports a freshly generated WebCrypto EC pair into raw form. */
async function exportPair(pair: CryptoKeyPair, curve: EcCurve): Promise<EcKeyPair> {
  const jwk = await subtle.exportKey("jwk", pair.privateKey);
  const n = CURVE_BYTES[curve];
  const pub = new Uint8Array(1 + 2 * n);
  pub[0] = 4;
  pub.set(unb64u(jwk.x as string), 1);
  pub.set(unb64u(jwk.y as string), 1 + n);
  return {
    privateKey: rawKey("ec-private", unb64u(jwk.d as string), { curve, publicKey: pub }),
    publicKey: rawKey("ec-public", pub, { curve }),
  };
}

export class WebCryptoProvider implements CryptoProvider {
  readonly name = "webcrypto" as const;

  constantTime(_op: CryptoOp): boolean {
    return true;
  }

  supports(op: CryptoOp, params: OpParams = {}): boolean {
    if (params.location === "token") return false;
    if (params.curve !== undefined && params.curve !== "P-256" && params.curve !== "P-384") return false;
    if (params.keyBits !== undefined && (op.startsWith("aes") || op === "generateAesKey" || op.endsWith("wrapKey"))) {
      return params.keyBits === 128 || params.keyBits === 192 || params.keyBits === 256;
    }
    return true;
  }

  async aesGcmEncrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "aes");
    checkGcmArgs(iv, data, aad, false);
    const ck = await imported(k, "gcm", () => subtle.importKey("raw", buf(k.material), "AES-GCM", false, ["encrypt", "decrypt"]));
    const params: AesGcmParams = { name: "AES-GCM", iv: buf(iv), tagLength: 128 };
    if (aad) params.additionalData = buf(aad);
    return new Uint8Array(await subtle.encrypt(params, ck, buf(data)));
  }

  async aesGcmDecrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "aes");
    checkGcmArgs(iv, data, aad, true);
    const ck = await imported(k, "gcm", () => subtle.importKey("raw", buf(k.material), "AES-GCM", false, ["encrypt", "decrypt"]));
    const params: AesGcmParams = { name: "AES-GCM", iv: buf(iv), tagLength: 128 };
    if (aad) params.additionalData = buf(aad);
    try {
      return new Uint8Array(await subtle.decrypt(params, ck, buf(data)));
    } catch {
      throw decryptionFailed();
    }
  }

  async sign(key: KeyHandle, hash: HashAlg, data: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "ec-private");
    checkHash(hash);
    checkBytes("data", data);
    const ck = await importEc(k, "sign");
    return new Uint8Array(await subtle.sign({ name: "ECDSA", hash }, ck, buf(data)));
  }

  async verify(key: KeyHandle, hash: HashAlg, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
    const k = expectRaw(key, "ec-public", "ec-private");
    checkHash(hash);
    checkBytes("data", data);
    checkBytes("signature", signature);
    if (signature.length !== 2 * CURVE_BYTES[k.curve as EcCurve]) return false;
    const ck = await importEc(k.type === "ec-private" ? rawKey("ec-public", k.publicKey as Uint8Array, { curve: k.curve }) : k, "verify");
    try {
      return await subtle.verify({ name: "ECDSA", hash }, ck, buf(signature), buf(data));
    } catch {
      return false;
    }
  }

  async ecdh(privateKey: KeyHandle, peerPublicKey: Uint8Array, as?: { type: "aes"; bits: AesBits }): Promise<KeyHandle> {
    const k = expectRaw(privateKey, "ec-private");
    const curve = k.curve as EcCurve;
    checkSecp(curve, peerPublicKey, "peer public key");
    checkEcdhAs(curve, as);
    let peer: CryptoKey;
    try {
      peer = await subtle.importKey("raw", buf(peerPublicKey), { name: "ECDH", namedCurve: curve }, false, []);
    } catch {
      throw malformed("peer public key is not a valid point");
    }
    const z = new Uint8Array(
      await subtle.deriveBits({ name: "ECDH", public: peer }, await importEc(k, "deriveBits"), CURVE_BYTES[curve] * 8),
    );
    return as ? rawKey("aes", z) : rawKey("secret", z);
  }

  async generateAesKey(bits: AesBits, opts: KeyGenOptions = {}): Promise<KeyHandle> {
    return randomAesKey("webcrypto", bits, opts);
  }

  async generateEcKeyPair(curve: EcCurve, opts: KeyGenOptions = {}): Promise<EcKeyPair> {
    checkCurve(curve);
    if (opts.location === "token") throw new AppError("bad_request", "webcrypto cannot create token keys");
    const pair = await subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"]);
    return exportPair(pair, curve);
  }

  async wrapKey(wrappingKey: KeyHandle, key: KeyHandle): Promise<Uint8Array> {
    const w = expectRaw(wrappingKey, "aes");
    const k = expectRaw(key, "aes", "secret");
    checkWrappable(k.material.length);
    const kek = await imported(w, "kw", () => subtle.importKey("raw", buf(w.material), "AES-KW", false, ["wrapKey", "unwrapKey"]));
    // HMAC is the one raw-importable, extractable algorithm that takes any length: a neutral carrier.
    const carrier = await subtle.importKey("raw", buf(k.material), { name: "HMAC", hash: "SHA-256" }, true, ["sign"]);
    return new Uint8Array(await subtle.wrapKey("raw", carrier, kek, "AES-KW"));
  }

  async unwrapKey(
    unwrappingKey: KeyHandle,
    wrapped: Uint8Array,
    as: { type: "aes" | "secret" },
    opts: KeyGenOptions = {},
  ): Promise<KeyHandle> {
    const w = expectRaw(unwrappingKey, "aes");
    checkBytes("wrapped key", wrapped);
    checkWrappable(wrapped.length - 8);
    if (opts.location === "token") throw new AppError("bad_request", "webcrypto cannot create token keys");
    const kek = await imported(w, "kw", () => subtle.importKey("raw", buf(w.material), "AES-KW", false, ["wrapKey", "unwrapKey"]));
    let carrier: CryptoKey;
    try {
      carrier = await subtle.unwrapKey("raw", buf(wrapped), kek, "AES-KW", { name: "HMAC", hash: "SHA-256" }, true, ["sign"]);
    } catch {
      throw decryptionFailed();
    }
    const material = new Uint8Array(await subtle.exportKey("raw", carrier));
    return rawKey(as.type, material);
  }

  async digest(hash: HashAlg, data: Uint8Array): Promise<Uint8Array> {
    checkHash(hash);
    checkBytes("data", data);
    return new Uint8Array(await subtle.digest(hash, buf(data)));
  }

  async hmac(hash: HashAlg, key: KeyHandle, data: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "secret", "aes");
    checkHash(hash);
    checkBytes("data", data);
    const ck = await imported(k, `hmac-${hash}`, () =>
      subtle.importKey("raw", buf(k.material), { name: "HMAC", hash }, false, ["sign"]),
    );
    return new Uint8Array(await subtle.sign("HMAC", ck, buf(data)));
  }

  async close(): Promise<void> {}
}

/** @example const p = createWebCryptoProvider(); await p.digest("SHA-256", data); */
export const createWebCryptoProvider = (): CryptoProvider => new WebCryptoProvider();
