// Bitsliced AES-128/192/256 encryption (FIPS 197): four blocks at a time in
// the scalar build, eight in the SIMD build.
// Constant time by construction: the S-box is a Boolean circuit (Boyar–Peralta,
// 113 gates) evaluated on bit planes, and every other step is shifts, rotations,
// constant byte shuffles and XORs; there are no table lookups and no branches
// on keys or data (the key schedule's SubWord uses the same circuit).
//
// Scalar layout: four 16-byte blocks are held as 8 u64 bit planes; plane b holds bit b
// of all 64 bytes, the byte of block k at row r, column c sitting at bit
// 16*r + 4*c + k. Rows are 16-bit groups (MixColumns rotates whole words) and
// columns are nibbles inside a row (ShiftRows rotates inside each group).

/** Bitsliced round keys: up to 15 rounds of 8 planes. */
export const RK: usize = memory.data(15 * 64, 16);
/** Working state: 8 planes. */
export const Q: usize = memory.data(64, 16);
// SIMD build: round keys and state as 8 v128 planes of eight blocks.
const RKV: usize = ASC_FEATURE_SIMD ? memory.data(15 * 128, 16) : 0;
const QV: usize = ASC_FEATURE_SIMD ? memory.data(128, 16) : 0;
const WORDS: usize = memory.data(240, 16); // expanded key, byte form
const TMP: usize = memory.data(64, 16);

let rounds: i32 = 0;

// @ts-ignore: decorator
@inline function spread(x: u32): u64 {
  let v = <u64>x;
  v = (v | (v << 16)) & 0x0000FFFF0000FFFF;
  v = (v | (v << 8)) & 0x00FF00FF00FF00FF;
  return v;
}

// @ts-ignore: decorator
@inline function unspread(v: u64): u32 {
  v &= 0x00FF00FF00FF00FF;
  v = (v | (v >> 8)) & 0x0000FFFF0000FFFF;
  v = (v | (v >> 16)) & 0x00000000FFFFFFFF;
  return <u32>v;
}

// Transposes the 8x8 bit matrices formed by byte m of words w0..w7 (word i at
// p + i * stride), in place (an involution: the same call converts back).
// @ts-ignore: decorator
@inline function transpose(p: usize, stride: usize): void {
  let w0 = load<u64>(p), w1 = load<u64>(p + stride), w2 = load<u64>(p + 2 * stride), w3 = load<u64>(p + 3 * stride);
  let w4 = load<u64>(p + 4 * stride), w5 = load<u64>(p + 5 * stride);
  let w6 = load<u64>(p + 6 * stride), w7 = load<u64>(p + 7 * stride);
  let t: u64;
  const m1: u64 = 0x5555555555555555, m2: u64 = 0x3333333333333333, m4: u64 = 0x0F0F0F0F0F0F0F0F;
  t = ((w0 >> 1) ^ w1) & m1; w1 ^= t; w0 ^= t << 1;
  t = ((w2 >> 1) ^ w3) & m1; w3 ^= t; w2 ^= t << 1;
  t = ((w4 >> 1) ^ w5) & m1; w5 ^= t; w4 ^= t << 1;
  t = ((w6 >> 1) ^ w7) & m1; w7 ^= t; w6 ^= t << 1;
  t = ((w0 >> 2) ^ w2) & m2; w2 ^= t; w0 ^= t << 2;
  t = ((w1 >> 2) ^ w3) & m2; w3 ^= t; w1 ^= t << 2;
  t = ((w4 >> 2) ^ w6) & m2; w6 ^= t; w4 ^= t << 2;
  t = ((w5 >> 2) ^ w7) & m2; w7 ^= t; w5 ^= t << 2;
  t = ((w0 >> 4) ^ w4) & m4; w4 ^= t; w0 ^= t << 4;
  t = ((w1 >> 4) ^ w5) & m4; w5 ^= t; w1 ^= t << 4;
  t = ((w2 >> 4) ^ w6) & m4; w6 ^= t; w2 ^= t << 4;
  t = ((w3 >> 4) ^ w7) & m4; w7 ^= t; w3 ^= t << 4;
  store<u64>(p, w0); store<u64>(p + stride, w1); store<u64>(p + 2 * stride, w2); store<u64>(p + 3 * stride, w3);
  store<u64>(p + 4 * stride, w4); store<u64>(p + 5 * stride, w5);
  store<u64>(p + 6 * stride, w6); store<u64>(p + 7 * stride, w7);
}

