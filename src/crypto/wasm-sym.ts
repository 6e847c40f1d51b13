/**
 * Symmetric functions of the WASM crypto core: SHA-256/384/512, HMAC, HKDF and
 * AES-128/192/256-GCM.
 *
 * Guarantees: the core is constant time with respect to keys, data and tags
 * (bitsliced AES, carry-less multiply by masks for GHASH, no secret-indexed
 * tables or secret-dependent branches); lengths are public. Every argument is
 * checked here, once, before the core is called. GCM decryption verifies the tag
 * in constant time before any plaintext is produced; on failure nothing is
 * returned and the scratch plaintext area is never written.
 */
import { AppError } from "../service/errors.ts";
import { memoryView, scratch, take, wasmExports, wipe } from "./wasm-runtime.ts";

export type HashName = "SHA-256" | "SHA-384" | "SHA-512";

const ex = wasmExports();
const HASH_ALG: Record<HashName, number> = { "SHA-256": 256, "SHA-384": 384, "SHA-512": 512 };
const HASH_LEN: Record<HashName, number> = { "SHA-256": 32, "SHA-384": 48, "SHA-512": 64 };
const TAG_LEN = 16;
// Input and output share the 32-bit scratch area; GCM itself allows 2^36 - 32 bytes.
const GCM_MAX_PLAINTEXT = 1 << 30;

function bytes(name: string, v: unknown): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new AppError("malformed_input", `${name} must be a Uint8Array`);
  return v;
}

function hashAlg(hash: unknown): HashName {
  if (hash !== "SHA-256" && hash !== "SHA-384" && hash !== "SHA-512") {
    throw new AppError("malformed_input", "hash must be SHA-256, SHA-384 or SHA-512");
  }
  return hash;
}

// Round up to 16 so every buffer in scratch starts aligned.
const up = (n: number): number => (n + 15) & ~15;

function digest(alg: number, outLen: number, data: Uint8Array): Uint8Array {
  const base = scratch(64 + data.length);
  memoryView().set(data, base + 64);
  ex.sha2Digest(alg, base + 64, data.length, base);
  return take(base, outLen);
}

/** SHA-256 of `data`. @example sha256(new TextEncoder().encode("abc")) */
export function sha256(data: Uint8Array): Uint8Array {
  return digest(256, 32, bytes("data", data));
}

/** SHA-384 of `data`. */
export function sha384(data: Uint8Array): Uint8Array {
  return digest(384, 48, bytes("data", data));
}

/** SHA-512 of `data`. */
export function sha512(data: Uint8Array): Uint8Array {
  return digest(512, 64, bytes("data", data));
}

/** HMAC of `data` under `key`. @example hmac("SHA-256", key, data) */
export function hmac(hash: HashName, key: Uint8Array, data: Uint8Array): Uint8Array {
  const h = hashAlg(hash);
  bytes("key", key);
  bytes("data", data);
  const k = 64;
  const d = k + up(key.length);
  const base = scratch(d + data.length);
  const m = memoryView();
  m.set(key, base + k);
  m.set(data, base + d);
  ex.hmacDigest(HASH_ALG[h], base + k, key.length, base + d, data.length, base);
  wipe(base + k, key.length);
  return take(base, HASH_LEN[h]);
}

/**
 * HKDF (RFC 5869): `length` bytes from `ikm`, `salt` (may be empty) and `info`.
 * @example hkdf("SHA-256", ikm, salt, info, 32)
 */
