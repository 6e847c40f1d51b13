// Constant-time modular inversion for 256-bit odd moduli (the P-256 field
// prime and group order) by Bernstein-Yang "safegcd" division steps
// (Bernstein and Yang 2019, "Fast constant-time gcd computation and modular
// inversion"), in the half-delta form, batched 30 steps at a time on signed
// 30-bit limbs.
//
// Guarantees:
// - Constant time: a fixed 20 batches x 30 division steps (600 >= 590, the
//   bound for 256-bit inputs in the half-delta form), every step branch-free
//   (conditional swap, negation and addition by masks); the limb loops have
//   fixed bounds and public addresses. Nothing depends on the input value.
// - Input: a value < m (fully reduced); 0 maps to 0. Output is fully reduced.
// - Correctness rests on the invariant f = d x, g = e x (mod m) kept by every
//   batch (the same transition matrix is applied to (f, g) and, mod m, to
//   (d, e)); at the end g = 0 and f = +-1, so x^-1 = +-d. The coefficients d, e
//   stay in (-2m, m) by the sign-dependent offsets of updateDE.

const M30: i32 = 0x3fffffff;
const LIMBS: i32 = 9; // 9 x 30 = 270 bits: room for 256-bit values and their signs

// Working values, signed 30-bit limbs: limbs 0..7 in [0, 2^30), limb 8 signed.
const SG_F = memory.data(LIMBS * 4, 8);
const SG_G = memory.data(LIMBS * 4, 8);
const SG_D = memory.data(LIMBS * 4, 8);
const SG_E = memory.data(LIMBS * 4, 8);

// Transition matrix of the last batch, scaled by 2^30.
let tU: i32 = 0;
let tV: i32 = 0;
let tQ: i32 = 0;
let tR: i32 = 0;

@inline function ld(p: usize, i: i32): i32 {
  return load<i32>(p + (<usize>i << 2));
}
@inline function st(p: usize, i: i32, v: i32): void {
  store<i32>(p + (<usize>i << 2), v);
}

/** Bytes of the per-modulus data written by `sgInit`: 9 limbs of m, then m^-1 mod 2^30. */
export const SG_SIZE: usize = 40;

/** 8 little-endian 32-bit limbs to 9 limbs of 30 bits (a value < 2^256). */
function to30(dst: usize, src: usize): void {
  for (let i = 0; i < LIMBS; i++) {
    const bit = i * 30;
    const w = bit >> 5;
    const sh = <u64>(bit & 31);
    let v = <u64>load<u32>(src + (<usize>w << 2));
    if (w + 1 < 8) v |= <u64>load<u32>(src + (<usize>(w + 1) << 2)) << 32;
    st(dst, i, <i32>(v >> sh) & M30);
  }
}

/** 9 normalized 30-bit limbs (value in [0, 2^256)) to 8 32-bit limbs. */
function from30(dst: usize, src: usize): void {
  let acc: u64 = 0;
  let bits: i32 = 0;
  let o = 0;
  for (let i = 0; i < LIMBS; i++) {
    acc |= <u64>(<u32>ld(src, i)) << <u64>bits;
    bits += 30;
    if (bits >= 32) {
      store<u32>(dst + (<usize>o << 2), <u32>acc);
      o++;
      acc >>= 32;
      bits -= 32;
    }
  }
}

/** Fills the safegcd data of a 256-bit odd modulus (8 limbs at m) into out. */
export function sgInit(out: usize, m: usize): void {
  to30(out, m);
  const m0 = <u32>ld(out, 0);
  let inv: u32 = m0; // Newton iteration, correct bits double each step
  for (let i = 0; i < 5; i++) inv = inv * (2 - m0 * inv);
  st(out, LIMBS, <i32>(inv & <u32>M30));
}

/**
 * 30 division steps on the low bits of f (odd) and g; returns the new delta
 * (twice the paper's delta, so always odd) and sets the matrix tU..tR with
 * 2^30 (f', g') = (tU f + tV g, tQ f + tR g). Branch-free.
 */
function divsteps30(delta: i32, f0: u32, g0: u32): i32 {
  let u: i32 = 1, v: i32 = 0, q: i32 = 0, r: i32 = 1;
  let f = f0, g = g0;
  for (let i = 0; i < 30; i++) {
    const odd = <i32>0 - <i32>(g & 1);
    const swap = ((0 - delta) >> 31) & odd; // delta > 0 and g odd
    // when swapping: (f, g) <- (g, -f) and the rows of the matrix likewise
    const sw = <u32>swap;
    const t = (f ^ g) & sw;
    f ^= t;
    g ^= t;
    g = (g ^ sw) - sw;
    let x = (u ^ q) & swap;
    u ^= x;
    q ^= x;
    x = (v ^ r) & swap;
    v ^= x;
    r ^= x;
    q = (q ^ swap) - swap;
    r = (r ^ swap) - swap;
    delta = (delta ^ swap) - swap;
    // g odd: g += f, then halve g (kept exact by doubling the f row instead)
    g += f & <u32>odd;
    q += u & odd;
    r += v & odd;
    g >>= 1;
    u <<= 1;
    v <<= 1;
    delta += 2;
  }
  tU = u;
  tV = v;
  tQ = q;
  tR = r;
  return delta;
}