// Loads four consecutive blocks at `src` into 8 planes at q + i * stride.
// Word i gathers block k = i & 3, columns c = i >> 2 and c + 2, interleaved
// bytewise so that the bit transpose lands each byte at 16*r + 4*c + k.
// @ts-ignore: decorator
@inline function bitsliceTo(src: usize, q: usize, stride: usize): void {
  for (let i: usize = 0; i < 8; i++) {
    const blk = src + ((i & 3) << 4) + ((i >> 2) << 2);
    store<u64>(q + i * stride, spread(load<u32>(blk)) | (spread(load<u32>(blk, 8)) << 8));
  }
  transpose(q, stride);
}

// Writes 8 planes at q + i * stride (clobbered) back as four blocks at `dst`.
// @ts-ignore: decorator
@inline function unbitsliceFrom(q: usize, dst: usize, stride: usize): void {
  transpose(q, stride);
  for (let i: usize = 0; i < 8; i++) {
    const w = load<u64>(q + i * stride);
    const blk = dst + ((i & 3) << 4) + ((i >> 2) << 2);
    store<u32>(blk, unspread(w));
    store<u32>(blk, unspread(w >> 8), 8);
  }
}

/** Loads four consecutive blocks at `src` into bit planes at `q`. */
export function bitslice(src: usize, q: usize): void {
  bitsliceTo(src, q, 8);
}

/** Writes the bit planes at `q` (clobbered) back as four blocks at `dst`. */
export function unbitslice(q: usize, dst: usize): void {
  unbitsliceFrom(q, dst, 8);
}

// Bitwise operations over a plane type T: u64 (four blocks) or v128 (eight
// blocks, two 64-bit lanes). Only the branch for T is compiled.
// @ts-ignore: decorator
@inline function X<T>(a: T, b: T): T {
  if (isVector<T>()) return v128.xor(a, b);
  // @ts-ignore: T is u64 here
  else return a ^ b;
}
// @ts-ignore: decorator
@inline function A<T>(a: T, b: T): T {
  if (isVector<T>()) return v128.and(a, b);
  // @ts-ignore: T is u64 here
  else return a & b;
}
// @ts-ignore: decorator
@inline function N<T>(a: T): T {
  if (isVector<T>()) return v128.not(a);
  // @ts-ignore: T is u64 here
  else return ~a;
}
// Row r rotates its four column nibbles right by r places.
// @ts-ignore: decorator
@inline function shiftRow(x: u64): u64 {
  return (x & 0x000000000000FFFF)
    | ((x >> 4) & 0x000000000FFF0000) | ((x << 12) & 0x00000000F0000000)
    | ((x >> 8) & 0x000000FF00000000) | ((x << 8) & 0x0000FF0000000000)
    | ((x >> 12) & 0x000F000000000000) | ((x << 4) & 0xFFF0000000000000);
}

