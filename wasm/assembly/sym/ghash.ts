// GHASH (NIST SP 800-38D) by constant-time carry-less multiplication.
// 64x64-bit carry-less products use integer multiplies on operands masked to
// every fourth bit ("holes"), so carries never reach a bit that is kept; there
// are no tables and no branches on H or the data (only on public lengths).
//
// Blocks are read as big-endian 128-bit integers: the bit-reflected form of the
// GCM polynomial, where multiplying by x is a right shift. Four blocks at a time
// are multiplied by H^4..H^1 and summed before one reduction. The H side of
// every product is split into bit classes once per key (setPower), and the
// multiplies run in small non-inlined functions so their values stay in
// registers (the engine spilled the fully inlined loop heavily).

// Powers H^1..H^4: per power h1, h0, then the six multiplier operands h1, h0,
// h1 ^ h0, rev(h1), rev(h0), rev(h1 ^ h0), each already split into its four
// bit classes (the masks of bmul64), so only the data side is masked per block.
const PW: i32 = 16 + 6 * 32;
const HP: usize = memory.data(4 * PW, 16);
let powers: i32 = 0; // how many powers are ready (1 or 4)
let x1: u64 = 0, x0: u64 = 0; // accumulator X
// Unreduced sums of the Karatsuba parts: low halves, and reversed high halves.
let la: u64 = 0, lb: u64 = 0, lc: u64 = 0, ra: u64 = 0, rb: u64 = 0, rc: u64 = 0;

const LAST: usize = memory.data(16, 16);

// @ts-ignore: decorator
@inline function rev64(x: u64): u64 {
  x = ((x >> 1) & 0x5555555555555555) | ((x & 0x5555555555555555) << 1);
  x = ((x >> 2) & 0x3333333333333333) | ((x & 0x3333333333333333) << 2);
  x = ((x >> 4) & 0x0F0F0F0F0F0F0F0F) | ((x & 0x0F0F0F0F0F0F0F0F) << 4);
  return bswap<u64>(x);
}

// Low 64 bits of the carry-less product of x and the operand whose bit classes
// are at `h`. Integer products of operands holding every fourth bit keep each
// kept bit exact: fewer than 16 terms meet at a position below 60, so carries
// stay in the three hole bits above it; 16 only from 60 up, whose carry leaves
// the word.
// @ts-ignore: decorator
@inline function bmul64(x: u64, h: usize): u64 {
  const m0: u64 = 0x1111111111111111, m1: u64 = 0x2222222222222222;
  const m2: u64 = 0x4444444444444444, m3: u64 = 0x8888888888888888;
  const a0 = x & m0, a1 = x & m1, a2 = x & m2, a3 = x & m3;
  const b0 = load<u64>(h), b1 = load<u64>(h, 8), b2 = load<u64>(h, 16), b3 = load<u64>(h, 24);
  const z0 = (a0 * b0) ^ (a1 * b3) ^ (a2 * b2) ^ (a3 * b1);
  const z1 = (a0 * b1) ^ (a1 * b0) ^ (a2 * b3) ^ (a3 * b2);
  const z2 = (a0 * b2) ^ (a1 * b1) ^ (a2 * b0) ^ (a3 * b3);
  const z3 = (a0 * b3) ^ (a1 * b2) ^ (a2 * b1) ^ (a3 * b0);
  return (z0 & m0) | (z1 & m1) | (z2 & m2) | (z3 & m3);
}

// The three Karatsuba parts of V * H^k (high halves, low halves, their sums):
// low halves of the products with the operands at hp + 16, + 48, + 80, and of
// the reversed products (reversed operands 96 bytes further). Calls, not
// inlined (each is above the engine's inlining size): their few live values
// fit in registers, where a fully inlined four-block loop spills heavily.
function mulLowHalves(v1: u64, v0: u64, hp: usize): void {
  la ^= bmul64(v1, hp + 16);
  lb ^= bmul64(v0, hp + 48);
  lc ^= bmul64(v1 ^ v0, hp + 80);
}
function mulReversed(vr1: u64, vr0: u64, hp: usize): void {
  ra ^= bmul64(vr1, hp + 112);
  rb ^= bmul64(vr0, hp + 144);
  rc ^= bmul64(vr1 ^ vr0, hp + 176);
}

// Adds V * H^k (k-th entry of HP at `hp`) to the unreduced sums. The high half
// of a 64x64 product is the reversed low half of the reversed operands (shifted
// by one), so only low halves are computed and reversal waits until finish().
// @ts-ignore: decorator
@inline function accumulate(v1: u64, v0: u64, hp: usize): void {
  mulLowHalves(v1, v0, hp);
  mulReversed(rev64(v1), rev64(v0), hp);
}

// Reduces the sums into X and clears them.
// @ts-ignore: decorator
@inline function finish(): void {
  const a1 = rev64(ra) >> 1, a0 = la;
  const b1 = rev64(rb) >> 1, b0 = lb;
  const c1 = (rev64(rc) >> 1) ^ a1 ^ b1, c0 = lc ^ a0 ^ b0;
  // 256-bit product p3:p2:p1:p0, then one left shift for the reflected form.
  const p3 = a1, p2 = a0 ^ c1, p1 = b1 ^ c0, p0 = b0;
  const r3 = (p3 << 1) | (p2 >> 63), r2 = (p2 << 1) | (p1 >> 63);
  const r1 = (p1 << 1) | (p0 >> 63), r0 = p0 << 1;
  // Fold the low half (degrees 128..255) back with x^128 = x^7 + x^2 + x + 1.
  const d1 = r1 ^ (r0 << 63) ^ (r0 << 62) ^ (r0 << 57);
  const d0 = r0;
  x1 = r3 ^ d1 ^ (d1 >> 1) ^ (d1 >> 2) ^ (d1 >> 7);
  x0 = r2 ^ d0 ^ (d0 >> 1) ^ (d0 >> 2) ^ (d0 >> 7) ^ (d1 << 63) ^ (d1 << 62) ^ (d1 << 57);
  la = 0; lb = 0; lc = 0; ra = 0; rb = 0; rc = 0;
}

