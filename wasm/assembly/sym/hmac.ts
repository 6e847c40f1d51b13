// HMAC over SHA-256/384/512 (RFC 2104, FIPS 198-1).
// Constant time with respect to key and data; only lengths drive control flow.
// A keyed HMAC state is two hash contexts (inner after ipad, outer after opad),
// so HKDF can reuse one key for many blocks.

import { CTX_SIZE, sha2Init, sha2Update, sha2Final, sha2Digest, sha2Size, sha2Block } from "./sha2";

/** Bytes of a keyed HMAC state: inner context, then outer context. */
export const HMAC_KEYED_SIZE: i32 = 512;

const PAD: usize = memory.data(128, 16);
const INNER: usize = memory.data(64, 16); // inner digest
const KEYED: usize = memory.data(512, 16);
const WORK: usize = memory.data(256, 16);

/** Prepares the keyed state `h` (HMAC_KEYED_SIZE bytes) for `key`. */
export function hmacSetKey(h: usize, alg: i32, key: usize, keyLen: i32): void {
  const bs = sha2Block(alg);
  memory.fill(PAD, 0, 128);
  if (keyLen > bs) sha2Digest(alg, key, keyLen, PAD);
  else memory.copy(PAD, key, <usize>keyLen);
  for (let i: usize = 0; i < 128; i += 8) store<u64>(PAD + i, load<u64>(PAD + i) ^ 0x3636363636363636);
  sha2Init(h, alg);
  sha2Update(h, PAD, bs);
  for (let i: usize = 0; i < 128; i += 8) store<u64>(PAD + i, load<u64>(PAD + i) ^ (0x3636363636363636 ^ 0x5c5c5c5c5c5c5c5c));
  sha2Init(h + 256, alg);
  sha2Update(h + 256, PAD, bs);
  memory.fill(PAD, 0, 128);
}

/** Starts a MAC in `w` (a hash context) from the keyed state `h`. */
// @ts-ignore: decorator
@inline export function hmacBegin(h: usize, w: usize): void {
  memory.copy(w, h, <usize>CTX_SIZE);
}

/** Finishes the MAC in `w` and writes the tag to `out`. */
export function hmacEnd(h: usize, w: usize, out: usize): void {
  const alg = load<i32>(h + 196); // the ALG field of the inner context
  const size = sha2Size(alg);
  sha2Final(w, INNER);
  memory.copy(w, h + 256, <usize>CTX_SIZE);
  sha2Update(w, INNER, size);
  sha2Final(w, out);
}

/** One-shot HMAC: writes 32/48/64 bytes to `out`. */
export function hmacDigest(alg: i32, key: usize, keyLen: i32, data: usize, len: i32, out: usize): void {
  hmacSetKey(KEYED, alg, key, keyLen);
  hmacBegin(KEYED, WORK);
  sha2Update(WORK, data, len);
  hmacEnd(KEYED, WORK, out);
}