// ShiftRows: byte (r, c) takes byte (r, c + r).
// @ts-ignore: decorator
@inline function srV(x: v128): v128 {
  return v128.shuffle<u8>(x, x, 0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12, 1, 6, 11);
}
/** The AES S-box on all bytes of the planes at `q` (Boyar–Peralta circuit). */
// @ts-ignore: decorator
@inline function subBytes<T>(q: usize): void {
  const S = sizeof<T>();
  const x0 = load<T>(q + 7 * S), x1 = load<T>(q + 6 * S), x2 = load<T>(q + 5 * S), x3 = load<T>(q + 4 * S);
  const x4 = load<T>(q + 3 * S), x5 = load<T>(q + 2 * S), x6 = load<T>(q + S), x7 = load<T>(q);

  // Top linear layer.
  const y14 = X<T>(x3, x5), y13 = X<T>(x0, x6), y9 = X<T>(x0, x3), y8 = X<T>(x0, x5);
  const t0 = X<T>(x1, x2);
  const y1 = X<T>(t0, x7), y4 = X<T>(y1, x3), y12 = X<T>(y13, y14), y2 = X<T>(y1, x0);
  const y5 = X<T>(y1, x6), y3 = X<T>(y5, y8);
  const t1 = X<T>(x4, y12);
  const y15 = X<T>(t1, x5), y20 = X<T>(t1, x1), y6 = X<T>(y15, x7), y10 = X<T>(y15, t0);
  const y11 = X<T>(y20, y9), y7 = X<T>(x7, y11), y17 = X<T>(y10, y11), y19 = X<T>(y10, y8);
  const y16 = X<T>(t0, y11), y21 = X<T>(y13, y16), y18 = X<T>(x0, y16);

  // Non-linear middle: inversion in GF(2^4)^2.
  const t2 = A<T>(y12, y15), t3 = A<T>(y3, y6), t4 = X<T>(t3, t2), t5 = A<T>(y4, x7), t6 = X<T>(t5, t2);
  const t7 = A<T>(y13, y16), t8 = A<T>(y5, y1), t9 = X<T>(t8, t7), t10 = A<T>(y2, y7), t11 = X<T>(t10, t7);
  const t12 = A<T>(y9, y11), t13 = A<T>(y14, y17), t14 = X<T>(t13, t12), t15 = A<T>(y8, y10), t16 = X<T>(t15, t12);
  const t17 = X<T>(t4, t14), t18 = X<T>(t6, t16), t19 = X<T>(t9, t14), t20 = X<T>(t11, t16);
  const t21 = X<T>(t17, y20), t22 = X<T>(t18, y19), t23 = X<T>(t19, y21), t24 = X<T>(t20, y18);
  const t25 = X<T>(t21, t22), t26 = A<T>(t21, t23), t27 = X<T>(t24, t26), t28 = A<T>(t25, t27), t29 = X<T>(t28, t22);
  const t30 = X<T>(t23, t24), t31 = X<T>(t22, t26), t32 = A<T>(t31, t30), t33 = X<T>(t32, t24), t34 = X<T>(t23, t33);
  const t35 = X<T>(t27, t33), t36 = A<T>(t24, t35), t37 = X<T>(t36, t34), t38 = X<T>(t27, t36), t39 = A<T>(t29, t38);
  const t40 = X<T>(t25, t39);
  const t41 = X<T>(t40, t37), t42 = X<T>(t29, t33), t43 = X<T>(t29, t40), t44 = X<T>(t33, t37), t45 = X<T>(t42, t41);
  const z0 = A<T>(t44, y15), z1 = A<T>(t37, y6), z2 = A<T>(t33, x7), z3 = A<T>(t43, y16), z4 = A<T>(t40, y1);
  const z5 = A<T>(t29, y7), z6 = A<T>(t42, y11), z7 = A<T>(t45, y17), z8 = A<T>(t41, y10), z9 = A<T>(t44, y12);
  const z10 = A<T>(t37, y3), z11 = A<T>(t33, y4), z12 = A<T>(t43, y13), z13 = A<T>(t40, y5), z14 = A<T>(t29, y2);
  const z15 = A<T>(t42, y9), z16 = A<T>(t45, y14), z17 = A<T>(t41, y8);

  // Bottom linear layer.
  const t46 = X<T>(z15, z16), t47 = X<T>(z10, z11), t48 = X<T>(z5, z13), t49 = X<T>(z9, z10), t50 = X<T>(z2, z12);
  const t51 = X<T>(z2, z5), t52 = X<T>(z7, z8), t53 = X<T>(z0, z3), t54 = X<T>(z6, z7), t55 = X<T>(z16, z17);
  const t56 = X<T>(z12, t48), t57 = X<T>(t50, t53), t58 = X<T>(z4, t46), t59 = X<T>(z3, t54), t60 = X<T>(t46, t57);
  const t61 = X<T>(z14, t57), t62 = X<T>(t52, t58), t63 = X<T>(t49, t58), t64 = X<T>(z4, t59), t65 = X<T>(t61, t62);
  const t66 = X<T>(z1, t63);
  const s0 = X<T>(t59, t63), s6 = X<T>(t56, N<T>(t62)), s7 = X<T>(t48, N<T>(t60));
  const t67 = X<T>(t64, t65);
  const s3 = X<T>(t53, t66), s4 = X<T>(t51, t66), s5 = X<T>(t47, t65);
  const s1 = X<T>(t64, N<T>(s3)), s2 = X<T>(t55, N<T>(t67));

  store<T>(q, s7); store<T>(q + S, s6); store<T>(q + 2 * S, s5); store<T>(q + 3 * S, s4);
  store<T>(q + 4 * S, s3); store<T>(q + 5 * S, s2); store<T>(q + 6 * S, s1); store<T>(q + 7 * S, s0);
}

