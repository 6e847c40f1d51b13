/**
 * Elliptic-curve functions of the WASM crypto core: ECDSA (P-256/P-384 with
 * SHA-256/384/512, P1363 or DER signatures), ECDH, key generation, public-key
 * derivation and validation. Synchronous, `Uint8Array` in and out.
 *
 * Guarantees (details in wasm/assembly/ec/*.ts):
 * - Secret scalars (private keys, nonces) are handled by constant-time code in
 *   the core; this file only copies them into scratch and wipes them after.
 * - Nonces: RFC 6979 HMAC-DRBG hedged with 32 fresh bytes of
 *   `crypto.getRandomValues` (RFC 6979 section 3.6 additional data).
 * - Every input is checked here, once: curve and hash names, private key length
 *   and range, public keys (SEC1 uncompressed or compressed, on the curve).
 *   Bad input throws `AppError("malformed_input")`; `ecdsaVerify` returns false
 *   for any malformed key or signature instead. DER signatures are parsed
 *   strictly (minimal lengths and integers, no negative values, no trailing data).
 *
 * @example
 *   const { privateKey, publicKey } = ecGenerateKeyPair("P-256");
 *   const sig = ecdsaSign("P-256", "SHA-256", privateKey, msg, { format: "der" });
 *   ecdsaVerify("P-256", "SHA-256", publicKey, msg, sig, { format: "der" }); // true
 */
import { AppError } from "../service/errors.ts";
import { wasmExports, scratch, put, take as takeShared, wipe } from "./wasm-runtime.ts";

/** Bytes copied out of the core (a fresh ArrayBuffer, usable as a WebCrypto BufferSource). */
const take = (at: number, len: number) => takeShared(at, len) as Uint8Array<ArrayBuffer>;

export type EcCurve = "P-256" | "P-384";
export type EcHash = "SHA-256" | "SHA-384" | "SHA-512";
export type EcdsaFormat = "p1363" | "der";

/** Exports of the elliptic-curve half of the core (pointers and lengths are i32). */
interface EcExports {
  ecPublicFromPrivate(curve: number, priv: number, out: number): number;
  ecCheckPublic(curve: number, pub: number, len: number): number;
  ecdhDerive(curve: number, priv: number, pub: number, pubLen: number, out: number): number;
  ecdsaSignDigest(
    curve: number, alg: number, priv: number, msg: number, msgLen: number,
    extra: number, extraLen: number, out: number,
  ): number;
  ecdsaVerifyDigest(
    curve: number, alg: number, pub: number, pubLen: number, msg: number, msgLen: number, sig: number,
  ): number;
}

const ex = wasmExports() as unknown as EcExports;

// Status codes of the core (wasm/assembly/ec/ecdsa.ts).
const EC_BAD_PRIVATE = 1;
const EC_BAD_PUBLIC = 2;

const CURVES: Record<EcCurve, { id: number; size: number }> = {
  "P-256": { id: 256, size: 32 },
  "P-384": { id: 384, size: 48 },
};
const HASHES: Record<EcHash, number> = { "SHA-256": 256, "SHA-384": 384, "SHA-512": 512 };
const HEDGE_BYTES = 32;
// Scratch layout: fixed slots first, the variable-length message last.
const AT_PRIV = 0;
const AT_EXTRA = 64;
const AT_OUT = 128;
const AT_PUB = 256;
const AT_MSG = 384;

function malformed(message: string): AppError {
  return new AppError("malformed_input", message);
}

function curveOf(curve: unknown): { id: number; size: number } {
  const c = typeof curve === "string" ? CURVES[curve as EcCurve] : undefined;
  if (!c || !Object.hasOwn(CURVES, curve as string)) throw malformed(`unsupported curve: ${String(curve)}`);
  return c;
}

function hashOf(hash: unknown): number {
  if (typeof hash !== "string" || !Object.hasOwn(HASHES, hash)) throw malformed(`unsupported hash: ${String(hash)}`);
  return HASHES[hash as EcHash];
}

function bytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) throw malformed(`${what} must be a Uint8Array`);
  return value;
}

function formatOf(opts: { format?: EcdsaFormat } | undefined): EcdsaFormat {
  const format = opts?.format ?? "p1363";
  if (format !== "p1363" && format !== "der") throw malformed(`unsupported signature format: ${String(format)}`);
  return format;
}