// Stores the four bit classes of `v` at `p`.
// @ts-ignore: decorator
@inline function storeClasses(p: usize, v: u64): void {
  store<u64>(p, v & 0x1111111111111111);
  store<u64>(p, v & 0x2222222222222222, 8);
  store<u64>(p, v & 0x4444444444444444, 16);
  store<u64>(p, v & 0x8888888888888888, 24);
}

function setPower(k: usize, h1: u64, h0: u64): void {
  const hp = HP + k * <usize>PW;
  store<u64>(hp, h1);
  store<u64>(hp, h0, 8);
  storeClasses(hp + 16, h1);
  storeClasses(hp + 48, h0);
  storeClasses(hp + 80, h1 ^ h0);
  storeClasses(hp + 112, rev64(h1));
  storeClasses(hp + 144, rev64(h0));
  storeClasses(hp + 176, rev64(h1 ^ h0));
}

// H^2..H^4 for the four-block path, computed on first use.
function preparePowers(): void {
  const s1 = x1, s0 = x0;
  x1 = load<u64>(HP); x0 = load<u64>(HP, 8);
  for (let k: usize = 1; k < 4; k++) {
    accumulate(x1, x0, HP);
    finish();
    setPower(k, x1, x0);
  }
  x1 = s1; x0 = s0;
  powers = 4;
}

/** Sets H (16 bytes at `h`, as produced by AES) and clears the accumulator. */
export function ghashInit(h: usize): void {
  setPower(0, bswap<u64>(load<u64>(h)), bswap<u64>(load<u64>(h, 8)));
  powers = 1;
  x1 = 0;
  x0 = 0;
}

// X = (X ^ V) * H.
// @ts-ignore: decorator
@inline function mulBlock(v1: u64, v0: u64): void {
  accumulate(x1 ^ v1, x0 ^ v0, HP);
  finish();
}

/** Absorbs `len` bytes, zero-padding a final partial block. */
export function ghashUpdate(p: usize, len: i32): void {
  let n = len;
  // Computing H^2..H^4 costs three products: worth it from a few batches on.
  if (n >= 256 && powers < 4) preparePowers();
  while (n >= 64 && powers == 4) {
    // X' = (X ^ B0) H^4 ^ B1 H^3 ^ B2 H^2 ^ B3 H.
    accumulate(x1 ^ bswap<u64>(load<u64>(p)), x0 ^ bswap<u64>(load<u64>(p, 8)), HP + <usize>(3 * PW));
    accumulate(bswap<u64>(load<u64>(p, 16)), bswap<u64>(load<u64>(p, 24)), HP + <usize>(2 * PW));
    accumulate(bswap<u64>(load<u64>(p, 32)), bswap<u64>(load<u64>(p, 40)), HP + <usize>PW);
    accumulate(bswap<u64>(load<u64>(p, 48)), bswap<u64>(load<u64>(p, 56)), HP);
    finish();
    p += 64;
    n -= 64;
  }
  while (n >= 16) {
    mulBlock(bswap<u64>(load<u64>(p)), bswap<u64>(load<u64>(p, 8)));
    p += 16;
    n -= 16;
  }
  if (n > 0) {
    memory.fill(LAST, 0, 16);
    memory.copy(LAST, p, <usize>n);
    mulBlock(bswap<u64>(load<u64>(LAST)), bswap<u64>(load<u64>(LAST, 8)));
    memory.fill(LAST, 0, 16);
  }
}

/** Absorbs the length block (bit lengths of AAD and ciphertext). */
export function ghashLengths(aadLen: i32, dataLen: i32): void {
  mulBlock(<u64>aadLen << 3, <u64>dataLen << 3);
}

/** Writes the accumulator, big-endian, to `out` (16 bytes). */
export function ghashOut(out: usize): void {
  store<u64>(out, bswap<u64>(x1));
  store<u64>(out, bswap<u64>(x0), 8);
}

/** Bytes of saved GHASH key state: H^1..H^4 in their split forms. */
export const GHASH_SAVED: usize = <usize>(4 * PW);

/** Copies H and its powers (computed now if needed) to `dst` (GHASH_SAVED bytes). */
export function ghashSave(dst: usize): void {
  if (powers < 4) preparePowers();
  memory.copy(dst, HP, GHASH_SAVED);
}

/** Makes the saved H and powers at `src` current and clears the accumulator. */
export function ghashLoad(src: usize): void {
  memory.copy(HP, src, GHASH_SAVED);
  powers = 4;
  ghashReset();
}

/** Clears the accumulator, keeping H. */
export function ghashReset(): void {
  x1 = 0; x0 = 0; la = 0; lb = 0; lc = 0; ra = 0; rb = 0; rc = 0;
}

/** Erases H, its powers and the accumulator. */
export function ghashWipe(): void {
  memory.fill(HP, 0, <usize>(4 * PW));
  powers = 0;
  x1 = 0; x0 = 0; la = 0; lb = 0; lc = 0; ra = 0; rb = 0; rc = 0;
}