// ShiftRows then MixColumns: out = 2(a0 ^ a1) ^ a1 ^ (a2 ^ a3), where a_i is
// row r + i, i.e. the plane rotated right by 16 i bits.
// @ts-ignore: decorator
@inline function shiftRowsMixColumns(q: usize): void {
  const q0 = shiftRow(load<u64>(q)), q1 = shiftRow(load<u64>(q, 8)), q2 = shiftRow(load<u64>(q, 16));
  const q3 = shiftRow(load<u64>(q, 24)), q4 = shiftRow(load<u64>(q, 32)), q5 = shiftRow(load<u64>(q, 40));
  const q6 = shiftRow(load<u64>(q, 48)), q7 = shiftRow(load<u64>(q, 56));
  const r0 = rotr<u64>(q0, 16), r1 = rotr<u64>(q1, 16), r2 = rotr<u64>(q2, 16), r3 = rotr<u64>(q3, 16);
  const r4 = rotr<u64>(q4, 16), r5 = rotr<u64>(q5, 16), r6 = rotr<u64>(q6, 16), r7 = rotr<u64>(q7, 16);
  const t0 = q0 ^ r0, t1 = q1 ^ r1, t2 = q2 ^ r2, t3 = q3 ^ r3;
  const t4 = q4 ^ r4, t5 = q5 ^ r5, t6 = q6 ^ r6, t7 = q7 ^ r7;
  store<u64>(q, t7 ^ r0 ^ rotr<u64>(t0, 32));
  store<u64>(q, t0 ^ t7 ^ r1 ^ rotr<u64>(t1, 32), 8);
  store<u64>(q, t1 ^ r2 ^ rotr<u64>(t2, 32), 16);
  store<u64>(q, t2 ^ t7 ^ r3 ^ rotr<u64>(t3, 32), 24);
  store<u64>(q, t3 ^ t7 ^ r4 ^ rotr<u64>(t4, 32), 32);
  store<u64>(q, t4 ^ r5 ^ rotr<u64>(t5, 32), 40);
  store<u64>(q, t5 ^ r6 ^ rotr<u64>(t6, 32), 48);
  store<u64>(q, t6 ^ r7 ^ rotr<u64>(t7, 32), 56);
}

// @ts-ignore: decorator
@inline function addRoundKey<T>(q: usize, rk: usize): void {
  const S = sizeof<T>();
  for (let i: usize = 0; i < 8; i++) store<T>(q + i * S, X<T>(load<T>(q + i * S), load<T>(rk + i * S)));
}

// Scalar rounds over 8 u64 planes at `q`.
function roundsScalar(q: usize, rk: usize): void {
  addRoundKey<u64>(q, rk);
  const n = rounds;
  for (let r = 1; r < n; r++) {
    subBytes<u64>(q);
    shiftRowsMixColumns(q);
    addRoundKey<u64>(q, rk + (<usize>r << 6));
  }
  subBytes<u64>(q);
  for (let i: usize = 0; i < 64; i += 8) store<u64>(q + i, shiftRow(load<u64>(q + i)));
  addRoundKey<u64>(q, rk + (<usize>n << 6));
}