function privateKeyOf(key: unknown, size: number): Uint8Array {
  const k = bytes(key, "private key");
  if (k.length !== size) throw malformed(`private key must be ${size} bytes`);
  return k;
}

/** Signs `message` (hashed with `hash`) with ECDSA; P1363 (r || s) unless `format: "der"`. */
export function ecdsaSign(
  curve: EcCurve, hash: EcHash, privateKey: Uint8Array, message: Uint8Array,
  opts: { format?: EcdsaFormat } = {},
): Uint8Array<ArrayBuffer> {
  const c = curveOf(curve);
  const alg = hashOf(hash);
  const format = formatOf(opts);
  const priv = privateKeyOf(privateKey, c.size);
  const msg = bytes(message, "message");
  const extra = crypto.getRandomValues(new Uint8Array(HEDGE_BYTES));
  const base = scratch(AT_MSG + msg.length);
  put(base + AT_PRIV, priv);
  put(base + AT_EXTRA, extra);
  put(base + AT_MSG, msg);
  const status = ex.ecdsaSignDigest(
    c.id, alg, base + AT_PRIV, base + AT_MSG, msg.length, base + AT_EXTRA, HEDGE_BYTES, base + AT_OUT,
  );
  wipe(base + AT_PRIV, c.size);
  wipe(base + AT_EXTRA, HEDGE_BYTES);
  if (status === EC_BAD_PRIVATE) throw malformed("private key out of range");
  if (status !== 0) throw new AppError("internal", `ecdsa sign failed (${status})`);
  const sig = take(base + AT_OUT, 2 * c.size);
  return format === "der" ? p1363ToDer(sig) : sig;
}

/** Verifies an ECDSA signature; false for any invalid or malformed key or signature. */
export function ecdsaVerify(
  curve: EcCurve, hash: EcHash, publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array,
  opts: { format?: EcdsaFormat } = {},
): boolean {
  const c = curveOf(curve);
  const alg = hashOf(hash);
  const format = formatOf(opts);
  const pub = bytes(publicKey, "public key");
  const msg = bytes(message, "message");
  const sig = bytes(signature, "signature");
  const rs = format === "der" ? derToP1363(sig, c.size) : sig.length === 2 * c.size ? sig : undefined;
  if (!rs || pub.length > AT_MSG - AT_PUB) return false;
  const base = scratch(AT_MSG + msg.length);
  put(base + AT_OUT, rs);
  put(base + AT_PUB, pub);
  put(base + AT_MSG, msg);
  return ex.ecdsaVerifyDigest(c.id, alg, base + AT_PUB, pub.length, base + AT_MSG, msg.length, base + AT_OUT) === 1;
}

