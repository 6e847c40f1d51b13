// AES-GCM (NIST SP 800-38D) with a 128-bit tag, any IV length (12 bytes direct,
// others through GHASH), and AAD.
// Constant time: bitsliced AES and mask-based GHASH (see aes.ts, ghash.ts); the
// tag is compared by OR-ing XOR differences, and the only branch is on the
// final verdict. Decryption authenticates the whole ciphertext before it
// decrypts anything, so a forged message leaves `out` untouched.

import { aesSetKey, aesWipe, encryptBatch, aesSaveKey, aesLoadKey, BATCH, AES_SAVED } from "./aes";
import { ghashInit, ghashUpdate, ghashLengths, ghashOut, ghashWipe, ghashSave, ghashLoad, ghashReset, GHASH_SAVED } from "./ghash";

/** Status codes of aesGcmSeal / aesGcmOpen. */
export const GCM_BAD_KEY: i32 = 1;
export const GCM_AUTH_FAILED: i32 = 2;
export const GCM_BAD_IV: i32 = 3;
export const GCM_BAD_LENGTH: i32 = 4;

const BYTES: i32 = BATCH << 4; // bytes of one batch of counter blocks
const BLK: usize = memory.data(128, 16); // a batch of counter blocks
const KS: usize = memory.data(128, 16); // their keystream
const J0: usize = memory.data(16, 16);
const TAGMASK: usize = memory.data(16, 16); // E(K, J0)
const SUM: usize = memory.data(16, 16); // GHASH output

let nextCtr: u32 = 0; // next counter value (big-endian word 3 of the block)
let preOff: i32 = 0; // unused keystream left in KS from the setup batch
let preLen: i32 = 0;

// Counter block j of the batch: J0's first 12 bytes, then ctr + j big-endian.
// @ts-ignore: decorator
@inline function fillCounters(ctr: u32): void {
  const a = load<u64>(J0), b = load<u32>(J0, 8);
  for (let j: usize = 0; j < <usize>BATCH; j++) {
    store<u64>(BLK + (j << 4), a);
    store<u32>(BLK + (j << 4), b, 8);
    store<u32>(BLK + (j << 4), bswap<u32>(ctr + <u32>j), 12);
  }
}

// Keys AES, derives H and J0, and encrypts the first counters; leaves GHASH
// ready for the AAD.
function setup(key: usize, keyLen: i32, iv: usize, ivLen: i32): i32 {
  if (!aesSetKey(key, keyLen)) return GCM_BAD_KEY;
  start(iv, ivLen, false);
  return 0;
}

// The same with the schedule and H of a prepared key (see aesGcmPrepare).
function setupPrepared(ctx: usize, iv: usize, ivLen: i32): i32 {
  if (!aesLoadKey(ctx + GHASH_SAVED)) return GCM_BAD_KEY;
  ghashLoad(ctx);
  start(iv, ivLen, true);
  return 0;
}

// Derives J0 and encrypts the first counters with the current key; `haveH` (public) says
// whether GHASH already holds H, else H = E(0) is taken from the first batch.
function start(iv: usize, ivLen: i32, haveH: bool): void {
  if (ivLen == 12) {
    // One batch gives H = E(0), E(J0), and keystream for counters 2 .. BATCH - 1.
    memory.copy(J0, iv, 12);
    store<u32>(J0, bswap<u32>(1), 12);
    fillCounters(0);
    memory.fill(BLK, 0, 16);
    encryptBatch(BLK, KS);
    if (!haveH) ghashInit(KS);
    memory.copy(TAGMASK, KS + 16, 16);
    preOff = 32;
    preLen = BYTES - 32;
    nextCtr = BATCH;
  } else {
    if (!haveH) {
      memory.fill(BLK, 0, <usize>BYTES);
      encryptBatch(BLK, KS);
      ghashInit(KS);
    }
    ghashUpdate(iv, ivLen);
    ghashLengths(0, ivLen);
    ghashOut(J0);
    ghashReset();
    const c = bswap<u32>(load<u32>(J0, 12));
    fillCounters(c);
    encryptBatch(BLK, KS);
    memory.copy(TAGMASK, KS, 16);
    preOff = 16;
    preLen = BYTES - 16;
    nextCtr = c + <u32>BATCH;
  }
}

// dst = src ^ ks over `len` bytes, eight at a time where possible.
// @ts-ignore: decorator
@inline function xorInto(dst: usize, src: usize, ks: usize, len: i32): void {
  let i = 0;
  for (; i + 8 <= len; i += 8) {
    store<u64>(dst + <usize>i, load<u64>(src + <usize>i) ^ load<u64>(ks + <usize>i));
  }
  for (; i < len; i++) store<u8>(dst + <usize>i, load<u8>(src + <usize>i) ^ load<u8>(ks + <usize>i));
}

// XORs the CTR keystream (continuing from setup) over `len` bytes.
function ctrXor(src: usize, dst: usize, len: i32): void {
  let n = len;
  const first = min(n, preLen);
  xorInto(dst, src, KS + <usize>preOff, first);
  src += <usize>first; dst += <usize>first; n -= first;
  while (n >= BYTES) {
    fillCounters(nextCtr);
    nextCtr += <u32>BATCH;
    encryptBatch(BLK, KS);
    for (let i: usize = 0; i < <usize>BYTES; i += 8) store<u64>(dst + i, load<u64>(src + i) ^ load<u64>(KS + i));
    src += <usize>BYTES; dst += <usize>BYTES; n -= BYTES;
  }
  if (n > 0) {
    fillCounters(nextCtr);
    nextCtr += <u32>BATCH;
    encryptBatch(BLK, KS);
    xorInto(dst, src, KS, n);
  }
}