// SIMD layout: eight blocks as 8 v128 planes; plane b holds bit b of every
// byte, byte p of the plane (the AES state byte p = 4 * column + row) holding
// that bit for blocks 0..7. Every permutation of AES is then one byte shuffle.

// Bit-transposes eight 16-byte vectors at `src` (stride 16) into `dst`; an involution.
// @ts-ignore: decorator
@inline function transposeV(src: usize, dst: usize): void {
  let v0 = v128.load(src), v1 = v128.load(src, 16), v2 = v128.load(src, 32), v3 = v128.load(src, 48);
  let v4 = v128.load(src, 64), v5 = v128.load(src, 80), v6 = v128.load(src, 96), v7 = v128.load(src, 112);
  const m1 = i64x2(0x5555555555555555, 0x5555555555555555);
  const m2 = i64x2(0x3333333333333333, 0x3333333333333333);
  const m4 = i64x2(0x0F0F0F0F0F0F0F0F, 0x0F0F0F0F0F0F0F0F);
  let t: v128;
  t = v128.and(v128.xor(i64x2.shr_u(v0, 1), v1), m1); v1 = v128.xor(v1, t); v0 = v128.xor(v0, i64x2.shl(t, 1));
  t = v128.and(v128.xor(i64x2.shr_u(v2, 1), v3), m1); v3 = v128.xor(v3, t); v2 = v128.xor(v2, i64x2.shl(t, 1));
  t = v128.and(v128.xor(i64x2.shr_u(v4, 1), v5), m1); v5 = v128.xor(v5, t); v4 = v128.xor(v4, i64x2.shl(t, 1));
  t = v128.and(v128.xor(i64x2.shr_u(v6, 1), v7), m1); v7 = v128.xor(v7, t); v6 = v128.xor(v6, i64x2.shl(t, 1));
  t = v128.and(v128.xor(i64x2.shr_u(v0, 2), v2), m2); v2 = v128.xor(v2, t); v0 = v128.xor(v0, i64x2.shl(t, 2));
  t = v128.and(v128.xor(i64x2.shr_u(v1, 2), v3), m2); v3 = v128.xor(v3, t); v1 = v128.xor(v1, i64x2.shl(t, 2));
  t = v128.and(v128.xor(i64x2.shr_u(v4, 2), v6), m2); v6 = v128.xor(v6, t); v4 = v128.xor(v4, i64x2.shl(t, 2));
  t = v128.and(v128.xor(i64x2.shr_u(v5, 2), v7), m2); v7 = v128.xor(v7, t); v5 = v128.xor(v5, i64x2.shl(t, 2));
  t = v128.and(v128.xor(i64x2.shr_u(v0, 4), v4), m4); v4 = v128.xor(v4, t); v0 = v128.xor(v0, i64x2.shl(t, 4));
  t = v128.and(v128.xor(i64x2.shr_u(v1, 4), v5), m4); v5 = v128.xor(v5, t); v1 = v128.xor(v1, i64x2.shl(t, 4));
  t = v128.and(v128.xor(i64x2.shr_u(v2, 4), v6), m4); v6 = v128.xor(v6, t); v2 = v128.xor(v2, i64x2.shl(t, 4));
  t = v128.and(v128.xor(i64x2.shr_u(v3, 4), v7), m4); v7 = v128.xor(v7, t); v3 = v128.xor(v3, i64x2.shl(t, 4));
  v128.store(dst, v0); v128.store(dst, v1, 16); v128.store(dst, v2, 32); v128.store(dst, v3, 48);
  v128.store(dst, v4, 64); v128.store(dst, v5, 80); v128.store(dst, v6, 96); v128.store(dst, v7, 112);
}

// Row rotations inside each column (a 32-bit lane): byte (r, c) takes byte
// (r + 1, c) / (r + 2, c). Lane rotations by shifts run faster than shuffles.
// @ts-ignore: decorator
@inline function rot1V(x: v128): v128 {
  return v128.or(i32x4.shr_u(x, 8), i32x4.shl(x, 24));
}
// @ts-ignore: decorator
@inline function rot2V(x: v128): v128 {
  return v128.or(i32x4.shr_u(x, 16), i32x4.shl(x, 16));
}