/** ECDH: the x-coordinate of privateKey * publicKey (the peer key is validated). */
export function ecdhSharedSecret(curve: EcCurve, privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array<ArrayBuffer> {
  const c = curveOf(curve);
  const priv = privateKeyOf(privateKey, c.size);
  const pub = bytes(publicKey, "public key");
  if (pub.length > AT_MSG - AT_PUB) throw malformed("invalid public key");
  const base = scratch(AT_MSG);
  put(base + AT_PRIV, priv);
  put(base + AT_PUB, pub);
  const status = ex.ecdhDerive(c.id, base + AT_PRIV, base + AT_PUB, pub.length, base + AT_OUT);
  wipe(base + AT_PRIV, c.size);
  if (status === EC_BAD_PRIVATE) throw malformed("private key out of range");
  if (status === EC_BAD_PUBLIC) throw malformed("invalid public key");
  if (status !== 0) throw malformed(`ecdh failed (${status})`);
  const out = take(base + AT_OUT, c.size);
  wipe(base + AT_OUT, c.size);
  return out;
}

/** SEC1 uncompressed public key of a private key. */
export function ecPublicKey(curve: EcCurve, privateKey: Uint8Array): Uint8Array<ArrayBuffer> {
  const c = curveOf(curve);
  const priv = privateKeyOf(privateKey, c.size);
  const base = scratch(AT_MSG);
  put(base + AT_PRIV, priv);
  const status = ex.ecPublicFromPrivate(c.id, base + AT_PRIV, base + AT_OUT);
  wipe(base + AT_PRIV, c.size);
  if (status === EC_BAD_PRIVATE) throw malformed("private key out of range");
  if (status !== 0) throw new AppError("internal", `public key derivation failed (${status})`);
  return take(base + AT_OUT, 1 + 2 * c.size);
}

/**
 * A fresh key pair: the private key is drawn uniformly from [1, n-1] by
 * rejection sampling (a draw is rejected with probability < 2^-32).
 */
export function ecGenerateKeyPair(curve: EcCurve): {
  privateKey: Uint8Array<ArrayBuffer>;
  publicKey: Uint8Array<ArrayBuffer>;
} {
  const c = curveOf(curve);
  const base = scratch(AT_MSG);
  for (let attempt = 0; attempt < 64; attempt++) {
    const privateKey = crypto.getRandomValues(new Uint8Array(c.size));
    put(base + AT_PRIV, privateKey);
    const status = ex.ecPublicFromPrivate(c.id, base + AT_PRIV, base + AT_OUT);
    wipe(base + AT_PRIV, c.size);
    if (status === 0) return { privateKey, publicKey: take(base + AT_OUT, 1 + 2 * c.size) };
    privateKey.fill(0);
  }
  throw new AppError("internal", "random source keeps producing invalid scalars");
}

/** True when `publicKey` is a valid SEC1 (uncompressed or compressed) point of the curve. */
export function ecValidatePublicKey(curve: EcCurve, publicKey: Uint8Array): boolean {
  const c = curveOf(curve);
  const pub = bytes(publicKey, "public key");
  if (pub.length > AT_MSG - AT_PUB) return false;
  const base = scratch(AT_MSG);
  put(base + AT_PUB, pub);
  return ex.ecCheckPublic(c.id, base + AT_PUB, pub.length) === 0;
}

// ---- DER (X9.62 Ecdsa-Sig-Value), public data ------------------------------

function derInt(v: Uint8Array): Uint8Array<ArrayBuffer> {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const body = v.subarray(i);
  const pad = (body[0]! & 0x80) !== 0 ? 1 : 0;
  const out = new Uint8Array(2 + pad + body.length);
  out[0] = 0x02;
  out[1] = pad + body.length;
  out.set(body, 2 + pad);
  return out;
}

/** r || s to DER SEQUENCE { INTEGER r, INTEGER s } (short-form lengths suffice up to P-384). */
export function p1363ToDer(sig: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = sig.length >> 1;
  const r = derInt(sig.subarray(0, half));
  const s = derInt(sig.subarray(half));
  const out = new Uint8Array(2 + r.length + s.length);
  out[0] = 0x30;
  out[1] = r.length + s.length;
  out.set(r, 2);
  out.set(s, 2 + r.length);
  return out;
}

/**
 * Strict DER to fixed-width r || s, or undefined. Rejects long-form or
 * non-minimal lengths, negative or non-minimal integers, integers wider than
 * the curve, and trailing bytes.
 */
export function derToP1363(der: Uint8Array, size: number): Uint8Array<ArrayBuffer> | undefined {
  // Ecdsa-Sig-Value for P-384 is at most 104 bytes: every length is short form.
  if (der.length < 8 || der[0] !== 0x30 || der[1]! >= 0x80 || der[1] !== der.length - 2) return undefined;
  const out = new Uint8Array(2 * size);
  let at = 2;
  for (let k = 0; k < 2; k++) {
    if (at + 2 > der.length || der[at] !== 0x02) return undefined;
    const len = der[at + 1]!;
    if (len === 0 || len >= 0x80 || at + 2 + len > der.length) return undefined;
    const body = der.subarray(at + 2, at + 2 + len);
    if ((body[0]! & 0x80) !== 0) return undefined; // negative
    if (body[0] === 0 && len > 1 && (body[1]! & 0x80) === 0) return undefined; // non-minimal
    const value = body[0] === 0 && len > 1 ? body.subarray(1) : body;
    if (value.length > size) return undefined;
    out.set(value, k * size + size - value.length);
    at += 2 + len;
  }
  return at === der.length ? out : undefined;
}
