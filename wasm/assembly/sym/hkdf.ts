// HKDF (RFC 5869) over HMAC-SHA-256/384/512.
// Constant time with respect to ikm, salt and info; lengths are public.

import { sha2Update, sha2Size } from "./sha2";
import { hmacSetKey, hmacBegin, hmacEnd } from "./hmac";

const KEYED: usize = memory.data(512, 16);
const WORK: usize = memory.data(256, 16);
const PRK: usize = memory.data(64, 16);
const T: usize = memory.data(64, 16);
const CTR: usize = memory.data(16, 16);

/** Status codes of hkdfDerive. */
export const HKDF_BAD_ALG: i32 = 1;
export const HKDF_BAD_LENGTH: i32 = 2;

/**
 * Extract-then-expand: writes `outLen` bytes to `out`. An empty salt means
 * HashLen zero bytes (the same HMAC key once padded). Returns 0, or a status.
 */
export function hkdfDerive(
  alg: i32, ikm: usize, ikmLen: i32, salt: usize, saltLen: i32,
  info: usize, infoLen: i32, out: usize, outLen: i32,
): i32 {
  const size = sha2Size(alg);
  if (size == 0) return HKDF_BAD_ALG;
  if (outLen < 0 || outLen > 255 * size || ikmLen < 0 || saltLen < 0 || infoLen < 0) return HKDF_BAD_LENGTH;
  // Extract: PRK = HMAC(salt, ikm).
  hmacSetKey(KEYED, alg, salt, saltLen);
  hmacBegin(KEYED, WORK);
  sha2Update(WORK, ikm, ikmLen);
  hmacEnd(KEYED, WORK, PRK);
  // Expand: T(i) = HMAC(PRK, T(i-1) | info | i).
  hmacSetKey(KEYED, alg, PRK, size);
  let done = 0;
  for (let i = 1; done < outLen; i++) {
    hmacBegin(KEYED, WORK);
    if (i > 1) sha2Update(WORK, T, size);
    sha2Update(WORK, info, infoLen);
    store<u8>(CTR, <u8>i);
    sha2Update(WORK, CTR, 1);
    hmacEnd(KEYED, WORK, T);
    const take = min(size, outLen - done);
    memory.copy(out + <usize>done, T, <usize>take);
    done += take;
  }
  memory.fill(PRK, 0, 64);
  memory.fill(T, 0, 64);
  memory.fill(KEYED, 0, 512);
  memory.fill(WORK, 0, 256);
  return 0;
}