// SIMD rounds over 8 v128 planes at `q`, the state held in locals throughout.
function roundsVector(q: usize, rk: usize): void {
  let p0 = v128.xor(v128.load(q), v128.load(rk)), p1 = v128.xor(v128.load(q, 16), v128.load(rk, 16));
  let p2 = v128.xor(v128.load(q, 32), v128.load(rk, 32)), p3 = v128.xor(v128.load(q, 48), v128.load(rk, 48));
  let p4 = v128.xor(v128.load(q, 64), v128.load(rk, 64)), p5 = v128.xor(v128.load(q, 80), v128.load(rk, 80));
  let p6 = v128.xor(v128.load(q, 96), v128.load(rk, 96)), p7 = v128.xor(v128.load(q, 112), v128.load(rk, 112));
  const n = rounds;
  for (let r = 1; r <= n; r++) {
    const x0 = p7, x1 = p6, x2 = p5, x3 = p4, x4 = p3, x5 = p2, x6 = p1, x7 = p0;
      // Top linear layer.
      const y14 = v128.xor(x3, x5), y13 = v128.xor(x0, x6), y9 = v128.xor(x0, x3), y8 = v128.xor(x0, x5);
      const t0 = v128.xor(x1, x2);
      const y1 = v128.xor(t0, x7), y4 = v128.xor(y1, x3), y12 = v128.xor(y13, y14), y2 = v128.xor(y1, x0);
      const y5 = v128.xor(y1, x6), y3 = v128.xor(y5, y8);
      const t1 = v128.xor(x4, y12);
      const y15 = v128.xor(t1, x5), y20 = v128.xor(t1, x1), y6 = v128.xor(y15, x7), y10 = v128.xor(y15, t0);
      const y11 = v128.xor(y20, y9), y7 = v128.xor(x7, y11), y17 = v128.xor(y10, y11), y19 = v128.xor(y10, y8);
      const y16 = v128.xor(t0, y11), y21 = v128.xor(y13, y16), y18 = v128.xor(x0, y16);

      // Non-linear middle: inversion in GF(2^4)^2.
      const t2 = v128.and(y12, y15), t3 = v128.and(y3, y6), t4 = v128.xor(t3, t2), t5 = v128.and(y4, x7), t6 = v128.xor(t5, t2);
      const t7 = v128.and(y13, y16), t8 = v128.and(y5, y1), t9 = v128.xor(t8, t7), t10 = v128.and(y2, y7), t11 = v128.xor(t10, t7);
      const t12 = v128.and(y9, y11), t13 = v128.and(y14, y17), t14 = v128.xor(t13, t12), t15 = v128.and(y8, y10), t16 = v128.xor(t15, t12);
      const t17 = v128.xor(t4, t14), t18 = v128.xor(t6, t16), t19 = v128.xor(t9, t14), t20 = v128.xor(t11, t16);
      const t21 = v128.xor(t17, y20), t22 = v128.xor(t18, y19), t23 = v128.xor(t19, y21), t24 = v128.xor(t20, y18);
      const t25 = v128.xor(t21, t22), t26 = v128.and(t21, t23), t27 = v128.xor(t24, t26), t28 = v128.and(t25, t27), t29 = v128.xor(t28, t22);
      const t30 = v128.xor(t23, t24), t31 = v128.xor(t22, t26), t32 = v128.and(t31, t30), t33 = v128.xor(t32, t24), t34 = v128.xor(t23, t33);
      const t35 = v128.xor(t27, t33), t36 = v128.and(t24, t35), t37 = v128.xor(t36, t34), t38 = v128.xor(t27, t36), t39 = v128.and(t29, t38);
      const t40 = v128.xor(t25, t39);
      const t41 = v128.xor(t40, t37), t42 = v128.xor(t29, t33), t43 = v128.xor(t29, t40), t44 = v128.xor(t33, t37), t45 = v128.xor(t42, t41);
      const z0 = v128.and(t44, y15), z1 = v128.and(t37, y6), z2 = v128.and(t33, x7), z3 = v128.and(t43, y16), z4 = v128.and(t40, y1);
      const z5 = v128.and(t29, y7), z6 = v128.and(t42, y11), z7 = v128.and(t45, y17), z8 = v128.and(t41, y10), z9 = v128.and(t44, y12);
      const z10 = v128.and(t37, y3), z11 = v128.and(t33, y4), z12 = v128.and(t43, y13), z13 = v128.and(t40, y5), z14 = v128.and(t29, y2);
      const z15 = v128.and(t42, y9), z16 = v128.and(t45, y14), z17 = v128.and(t41, y8);

      // Bottom linear layer.
      const t46 = v128.xor(z15, z16), t47 = v128.xor(z10, z11), t48 = v128.xor(z5, z13), t49 = v128.xor(z9, z10), t50 = v128.xor(z2, z12);
      const t51 = v128.xor(z2, z5), t52 = v128.xor(z7, z8), t53 = v128.xor(z0, z3), t54 = v128.xor(z6, z7), t55 = v128.xor(z16, z17);
      const t56 = v128.xor(z12, t48), t57 = v128.xor(t50, t53), t58 = v128.xor(z4, t46), t59 = v128.xor(z3, t54), t60 = v128.xor(t46, t57);
      const t61 = v128.xor(z14, t57), t62 = v128.xor(t52, t58), t63 = v128.xor(t49, t58), t64 = v128.xor(z4, t59), t65 = v128.xor(t61, t62);
      const t66 = v128.xor(z1, t63);
      const s0 = v128.xor(t59, t63), s6 = v128.xor(t56, v128.not(t62)), s7 = v128.xor(t48, v128.not(t60));
      const t67 = v128.xor(t64, t65);
      const s3 = v128.xor(t53, t66), s4 = v128.xor(t51, t66), s5 = v128.xor(t47, t65);
      const s1 = v128.xor(t64, v128.not(s3)), s2 = v128.xor(t55, v128.not(t67));

    // ShiftRows.
    p0 = srV(s7); p1 = srV(s6); p2 = srV(s5); p3 = srV(s4);
    p4 = srV(s3); p5 = srV(s2); p6 = srV(s1); p7 = srV(s0);
    const k = rk + (<usize>r << 7);
    if (r < n) {
      // MixColumns: out = 2(a0 ^ a1) ^ a1 ^ (a2 ^ a3), a_i = row r + i.
      const r0 = rot1V(p0), r1 = rot1V(p1), r2 = rot1V(p2), r3 = rot1V(p3);
      const r4 = rot1V(p4), r5 = rot1V(p5), r6 = rot1V(p6), r7 = rot1V(p7);
      const u0 = v128.xor(p0, r0), u1 = v128.xor(p1, r1), u2 = v128.xor(p2, r2), u3 = v128.xor(p3, r3);
      const u4 = v128.xor(p4, r4), u5 = v128.xor(p5, r5), u6 = v128.xor(p6, r6), u7 = v128.xor(p7, r7);
      p0 = v128.xor(v128.xor(u7, r0), rot2V(u0));
      p1 = v128.xor(v128.xor(v128.xor(u0, u7), r1), rot2V(u1));
      p2 = v128.xor(v128.xor(u1, r2), rot2V(u2));
      p3 = v128.xor(v128.xor(v128.xor(u2, u7), r3), rot2V(u3));
      p4 = v128.xor(v128.xor(v128.xor(u3, u7), r4), rot2V(u4));
      p5 = v128.xor(v128.xor(u4, r5), rot2V(u5));
      p6 = v128.xor(v128.xor(u5, r6), rot2V(u6));
      p7 = v128.xor(v128.xor(u6, r7), rot2V(u7));
    }
    p0 = v128.xor(p0, v128.load(k)); p1 = v128.xor(p1, v128.load(k, 16));
    p2 = v128.xor(p2, v128.load(k, 32)); p3 = v128.xor(p3, v128.load(k, 48));
    p4 = v128.xor(p4, v128.load(k, 64)); p5 = v128.xor(p5, v128.load(k, 80));
    p6 = v128.xor(p6, v128.load(k, 96)); p7 = v128.xor(p7, v128.load(k, 112));
  }
  v128.store(q, p0); v128.store(q, p1, 16); v128.store(q, p2, 32); v128.store(q, p3, 48);
  v128.store(q, p4, 64); v128.store(q, p5, 80); v128.store(q, p6, 96); v128.store(q, p7, 112);
}

