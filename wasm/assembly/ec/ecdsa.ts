// ECDSA (FIPS 186-5) and ECDH (SP 800-56A, x-coordinate) over P-256 and P-384,
// key derivation and public-key validation.
//
// Guarantees:
// - Private keys and nonces only meet constant-time code: `mulBaseCt`
//   (fixed-base comb, masked table scan), `mulVarJac` (fixed window, masked
//   table scan), Montgomery arithmetic mod n, and `minv`: constant-time
//   safegcd for P-256 (fixed 600 division steps), Fermat (exponentiation by the
//   public exponent n-2 or p-2) for P-384.
//   Branches on secrets are limited to rejection decisions that happen with
//   probability < 2^-32 (nonce >= n, r == 0, s == 0) and to the validity of a
//   caller's private key (1 <= d < n), which is an input error.
// - Nonces follow RFC 6979 (HMAC-DRBG with the message hash), hedged with the
//   caller's fresh random bytes as the "additional data" of section 3.6, so a
//   bad RNG degrades to deterministic signatures and a fault or a repeated
//   message does not repeat a nonce.
// - Verification handles public data only and is VARIABLE TIME (wNAF for the
//   key, the base-point table for G, no final inversion); it rejects r, s
//   outside [1, n-1] and invalid keys, and accepts x(R) mod n == r.
// - Public keys (SEC1, uncompressed or compressed) are fully validated by
//   `decodePoint`: encoding, coordinates < p, curve equation (cofactor 1).
import { sha2Digest } from "../sym/sha2";
import { hmacDigest } from "../sym/hmac";
import {
  FE, MD_M, mmul, madd, minv, toMont, fromMont, isZeroMask, eqMask, ltMask,
  condSubMod, fromBytes, toBytes,
} from "./field";
import {
  C_FP, C_FN, PT, curveCtx, limbs, mulBaseCt, mulVarJac, mulDoubleVar, jToAffine, jCheckX,
  decodePoint, encodeJacobian,
} from "./curve";

/** Status codes returned to JS. */
export const EC_OK: i32 = 0;
export const EC_BAD_PRIVATE: i32 = 1;
export const EC_BAD_PUBLIC: i32 = 2;
export const EC_BAD_ARG: i32 = 3;
export const EC_INFINITY: i32 = 4;

const D = memory.data(48);
const K = memory.data(48);
const Z = memory.data(48);
const R = memory.data(48);
const S = memory.data(48);
const W1 = memory.data(48);
const W2 = memory.data(48);
const AX = memory.data(48);
const AY = memory.data(48);
const HBUF = memory.data(64);
const ZB = memory.data(64);
const P1 = memory.data(<i32>PT);
const P2 = memory.data(<i32>PT);

/** All ones when 1 <= a < n. */
function scalarOkMask(c: usize, a: usize): u32 {
  const n = limbs(c);
  return ltMask(a, c + C_FN + MD_M, n) & ~isZeroMask(a, n);
}

function hashOk(alg: i32): bool {
  return alg == 256 || alg == 384 || alg == 512;
}

/** z = bits2int(H(msg)) mod n (FIPS 186-5: leftmost bits of the hash). */
function hashToScalar(c: usize, z: usize, alg: i32, msg: usize, len: i32): void {
  const n = limbs(c);
  const L = n << 2;
  const hl = alg >> 3;
  sha2Digest(alg, msg, len, HBUF);
  if (hl >= L) {
    fromBytes(z, HBUF, n);
  } else {
    memory.fill(ZB, 0, <usize>(L - hl));
    memory.copy(ZB + <usize>(L - hl), HBUF, <usize>hl);
    fromBytes(z, ZB, n);
  }
  condSubMod(z, z, c + C_FN);
}

/** Private key -> SEC1 uncompressed public key (1 + 2L bytes at out). */
export function ecPublicFromPrivate(curve: i32, priv: usize, out: usize): i32 {
  const c = curveCtx(curve);
  if (c == 0) return EC_BAD_ARG;
  const n = limbs(c);
  fromBytes(D, priv, n);
  if (!scalarOkMask(c, D)) return EC_BAD_PRIVATE;
  mulBaseCt(c, P1, D);
  encodeJacobian(c, out, P1);
  memory.fill(D, 0, FE);
  wipePoints();
  return EC_OK;
}

/** 0 when the SEC1 public key is valid, EC_BAD_PUBLIC otherwise. */
export function ecCheckPublic(curve: i32, pub: usize, len: i32): i32 {
  const c = curveCtx(curve);
  if (c == 0) return EC_BAD_ARG;
  return decodePoint(c, P1, pub, len) == 0 ? EC_OK : EC_BAD_PUBLIC;
}

/** ECDH: x-coordinate of priv * pub (L bytes at out). */
export function ecdhDerive(curve: i32, priv: usize, pub: usize, pubLen: i32, out: usize): i32 {
  const c = curveCtx(curve);
  if (c == 0) return EC_BAD_ARG;
  const n = limbs(c);
  fromBytes(D, priv, n);
  if (!scalarOkMask(c, D)) return EC_BAD_PRIVATE;
  if (decodePoint(c, P2, pub, pubLen) != 0) return EC_BAD_PUBLIC;
  mulVarJac(c, P1, P2, D);
  memory.fill(D, 0, FE);
  const inf = jToAffine(c, AX, AY, P1);
  if (inf) return EC_INFINITY; // unreachable for a valid key of prime order
  fromMont(AX, AX, c + C_FP);
  toBytes(out, AX, n);
  wipePoints();
  return EC_OK;
}

/** Clears the buffers that held secret-derived points (formula temporaries are overwritten by the next call). */
function wipePoints(): void {
  memory.fill(AX, 0, FE);
  memory.fill(AY, 0, FE);
  memory.fill(P1, 0, PT);
}

