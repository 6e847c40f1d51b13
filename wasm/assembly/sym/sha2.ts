// SHA-256, SHA-384 and SHA-512 (FIPS 180-4).
// Constant time with respect to the data: no data-dependent branches or table
// indexes; only the lengths (public) drive control flow.
// Contexts live in caller-provided memory (CTX_SIZE bytes); nothing allocates.

import { IV256, IV384, IV512 } from "./sha2-constants";
import { compress256, compress512 } from "./sha2-rounds";

// Context layout.
const ST: usize = 0; // 8 state words (u32 for SHA-256, u64 otherwise)
const BUF: usize = 64; // partial block, up to 128 bytes
const BUFLEN: usize = 192; // i32
const ALG: usize = 196; // i32
const TOTAL: usize = 200; // u64 byte count
export const CTX_SIZE: i32 = 208;

const DIGEST_CTX: usize = memory.data(256, 16);

/** Digest length in bytes for alg 256 | 384 | 512 (0 for anything else). */
// @ts-ignore: decorator
@inline export function sha2Size(alg: i32): i32 {
  return alg == 256 ? 32 : alg == 384 ? 48 : alg == 512 ? 64 : 0;
}

/** Block length in bytes. */
// @ts-ignore: decorator
@inline export function sha2Block(alg: i32): i32 {
  return alg == 256 ? 64 : 128;
}

// @ts-ignore: decorator
@inline function compress(ctx: usize, p: usize, blocks: i32): void {
  if (load<i32>(ctx + ALG) == 256) compress256(ctx + ST, p, blocks);
  else compress512(ctx + ST, p, blocks);
}

/** Starts a hash in `ctx` (alg 256 | 384 | 512). */
export function sha2Init(ctx: usize, alg: i32): void {
  const iv = alg == 256 ? IV256 : alg == 384 ? IV384 : IV512;
  memory.copy(ctx + ST, iv, alg == 256 ? 32 : 64);
  store<i32>(ctx + BUFLEN, 0);
  store<i32>(ctx + ALG, alg);
  store<u64>(ctx + TOTAL, 0);
}

/** Absorbs `len` bytes at `data`. */
export function sha2Update(ctx: usize, data: usize, len: i32): void {
  if (len <= 0) return;
  const bs = sha2Block(load<i32>(ctx + ALG));
  store<u64>(ctx + TOTAL, load<u64>(ctx + TOTAL) + <u64>len);
  let fill = load<i32>(ctx + BUFLEN);
  if (fill > 0) {
    const take = min(bs - fill, len);
    memory.copy(ctx + BUF + <usize>fill, data, <usize>take);
    fill += take; data += <usize>take; len -= take;
    if (fill < bs) { store<i32>(ctx + BUFLEN, fill); return; }
    compress(ctx, ctx + BUF, 1);
    fill = 0;
  }
  const blocks = len / bs;
  if (blocks > 0) {
    compress(ctx, data, blocks);
    data += <usize>(blocks * bs); len -= blocks * bs;
  }
  if (len > 0) memory.copy(ctx + BUF, data, <usize>len);
  store<i32>(ctx + BUFLEN, len);
}

/** Pads, writes the digest to `out` (32/48/64 bytes). The context is spent. */
export function sha2Final(ctx: usize, out: usize): void {
  const alg = load<i32>(ctx + ALG);
  const bs = sha2Block(alg);
  const lenField = alg == 256 ? 8 : 16;
  let fill = load<i32>(ctx + BUFLEN);
  const bits = load<u64>(ctx + TOTAL) << 3;
  store<u8>(ctx + BUF + <usize>fill, 0x80);
  fill++;
  if (fill > bs - lenField) {
    memory.fill(ctx + BUF + <usize>fill, 0, <usize>(bs - fill));
    compress(ctx, ctx + BUF, 1);
    fill = 0;
  }
  memory.fill(ctx + BUF + <usize>fill, 0, <usize>(bs - 8 - fill));
  store<u64>(ctx + BUF + <usize>(bs - 8), bswap<u64>(bits));
  compress(ctx, ctx + BUF, 1);
  const size = sha2Size(alg);
  if (alg == 256) {
    for (let i = 0; i < 8; i++) {
      store<u32>(out + (<usize>i << 2), bswap<u32>(load<u32>(ctx + ST + (<usize>i << 2))));
    }
  } else {
    for (let i = 0; i < (size >> 3); i++) {
      store<u64>(out + (<usize>i << 3), bswap<u64>(load<u64>(ctx + ST + (<usize>i << 3))));
    }
  }
}

/** One-shot digest: alg 256 | 384 | 512; writes 32/48/64 bytes to `out`. */
export function sha2Digest(alg: i32, data: usize, len: i32, out: usize): void {
  sha2Init(DIGEST_CTX, alg);
  sha2Update(DIGEST_CTX, data, len);
  sha2Final(DIGEST_CTX, out);
}