function wipe(): void {
  aesWipe();
  ghashWipe();
  memory.fill(KS, 0, 128);
  memory.fill(TAGMASK, 0, 16);
  memory.fill(SUM, 0, 16);
}

/** Bytes of a prepared key (aesGcmPrepare): GHASH's H and powers, then the AES schedule. */
export function aesGcmContextSize(): i32 {
  return <i32>(GHASH_SAVED + AES_SAVED);
}

/**
 * Prepares a key once for many messages: writes its AES schedule and GHASH's H and powers
 * to `ctx` (aesGcmContextSize() bytes), which the caller keeps secret and erases when done.
 * Returns 0 or GCM_BAD_KEY.
 */
export function aesGcmPrepare(key: usize, keyLen: i32, ctx: usize): i32 {
  if (!aesSetKey(key, keyLen)) return GCM_BAD_KEY;
  memory.fill(BLK, 0, 16);
  encryptBatch(BLK, KS);
  ghashInit(KS);
  ghashSave(ctx);
  aesSaveKey(ctx + GHASH_SAVED);
  wipe();
  return 0;
}

// Seals after setup: AAD, CTR, GHASH over the ciphertext, tag.
function sealBody(aad: usize, aadLen: i32, data: usize, len: i32, out: usize): void {
  ghashUpdate(aad, aadLen);
  ctrXor(data, out, len);
  ghashUpdate(out, len);
  ghashLengths(aadLen, len);
  ghashOut(SUM);
  const t = out + <usize>len;
  store<u64>(t, load<u64>(SUM) ^ load<u64>(TAGMASK));
  store<u64>(t, load<u64>(SUM, 8) ^ load<u64>(TAGMASK, 8), 8);
  wipe();
}

// Opens after setup: authenticates everything first, decrypts only then.
function openBody(aad: usize, aadLen: i32, data: usize, len: i32, tag: usize, out: usize): i32 {
  ghashUpdate(aad, aadLen);
  ghashUpdate(data, len);
  ghashLengths(aadLen, len);
  ghashOut(SUM);
  const d = (load<u64>(SUM) ^ load<u64>(TAGMASK) ^ load<u64>(tag))
    | (load<u64>(SUM, 8) ^ load<u64>(TAGMASK, 8) ^ load<u64>(tag, 8));
  // All-ones mask when d == 0, without a data-dependent branch.
  const ok = <u64>(((d | (0 - d)) >> 63) ^ 1);
  if (ok == 0) {
    wipe();
    return GCM_AUTH_FAILED;
  }
  ctrXor(data, out, len);
  wipe();
  return 0;
}

/**
 * Encrypts `len` bytes at `data` into `out` and appends the 16-byte tag.
 * Returns 0, GCM_BAD_KEY, GCM_BAD_IV or GCM_BAD_LENGTH.
 */
export function aesGcmSeal(
  key: usize, keyLen: i32, iv: usize, ivLen: i32, aad: usize, aadLen: i32,
  data: usize, len: i32, out: usize,
): i32 {
  if (ivLen <= 0) return GCM_BAD_IV;
  if (aadLen < 0 || len < 0) return GCM_BAD_LENGTH;
  const s = setup(key, keyLen, iv, ivLen);
  if (s != 0) return s;
  sealBody(aad, aadLen, data, len, out);
  return 0;
}

/** aesGcmSeal with a prepared key at `ctx` (see aesGcmPrepare). */
export function aesGcmSealPrepared(
  ctx: usize, iv: usize, ivLen: i32, aad: usize, aadLen: i32, data: usize, len: i32, out: usize,
): i32 {
  if (ivLen <= 0) return GCM_BAD_IV;
  if (aadLen < 0 || len < 0) return GCM_BAD_LENGTH;
  const s = setupPrepared(ctx, iv, ivLen);
  if (s != 0) return s;
  sealBody(aad, aadLen, data, len, out);
  return 0;
}

/**
 * Verifies the 16-byte tag at `tag` over AAD and the `len` ciphertext bytes at
 * `data`, then decrypts into `out`. Returns 0, GCM_AUTH_FAILED (nothing written),
 * GCM_BAD_KEY, GCM_BAD_IV or GCM_BAD_LENGTH.
 */
export function aesGcmOpen(
  key: usize, keyLen: i32, iv: usize, ivLen: i32, aad: usize, aadLen: i32,
  data: usize, len: i32, tag: usize, out: usize,
): i32 {
  if (ivLen <= 0) return GCM_BAD_IV;
  if (aadLen < 0 || len < 0) return GCM_BAD_LENGTH;
  const s = setup(key, keyLen, iv, ivLen);
  if (s != 0) return s;
  return openBody(aad, aadLen, data, len, tag, out);
}

/** aesGcmOpen with a prepared key at `ctx` (see aesGcmPrepare). */
export function aesGcmOpenPrepared(
  ctx: usize, iv: usize, ivLen: i32, aad: usize, aadLen: i32, data: usize, len: i32, tag: usize, out: usize,
): i32 {
  if (ivLen <= 0) return GCM_BAD_IV;
  if (aadLen < 0 || len < 0) return GCM_BAD_LENGTH;
  const s = setupPrepared(ctx, iv, ivLen);
  if (s != 0) return s;
  return openBody(aad, aadLen, data, len, tag, out);
}