// HMAC-DRBG state of RFC 6979.
const DRBG_K = memory.data(64);
const DRBG_V = memory.data(64);
const DRBG_OUT = memory.data(64);
const DRBG_IN = memory.data(64 + 1 + 48 + 48 + 64);
const DRBG_T = memory.data(48 + 64);
const MAX_EXTRA: i32 = 64;

function drbgMac(alg: i32, hl: i32, data: usize, len: i32, out: usize): void {
  hmacDigest(alg, DRBG_K, hl, data, len, DRBG_OUT);
  memory.copy(out, DRBG_OUT, <usize>hl);
}

/** K = HMAC_K(V || sep || x || h1 || extra); V = HMAC_K(V). */
function drbgUpdate(alg: i32, hl: i32, sep: u8, seed: usize, seedLen: i32): void {
  memory.copy(DRBG_IN, DRBG_V, <usize>hl);
  store<u8>(DRBG_IN + <usize>hl, sep);
  memory.copy(DRBG_IN + <usize>hl + 1, seed, <usize>seedLen);
  drbgMac(alg, hl, DRBG_IN, hl + 1 + seedLen, DRBG_K);
  drbgMac(alg, hl, DRBG_V, hl, DRBG_V);
}

const SEED = memory.data(48 + 48 + 64);

/**
 * ECDSA signature of H(msg) as r || s (2L bytes at out). `extra` is fresh
 * randomness from the caller (0..64 bytes) mixed into the RFC 6979 seed.
 */
export function ecdsaSignDigest(
  curve: i32, alg: i32, priv: usize, msg: usize, msgLen: i32, extra: usize, extraLen: i32, out: usize,
): i32 {
  const c = curveCtx(curve);
  if (c == 0 || !hashOk(alg) || extraLen < 0 || extraLen > MAX_EXTRA || msgLen < 0) return EC_BAD_ARG;
  const n = limbs(c);
  const L = n << 2;
  const fn = c + C_FN;
  fromBytes(D, priv, n);
  if (!scalarOkMask(c, D)) return EC_BAD_PRIVATE;
  hashToScalar(c, Z, alg, msg, msgLen);

  // seed = int2octets(d) || bits2octets(h) || extra
  const hl = alg >> 3;
  toBytes(SEED, D, n);
  toBytes(SEED + <usize>L, Z, n);
  memory.copy(SEED + <usize>(2 * L), extra, <usize>extraLen);
  const seedLen = 2 * L + extraLen;
  memory.fill(DRBG_V, 1, <usize>hl);
  memory.fill(DRBG_K, 0, <usize>hl);
  drbgUpdate(alg, hl, 0, SEED, seedLen);
  drbgUpdate(alg, hl, 1, SEED, seedLen);

  for (;;) {
    for (let t = 0; t < L; t += hl) {
      drbgMac(alg, hl, DRBG_V, hl, DRBG_V);
      memory.copy(DRBG_T + <usize>t, DRBG_V, <usize>hl);
    }
    fromBytes(K, DRBG_T, n); // bits2int: qlen = 8L, leftmost L bytes
    if (scalarOkMask(c, K)) {
      mulBaseCt(c, P1, K);
      jToAffine(c, AX, AY, P1);
      fromMont(R, AX, c + C_FP);
      condSubMod(R, R, fn); // x < p < 2n
      if (!isZeroMask(R, n)) {
        // s = k^-1 (z + r d) mod n, in Montgomery form mod n
        toMont(W1, K, fn);
        minv(W1, W1, fn); // k^-1 R
        toMont(W2, D, fn); // d R
        mmul(W2, R, W2, fn); // r d
        madd(W2, W2, Z, fn); // z + r d
        mmul(S, W1, W2, fn); // k^-1 (z + r d)
        if (!isZeroMask(S, n)) break;
      }
    }
    drbgUpdate(alg, hl, 0, SEED, 0);
  }
  toBytes(out, R, n);
  toBytes(out + <usize>L, S, n);
  wipePoints();
  memory.fill(D, 0, FE);
  memory.fill(K, 0, FE);
  memory.fill(W1, 0, FE);
  memory.fill(W2, 0, FE);
  memory.fill(SEED, 0, 48 + 48 + 64);
  memory.fill(DRBG_K, 0, 64);
  memory.fill(DRBG_V, 0, 64);
  memory.fill(DRBG_T, 0, 48 + 64);
  memory.fill(DRBG_IN, 0, 64 + 1 + 48 + 48 + 64);
  memory.fill(DRBG_OUT, 0, 64);
  return EC_OK;
}

/** 1 when sig (r || s, 2L bytes) is a valid ECDSA signature of H(msg) under pub, else 0. */
export function ecdsaVerifyDigest(
  curve: i32, alg: i32, pub: usize, pubLen: i32, msg: usize, msgLen: i32, sig: usize,
): i32 {
  const c = curveCtx(curve);
  if (c == 0 || !hashOk(alg) || msgLen < 0) return 0;
  const n = limbs(c);
  const L = n << 2;
  const fn = c + C_FN;
  if (decodePoint(c, P2, pub, pubLen) != 0) return 0;
  fromBytes(R, sig, n);
  fromBytes(S, sig + <usize>L, n);
  if (!scalarOkMask(c, R) || !scalarOkMask(c, S)) return 0;
  hashToScalar(c, Z, alg, msg, msgLen);
  toMont(W1, S, fn);
  minv(W1, W1, fn); // s^-1 R
  mmul(W2, R, W1, fn); // u2 = r / s
  mmul(W1, Z, W1, fn); // u1 = z / s
  mulDoubleVar(c, P1, W1, P2, W2);
  return jCheckX(c, P1, R);
}