export function hkdf(hash: HashName, ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array {
  const h = hashAlg(hash);
  bytes("ikm", ikm);
  bytes("salt", salt);
  bytes("info", info);
  if (!Number.isInteger(length) || length < 0 || length > 255 * HASH_LEN[h]) {
    throw new AppError("malformed_input", `length must be an integer in 0..${255 * HASH_LEN[h]}`);
  }
  const o = 0;
  const i1 = up(length);
  const s = i1 + up(ikm.length);
  const f = s + up(salt.length);
  const base = scratch(f + info.length);
  const m = memoryView();
  m.set(ikm, base + i1);
  m.set(salt, base + s);
  m.set(info, base + f);
  const status = ex.hkdfDerive(
    HASH_ALG[h], base + i1, ikm.length, base + s, salt.length, base + f, info.length, base + o, length,
  );
  wipe(base + i1, ikm.length);
  if (status !== 0) throw new AppError("malformed_input", `hkdf rejected its arguments (status ${status})`);
  const out = take(base + o, length);
  wipe(base + o, length);
  return out;
}

const GCM_CONTEXT = ex.aesGcmContextSize();

/**
 * An AES key prepared for GCM once (its round keys and GHASH's H and powers), for many
 * messages: each call then skips the key schedule, about a third of the cost of a small
 * message. Held privately; `destroy()` erases it.
 *
 * @example
 *   const k = aesGcmPrepareKey(rawKey);
 *   const ct = aesGcmEncrypt(k, iv, plaintext);
 *   k.destroy();
 */
export class AesGcmKey {
  /** Key length in bytes (16, 24 or 32). */
  readonly length: number;

  /** Made by aesGcmPrepareKey; one built directly holds no key and is refused. */
  constructor(length: number) {
    this.length = length;
  }

  /** Erases the prepared state; later calls with this key throw. */
  destroy(): void {
    contexts.get(this)?.fill(0);
    contexts.delete(this);
  }
}

/** The prepared state of each AesGcmKey: reachable from this module only. */
const contexts = new WeakMap<AesGcmKey, Uint8Array>();

/** Prepares an AES-128/192/256 key for repeated AES-GCM calls (see AesGcmKey). */
export function aesGcmPrepareKey(key: Uint8Array): AesGcmKey {
  const k = rawAesKey(key);
  const co = 32;
  const base = scratch(co + GCM_CONTEXT);
  memoryView().set(k, base);
  const status = ex.aesGcmPrepare(base, k.length, base + co);
  wipe(base, 32);
  if (status !== 0) throw new AppError("malformed_input", `AES-GCM rejected the key (status ${status})`);
  const prepared = new AesGcmKey(k.length);
  contexts.set(prepared, take(base + co, GCM_CONTEXT));
  wipe(base + co, GCM_CONTEXT);
  return prepared;
}

function rawAesKey(key: unknown): Uint8Array {
  const k = bytes("key", key);
  if (k.length !== 16 && k.length !== 24 && k.length !== 32) {
    throw new AppError("malformed_input", "AES key must be 16, 24 or 32 bytes");
  }
  return k;
}

/** The key as the core takes it: raw bytes or a prepared context. */
function gcmKey(key: unknown): { bytes: Uint8Array; prepared: boolean } {
  if (key instanceof AesGcmKey) {
    const context = contexts.get(key);
    if (!context) throw new AppError("malformed_input", "the AES-GCM key was destroyed or never prepared (aesGcmPrepareKey)");
    return { bytes: context, prepared: true };
  }
  return { bytes: rawAesKey(key), prepared: false };
}

function gcmArgs(iv: unknown, data: unknown, aad: unknown): [Uint8Array, Uint8Array, Uint8Array] {
  const n = bytes("iv", iv);
  if (n.length === 0) throw new AppError("malformed_input", "GCM IV must not be empty");
  if (n.length > 1 << 20) throw new AppError("malformed_input", "GCM IV is too long");
  const a = aad === undefined ? new Uint8Array(0) : bytes("aad", aad);
  return [n, bytes("data", data), a];
}

/**
 * AES-GCM encryption with a 128-bit tag: returns ciphertext ‖ tag. `key` is raw key bytes
 * or a prepared key (aesGcmPrepareKey).
 * @example aesGcmEncrypt(key, iv12, plaintext, aad)
 */
export function aesGcmEncrypt(key: Uint8Array | AesGcmKey, iv: Uint8Array, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
  const k = gcmKey(key);
  const [n, p, a] = gcmArgs(iv, plaintext, aad);
  if (p.length > GCM_MAX_PLAINTEXT || a.length > GCM_MAX_PLAINTEXT) {
    throw new AppError("payload_too_large", "AES-GCM input too large");
  }
  const ko = 0;
  const no = up(k.bytes.length);
  const ao = no + up(n.length);
  const po = ao + up(a.length);
  const oo = po + up(p.length);
  const base = scratch(oo + p.length + TAG_LEN);
  const m = memoryView();
  m.set(k.bytes, base + ko);
  m.set(n, base + no);
  m.set(a, base + ao);
  m.set(p, base + po);
  const status = k.prepared
    ? ex.aesGcmSealPrepared(base + ko, base + no, n.length, base + ao, a.length, base + po, p.length, base + oo)
    : ex.aesGcmSeal(base + ko, k.bytes.length, base + no, n.length, base + ao, a.length, base + po, p.length, base + oo);
  wipe(base + ko, k.bytes.length);
  if (status !== 0) throw new AppError("malformed_input", `AES-GCM rejected its arguments (status ${status})`);
  return take(base + oo, p.length + TAG_LEN);
}

/**
 * AES-GCM decryption of ciphertext ‖ tag (128-bit tag), with raw key bytes or a prepared
 * key. Throws AppError("decryption_failed") when the tag does not verify.
 */
export function aesGcmDecrypt(key: Uint8Array | AesGcmKey, iv: Uint8Array, ciphertextAndTag: Uint8Array, aad?: Uint8Array): Uint8Array {
  const k = gcmKey(key);
  const [n, c, a] = gcmArgs(iv, ciphertextAndTag, aad);
  if (c.length < TAG_LEN) throw new AppError("decryption_failed", "AES-GCM decryption failed", { status: 400 });
  if (c.length > GCM_MAX_PLAINTEXT || a.length > GCM_MAX_PLAINTEXT) {
    throw new AppError("payload_too_large", "AES-GCM input too large");
  }
  const len = c.length - TAG_LEN;
  const ko = 0;
  const no = up(k.bytes.length);
  const ao = no + up(n.length);
  const co = ao + up(a.length);
  const oo = co + up(c.length);
  const base = scratch(oo + len);
  const m = memoryView();
  m.set(k.bytes, base + ko);
  m.set(n, base + no);
  m.set(a, base + ao);
  m.set(c, base + co);
  const status = k.prepared
    ? ex.aesGcmOpenPrepared(base + ko, base + no, n.length, base + ao, a.length, base + co, len, base + co + len, base + oo)
    : ex.aesGcmOpen(base + ko, k.bytes.length, base + no, n.length, base + ao, a.length, base + co, len, base + co + len, base + oo);
  wipe(base + ko, k.bytes.length);
  if (status === 2) throw new AppError("decryption_failed", "AES-GCM decryption failed", { status: 400 });
  if (status !== 0) throw new AppError("malformed_input", `AES-GCM rejected its arguments (status ${status})`);
  const out = take(base + oo, len);
  wipe(base + oo, len);
  return out;
}