/** Blocks per call of encryptBatch: 8 in the SIMD build, else 4. */
export const BATCH: i32 = ASC_FEATURE_SIMD ? 8 : 4;

/** Encrypts BATCH consecutive blocks at `src` into `dst` (may alias). */
export function encryptBatch(src: usize, dst: usize): void {
  if (ASC_FEATURE_SIMD) {
    transposeV(src, QV);
    roundsVector(QV, RKV);
    transposeV(QV, dst);
  } else {
    bitsliceTo(src, Q, 8);
    roundsScalar(Q, RK);
    unbitsliceFrom(Q, dst, 8);
  }
}

// Transposes the 8x8 bit matrix in one word: bit j of byte i <-> bit i of byte j.
// @ts-ignore: decorator
@inline function transpose8(x: u64): u64 {
  let t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AA;
  x ^= t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCC;
  x ^= t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0;
  x ^= t ^ (t << 28);
  return x;
}

// SubWord on one 32-bit word through the same circuit (the key is secret too):
// byte b of the transposed word is plane b for the word's four bytes.
function subWord(w: u32): u32 {
  const x = transpose8(<u64>w);
  for (let b: usize = 0; b < 8; b++) store<u64>(Q + (b << 3), (x >> (b << 3)) & 0xFF);
  subBytes<u64>(Q);
  let y: u64 = 0;
  for (let b: usize = 0; b < 8; b++) y |= (load<u64>(Q + (b << 3)) & 0xFF) << (b << 3);
  return <u32>transpose8(y);
}