/** (f, g) <- T (f, g) / 2^30, exact. */
function updateFG(): void {
  const u = <i64>tU, v = <i64>tV, q = <i64>tQ, r = <i64>tR;
  let f = <i64>ld(SG_F, 0), g = <i64>ld(SG_G, 0);
  let cf = u * f + v * g;
  let cg = q * f + r * g;
  cf >>= 30;
  cg >>= 30;
  for (let i = 1; i < LIMBS; i++) {
    f = <i64>ld(SG_F, i);
    g = <i64>ld(SG_G, i);
    cf += u * f + v * g;
    cg += q * f + r * g;
    st(SG_F, i - 1, <i32>cf & M30);
    st(SG_G, i - 1, <i32>cg & M30);
    cf >>= 30;
    cg >>= 30;
  }
  st(SG_F, LIMBS - 1, <i32>cf);
  st(SG_G, LIMBS - 1, <i32>cg);
}

/**
 * (d, e) <- T (d, e) / 2^30 mod m, keeping both in (-2m, m): m is added (through
 * the matrix) to a negative input, then a multiple of m in (-2^31, 2^30]
 * clears the low 30 bits so the division is exact.
 */
function updateDE(sg: usize): void {
  const u = tU, v = tV, q = tQ, r = tR;
  const sd = ld(SG_D, LIMBS - 1) >> 31;
  const se = ld(SG_E, LIMBS - 1) >> 31;
  let md = (u & sd) + (v & se);
  let me = (q & sd) + (r & se);
  let d = <i64>ld(SG_D, 0), e = <i64>ld(SG_E, 0);
  let cd = <i64>u * d + <i64>v * e;
  let ce = <i64>q * d + <i64>r * e;
  const inv = <u32>ld(sg, LIMBS);
  md -= <i32>((inv * <u32>cd + <u32>md) & <u32>M30);
  me -= <i32>((inv * <u32>ce + <u32>me) & <u32>M30);
  let m = <i64>ld(sg, 0);
  cd += m * <i64>md;
  ce += m * <i64>me;
  cd >>= 30;
  ce >>= 30;
  for (let i = 1; i < LIMBS; i++) {
    d = <i64>ld(SG_D, i);
    e = <i64>ld(SG_E, i);
    m = <i64>ld(sg, i);
    cd += <i64>u * d + <i64>v * e + m * <i64>md;
    ce += <i64>q * d + <i64>r * e + m * <i64>me;
    st(SG_D, i - 1, <i32>cd & M30);
    st(SG_E, i - 1, <i32>ce & M30);
    cd >>= 30;
    ce >>= 30;
  }
  st(SG_D, LIMBS - 1, <i32>cd);
  st(SG_E, LIMBS - 1, <i32>ce);
}

/** a += m when mask is all ones (limbs renormalized; top limb carries the sign). */
function addModMasked(a: usize, sg: usize, mask: i32): void {
  let c: i64 = 0;
  for (let i = 0; i < LIMBS - 1; i++) {
    c += <i64>ld(a, i) + <i64>(ld(sg, i) & mask);
    st(a, i, <i32>c & M30);
    c >>= 30;
  }
  st(a, LIMBS - 1, <i32>(c + <i64>ld(a, LIMBS - 1) + <i64>(ld(sg, LIMBS - 1) & mask)));
}

/** a = -a when mask is all ones (limbs renormalized). */
function negMasked(a: usize, mask: i32): void {
  let c: i64 = 0;
  for (let i = 0; i < LIMBS - 1; i++) {
    c += <i64>((ld(a, i) ^ mask) - mask);
    st(a, i, <i32>c & M30);
    c >>= 30;
  }
  st(a, LIMBS - 1, <i32>(c + <i64>((ld(a, LIMBS - 1) ^ mask) - mask)));
}

/**
 * r = a^-1 mod m (plain integers, 8 limbs, a < m; 0 maps to 0) for the modulus
 * whose data `sgInit` wrote at sg. Constant time. r may alias a.
 */
export function sgInverse(r: usize, a: usize, sg: usize): void {
  memory.copy(SG_F, sg, <usize>(LIMBS * 4));
  to30(SG_G, a);
  memory.fill(SG_D, 0, <usize>(LIMBS * 4));
  memory.fill(SG_E, 0, <usize>(LIMBS * 4));
  st(SG_E, 0, 1);
  let delta: i32 = 1;
  for (let i = 0; i < 20; i++) {
    const f0 = <u32>ld(SG_F, 0) | (<u32>ld(SG_F, 1) << 30);
    const g0 = <u32>ld(SG_G, 0) | (<u32>ld(SG_G, 1) << 30);
    delta = divsteps30(delta, f0, g0);
    updateFG();
    updateDE(sg);
  }
  // f = +-1 (or m when a = 0, with d = 0): x^-1 = sign(f) d, brought into [0, m)
  addModMasked(SG_D, sg, ld(SG_D, LIMBS - 1) >> 31);
  negMasked(SG_D, ld(SG_F, LIMBS - 1) >> 31);
  addModMasked(SG_D, sg, ld(SG_D, LIMBS - 1) >> 31);
  from30(r, SG_D);
  memory.fill(SG_F, 0, <usize>(LIMBS * 4));
  memory.fill(SG_G, 0, <usize>(LIMBS * 4));
  memory.fill(SG_D, 0, <usize>(LIMBS * 4));
  memory.fill(SG_E, 0, <usize>(LIMBS * 4));
  tU = 0;
  tV = 0;
  tQ = 0;
  tR = 0;
}