/**
 * Expands a 16/24/32-byte key into bitsliced round keys. Returns false for any
 * other length.
 */
export function aesSetKey(key: usize, keyLen: i32): bool {
  if (keyLen != 16 && keyLen != 24 && keyLen != 32) return false;
  const nk = keyLen >> 2;
  rounds = nk + 6;
  const total = (rounds + 1) << 2;
  memory.copy(WORDS, key, <usize>keyLen);
  let rcon: u32 = 1;
  for (let i = nk; i < total; i++) {
    let t = load<u32>(WORDS + (<usize>(i - 1) << 2));
    if (i % nk == 0) {
      // Bytes are little-endian in the word: RotWord is a right rotation.
      t = subWord(rotr<u32>(t, 8)) ^ rcon;
      rcon = (rcon << 1) ^ (0x11b & (0 - (rcon >> 7)));
    } else if (nk > 6 && i % nk == 4) {
      t = subWord(t);
    }
    store<u32>(WORDS + (<usize>i << 2), load<u32>(WORDS + (<usize>(i - nk) << 2)) ^ t);
  }
  if (!ASC_FEATURE_SIMD) {
    // Each round key, repeated in all four block slots, then bitsliced.
    for (let r = 0; r <= rounds; r++) {
      const k = WORDS + (<usize>r << 4);
      for (let b: usize = 0; b < 64; b += 16) memory.copy(TMP + b, k, 16);
      bitslice(TMP, RK + (<usize>r << 6));
    }
  } else {
    // Eight copies of each round key, transposed into the SIMD layout.
    for (let r = 0; r <= rounds; r++) {
      const k = v128.load(WORDS + (<usize>r << 4));
      const dst = RKV + (<usize>r << 7);
      for (let b: usize = 0; b < 128; b += 16) v128.store(dst + b, k);
      transposeV(dst, dst);
    }
  }
  memory.fill(WORDS, 0, 240);
  memory.fill(TMP, 0, 64);
  return true;
}

/** Erases the key schedule and working state. */
export function aesWipe(): void {
  memory.fill(RK, 0, 15 * 64);
  memory.fill(Q, 0, 64);
  if (ASC_FEATURE_SIMD) {
    memory.fill(RKV, 0, 15 * 128);
    memory.fill(QV, 0, 128);
  }
}
