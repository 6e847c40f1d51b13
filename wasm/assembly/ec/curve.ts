// P-256 and P-384 group arithmetic (short Weierstrass, a = -3, prime order).
//
// Guarantees:
// - Field elements are in Montgomery form (field.ts: constant-time arithmetic).
// - Complete formulas of Renes-Costello-Batina 2016 (algorithms 4, 5, 6) in
//   projective coordinates (padd, paddMixed, pdbl): no special case, no branch.
//   They build every table and do the P-384 fixed-base comb.
// - Jacobian formulas (jdbl; madd-2007-bl mixed addition) are used only where
//   their exceptional cases provably cannot occur (the P-256 comb, the ECDH
//   window; see mulBaseCt and mulVarJac), an accumulator at infinity being
//   handled by mask, or on public data with explicit special cases (verify).
// - SECRET scalars only meet mulBaseCt (signed fixed-base comb, 6-bit windows
//   for P-256, 4-bit for P-384) and
//   mulVarJac (4-bit fixed window): fixed loop bounds, every table entry read
//   for every window and picked by masks, negation by mask, the addition always
//   performed and kept or dropped by mask; the recoded digits sit in static
//   memory at public offsets. Run time depends only on the curve.
// - mulDoubleVar, jaddMixedVar, jCheckX, wnaf and decodePoint are VARIABLE
//   TIME and only ever see public data (verification, public keys).
// - decodePoint validates SEC1 keys: encoding and length, coordinates < p,
//   curve equation; with cofactor 1 that is full validation (infinity has no
//   encoding here).
import {
  FE, MD_SIZE, MD_ONE, MD_M, mdInit, mmul, msqr, madd, msub, mpow, minv, toMont, fromMont,
  isZeroMask, eqMask, ltMask, cmovBytes, fromBytes, toBytes, KIND_FP256, KIND_FP384, KIND_FN256, KIND_FN384,
} from "./field";

// Curve context layout (bytes).
export const C_FP: usize = 0; // field modulus descriptor
export const C_FN: usize = MD_SIZE; // group order descriptor
const C_B: usize = 2 * MD_SIZE; // b, Montgomery form
const C_GX: usize = C_B + 48; // generator, Montgomery form
const C_GY: usize = C_GX + 48;
const C_SQRT: usize = C_GY + 48; // (p + 1) / 4 (p = 3 mod 4 for both curves)
const C_N: usize = C_SQRT + 48; // i32 limbs
const C_READY: usize = C_N + 4; // i32, base table built
const C_TABLE: usize = C_N + 8; // usize, base table address
const C_STEP: usize = C_N + 12; // i32, comb passes: windows of one pass share a table row
const C_GODD: usize = C_N + 16; // usize, odd multiples G, 3G, ..., 63G (affine) for verification
const C_WB: usize = C_N + 20; // i32, comb window bits
const C_TE: usize = C_N + 24; // i32, table entries per row (2^(WB-1))
const C_WIN: usize = C_N + 28; // i32, comb windows (P-384: including a final carry window)
const C_SIZE: usize = C_N + 32;

export const PT: usize = 3 * FE; // one projective point buffer
const AFF_STRIDE8: usize = 64; // affine table entry, P-256 (2 x 32 bytes)
const AFF_STRIDE12: usize = 96; // P-384

const P256_P = memory.data<u32>([0xffffffff, 0xffffffff, 0xffffffff, 0x00000000, 0x00000000, 0x00000000, 0x00000001, 0xffffffff]);
const P256_N = memory.data<u32>([0xfc632551, 0xf3b9cac2, 0xa7179e84, 0xbce6faad, 0xffffffff, 0xffffffff, 0x00000000, 0xffffffff]);
const P256_B = memory.data<u32>([0x27d2604b, 0x3bce3c3e, 0xcc53b0f6, 0x651d06b0, 0x769886bc, 0xb3ebbd55, 0xaa3a93e7, 0x5ac635d8]);
const P256_GX = memory.data<u32>([0xd898c296, 0xf4a13945, 0x2deb33a0, 0x77037d81, 0x63a440f2, 0xf8bce6e5, 0xe12c4247, 0x6b17d1f2]);
const P256_GY = memory.data<u32>([0x37bf51f5, 0xcbb64068, 0x6b315ece, 0x2bce3357, 0x7c0f9e16, 0x8ee7eb4a, 0xfe1a7f9b, 0x4fe342e2]);
const P384_P = memory.data<u32>([0xffffffff, 0x00000000, 0x00000000, 0xffffffff, 0xfffffffe, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]);
const P384_N = memory.data<u32>([0xccc52973, 0xecec196a, 0x48b0a77a, 0x581a0db2, 0xf4372ddf, 0xc7634d81, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]);
const P384_B = memory.data<u32>([0xd3ec2aef, 0x2a85c8ed, 0x8a2ed19d, 0xc656398d, 0x5013875a, 0x0314088f, 0xfe814112, 0x181d9c6e, 0xe3f82d19, 0x988e056b, 0xe23ee7e4, 0xb3312fa7]);
const P384_GX = memory.data<u32>([0x72760ab7, 0x3a545e38, 0xbf55296c, 0x5502f25d, 0x82542a38, 0x59f741e0, 0x8ba79b98, 0x6e1d3b62, 0xf320ad74, 0x8eb1c71e, 0xbe8b0537, 0xaa87ca22]);
const P384_GY = memory.data<u32>([0x90ea0e5f, 0x7a431d7c, 0x1d7e819d, 0x0a60b1ce, 0xb5f0b8c0, 0xe9da3113, 0x289a147c, 0xf8f41dbd, 0x9292dc29, 0x5d9e98bf, 0x96262c6f, 0x3617de4a]);

const CTX256 = memory.data(<i32>C_SIZE, 16);
const CTX384 = memory.data(<i32>C_SIZE, 16);
// Fixed-base comb tables, affine, entry j of row r = (j + 1) * 2^(WB * STEP * r) * G.
// P-256: signed 6-bit windows (digits in [-32, 32]), one row per window, 43
// windows; the top one holds bits 252..255 plus a carry, at most 16, so it
// never carries out. P-384: signed 4-bit windows plus a carry window, rows for
// every third window only (memory), the three passes joined by doublings.
const WIN256: i32 = 43;
const TABLE256 = memory.data(WIN256 * 32 * <i32>AFF_STRIDE8, 16);
const TABLE384 = memory.data(33 * 8 * <i32>AFF_STRIDE12, 16);
const GODD_COUNT: i32 = 32; // wNAF width 7
const GODD256 = memory.data(GODD_COUNT * <i32>AFF_STRIDE8, 16);
const GODD384 = memory.data(GODD_COUNT * <i32>AFF_STRIDE12, 16);
let inited = false;

function ctxInit(
  c: usize, n: i32, p: usize, order: usize, b: usize, gx: usize, gy: usize, table: usize, step: i32, godd: usize,
  wb: i32, win: i32,
): void {
  store<i32>(c + C_STEP, step);
  store<i32>(c + C_WB, wb);
  store<i32>(c + C_TE, 1 << (wb - 1));
  store<i32>(c + C_WIN, win);
  store<usize>(c + C_GODD, godd);
  mdInit(c + C_FP, n, p, n == 8 ? KIND_FP256 : KIND_FP384);
  mdInit(c + C_FN, n, order, n == 8 ? KIND_FN256 : KIND_FN384);
  const fp = c + C_FP;
  toMont(c + C_B, b, fp);
  toMont(c + C_GX, gx, fp);
  toMont(c + C_GY, gy, fp);
  // (p + 1) / 4: p + 1 does not overflow (p is not all ones)
  let carry: u64 = 1;
  for (let i = 0; i < n; i++) {
    const s = <u64>load<u32>(p + (<usize>i << 2)) + carry;
    store<u32>(c + C_SQRT + (<usize>i << 2), <u32>s);
    carry = s >> 32;
  }
  for (let i = 0; i < n; i++) {
    const lo = load<u32>(c + C_SQRT + (<usize>i << 2)) >> 2;
    const hi: u32 = i + 1 < n ? load<u32>(c + C_SQRT + (<usize>(i + 1) << 2)) << 30 : 0;
    store<u32>(c + C_SQRT + (<usize>i << 2), lo | hi);
  }
  store<i32>(c + C_N, n);
  store<i32>(c + C_READY, 0);
  store<usize>(c + C_TABLE, table);
}

/** Curve context for id 256 or 384 (0 for anything else). */
export function curveCtx(id: i32): usize {
  if (!inited) {
    ctxInit(CTX256, 8, P256_P, P256_N, P256_B, P256_GX, P256_GY, TABLE256, 1, GODD256, 6, WIN256);
    ctxInit(CTX384, 12, P384_P, P384_N, P384_B, P384_GX, P384_GY, TABLE384, 3, GODD384, 4, 384 / 4 + 1);
    inited = true;
  }
  if (id == 256) return CTX256;
  if (id == 384) return CTX384;
  return 0;
}

@inline export function limbs(c: usize): i32 {
  return load<i32>(c + C_N);
}

// Temporaries of the point formulas (not shared with the field module).
const T0 = memory.data(48);
const T1 = memory.data(48);
const T2 = memory.data(48);
const T3 = memory.data(48);
const T4 = memory.data(48);
const X3 = memory.data(48);
const Y3 = memory.data(48);
const Z3 = memory.data(48);

/** r = p + q, complete (RCB algorithm 4, a = -3). r may alias p or q. */
export function padd(c: usize, r: usize, p: usize, q: usize): void {
  const fp = c + C_FP;
  const b = c + C_B;
  const X1 = p, Y1 = p + FE, Z1 = p + 2 * FE;
  const X2 = q, Y2 = q + FE, Z2 = q + 2 * FE;
  mmul(T0, X1, X2, fp);
  mmul(T1, Y1, Y2, fp);
  mmul(T2, Z1, Z2, fp);
  madd(T3, X1, Y1, fp);
  madd(T4, X2, Y2, fp);
  mmul(T3, T3, T4, fp);
  madd(T4, T0, T1, fp);
  msub(T3, T3, T4, fp);
  madd(T4, Y1, Z1, fp);
  madd(X3, Y2, Z2, fp);
  mmul(T4, T4, X3, fp);
  madd(X3, T1, T2, fp);
  msub(T4, T4, X3, fp);
  madd(X3, X1, Z1, fp);
  madd(Y3, X2, Z2, fp);
  mmul(X3, X3, Y3, fp);
  madd(Y3, T0, T2, fp);
  msub(Y3, X3, Y3, fp);
  mmul(Z3, b, T2, fp);
  msub(X3, Y3, Z3, fp);
  madd(Z3, X3, X3, fp);
  madd(X3, X3, Z3, fp);
  msub(Z3, T1, X3, fp);
  madd(X3, T1, X3, fp);
  mmul(Y3, b, Y3, fp);
  madd(T1, T2, T2, fp);
  madd(T2, T1, T2, fp);
  msub(Y3, Y3, T2, fp);
  msub(Y3, Y3, T0, fp);
  madd(T1, Y3, Y3, fp);
  madd(Y3, T1, Y3, fp);
  madd(T1, T0, T0, fp);
  madd(T0, T1, T0, fp);
  msub(T0, T0, T2, fp);
  mmul(T1, T4, Y3, fp);
  mmul(T2, T0, Y3, fp);
  mmul(Y3, X3, Z3, fp);
  madd(Y3, Y3, T2, fp);
  mmul(X3, T3, X3, fp);
  msub(X3, X3, T1, fp);
  mmul(Z3, T4, Z3, fp);
  mmul(T1, T3, T0, fp);
  madd(Z3, Z3, T1, fp);
  memory.copy(r, X3, FE);
  memory.copy(r + FE, Y3, FE);
  memory.copy(r + 2 * FE, Z3, FE);
}

/** r = p + (x2, y2) with an affine q that is not infinity (RCB algorithm 5). */
export function paddMixed(c: usize, r: usize, p: usize, X2: usize, Y2: usize): void {
  const fp = c + C_FP;
  const b = c + C_B;
  const X1 = p, Y1 = p + FE, Z1 = p + 2 * FE;
  mmul(T0, X1, X2, fp);
  mmul(T1, Y1, Y2, fp);
  madd(T3, X2, Y2, fp);
  madd(T4, X1, Y1, fp);
  mmul(T3, T3, T4, fp);
  madd(T4, T0, T1, fp);
  msub(T3, T3, T4, fp);
  mmul(T4, Y2, Z1, fp);
  madd(T4, T4, Y1, fp);
  mmul(Y3, X2, Z1, fp);
  madd(Y3, Y3, X1, fp);
  mmul(Z3, b, Z1, fp);
  msub(X3, Y3, Z3, fp);
  madd(Z3, X3, X3, fp);
  madd(X3, X3, Z3, fp);
  msub(Z3, T1, X3, fp);
  madd(X3, T1, X3, fp);
  mmul(Y3, b, Y3, fp);
  madd(T1, Z1, Z1, fp);
  madd(T2, T1, Z1, fp);
  msub(Y3, Y3, T2, fp);
  msub(Y3, Y3, T0, fp);
  madd(T1, Y3, Y3, fp);
  madd(Y3, T1, Y3, fp);
  madd(T1, T0, T0, fp);
  madd(T0, T1, T0, fp);
  msub(T0, T0, T2, fp);
  mmul(T1, T4, Y3, fp);
  mmul(T2, T0, Y3, fp);
  mmul(Y3, X3, Z3, fp);
  madd(Y3, Y3, T2, fp);
  mmul(X3, T3, X3, fp);
  msub(X3, X3, T1, fp);
  mmul(Z3, T4, Z3, fp);
  mmul(T1, T3, T0, fp);
  madd(Z3, Z3, T1, fp);
  memory.copy(r, X3, FE);
  memory.copy(r + FE, Y3, FE);
  memory.copy(r + 2 * FE, Z3, FE);
}

/** r = 2p, complete (RCB algorithm 6, a = -3). r may alias p. */
export function pdbl(c: usize, r: usize, p: usize): void {
  const fp = c + C_FP;
  const b = c + C_B;
  const X = p, Y = p + FE, Z = p + 2 * FE;
  msqr(T0, X, fp);
  msqr(T1, Y, fp);
  msqr(T2, Z, fp);
  mmul(T3, X, Y, fp);
  madd(T3, T3, T3, fp);
  mmul(Z3, X, Z, fp);
  madd(Z3, Z3, Z3, fp);
  mmul(Y3, b, T2, fp);
  msub(Y3, Y3, Z3, fp);
  madd(X3, Y3, Y3, fp);
  madd(Y3, X3, Y3, fp);
  msub(X3, T1, Y3, fp);
  madd(Y3, T1, Y3, fp);
  mmul(Y3, X3, Y3, fp);
  mmul(X3, X3, T3, fp);
  madd(T3, T2, T2, fp);
  madd(T2, T2, T3, fp);
  mmul(Z3, b, Z3, fp);
  msub(Z3, Z3, T2, fp);
  msub(Z3, Z3, T0, fp);
  madd(T3, Z3, Z3, fp);
  madd(Z3, Z3, T3, fp);
  madd(T3, T0, T0, fp);
  madd(T0, T3, T0, fp);
  msub(T0, T0, T2, fp);
  mmul(T0, T0, Z3, fp);
  madd(Y3, Y3, T0, fp);
  mmul(T0, Y, Z, fp);
  madd(T0, T0, T0, fp);
  mmul(Z3, T0, Z3, fp);
  msub(X3, X3, Z3, fp);
  mmul(Z3, T0, T1, fp);
  madd(Z3, Z3, Z3, fp);
  madd(Z3, Z3, Z3, fp);
  memory.copy(r, X3, FE);
  memory.copy(r + FE, Y3, FE);
  memory.copy(r + 2 * FE, Z3, FE);
}

/** r = the point at infinity (0 : 1 : 0). */
export function pinf(c: usize, r: usize): void {
  memory.fill(r, 0, PT);
  memory.copy(r + FE, c + C_FP + MD_ONE, FE);
}

const ZI = memory.data(48);

// ---- fixed-base table -------------------------------------------------------

// Shared workspace for projective points being built (tables, multiples of a
// key); its users never run at the same time.
const WS = memory.data(32 * <i32>PT);
const BA_PREF = memory.data(32 * 48);
const BA_INV = memory.data(48);
const BA_TMP = memory.data(48);
const OM_2P = memory.data(<i32>PT);

/** src[i] = (2i + 1) p for i < count (complete formulas). */
function oddMultiples(c: usize, src: usize, p: usize, count: i32): void {
  memory.copy(src, p, PT);
  pdbl(c, OM_2P, p);
  for (let i = 1; i < count; i++) padd(c, src + <usize>i * PT, src + <usize>(i - 1) * PT, OM_2P);
}

/**
 * Affine x, y (Montgomery form) of `count` projective points at src (stride PT,
 * none at infinity) into dst + i * dstStride (y at + yOff), with one inversion.
 */
function batchToAffine(c: usize, src: usize, count: i32, dst: usize, dstStride: usize, yOff: usize): void {
  const fp = c + C_FP;
  memory.copy(BA_PREF, src + 2 * FE, FE);
  for (let j = 1; j < count; j++) {
    mmul(BA_PREF + <usize>j * 48, BA_PREF + <usize>(j - 1) * 48, src + <usize>j * PT + 2 * FE, fp);
  }
  minv(BA_INV, BA_PREF + <usize>(count - 1) * 48, fp);
  for (let j = count - 1; j >= 0; j--) {
    const e = src + <usize>j * PT;
    // zinv_j = inv * pref_{j-1}; then inv *= z_j
    if (j > 0) {
      mmul(BA_TMP, BA_INV, BA_PREF + <usize>(j - 1) * 48, fp);
      mmul(BA_INV, BA_INV, e + 2 * FE, fp);
    } else {
      memory.copy(BA_TMP, BA_INV, FE);
    }
    const d = dst + <usize>j * dstStride;
    mmul(d, e, BA_TMP, fp);
    mmul(d + yOff, e + FE, BA_TMP, fp);
  }
}

const TB_BASE = memory.data(<i32>PT);

/** Builds the fixed-base comb table and the odd multiples of G (public data). */
function buildTable(c: usize): void {
  const fp = c + C_FP;
  const n = limbs(c);
  const L = <usize>n << 2;
  const stride: usize = 2 * L;
  const step = load<i32>(c + C_STEP);
  const wb = load<i32>(c + C_WB);
  const te = load<i32>(c + C_TE);
  const rows = (load<i32>(c + C_WIN) + step - 1) / step;
  const table = load<usize>(c + C_TABLE);
  // TB_BASE = G (projective, Z = 1)
  memory.fill(TB_BASE, 0, PT);
  memory.copy(TB_BASE, c + C_GX, L);
  memory.copy(TB_BASE + FE, c + C_GY, L);
  memory.copy(TB_BASE + 2 * FE, fp + MD_ONE, L);
  oddMultiples(c, WS, TB_BASE, GODD_COUNT);
  batchToAffine(c, WS, GODD_COUNT, load<usize>(c + C_GODD), stride, L);
  for (let w = 0; w < rows; w++) {
    // entries j * base, j = 1..te (none is infinity: j * base is a multiple of G below n)
    memory.copy(WS, TB_BASE, PT);
    for (let j = 1; j < te; j++) padd(c, WS + <usize>j * PT, WS + <usize>(j - 1) * PT, TB_BASE);
    // next base = 2^(wb * step) * base = 2 * (te * base), then the remaining doublings
    pdbl(c, TB_BASE, WS + <usize>(te - 1) * PT);
    for (let i = wb; i < wb * step; i++) pdbl(c, TB_BASE, TB_BASE);
    batchToAffine(c, WS, te, table + <usize>w * <usize>te * stride, stride, L);
  }
  store<i32>(c + C_READY, 1);
}

const SEL = memory.data(96); // selected entry: x then y (L bytes each)
const SEL_NY = memory.data(48);
const ZERO = memory.data(48);

// ---- encoding / validation (public data) ------------------------------------

const DP_RAW = memory.data(48);
const DP_RHS = memory.data(48);
const DP_T = memory.data(48);

/** y^2 = x^3 - 3x + b (Montgomery form); writes the right-hand side into out. */
function curveRhs(c: usize, out: usize, x: usize): void {
  const fp = c + C_FP;
  mmul(DP_T, x, x, fp);
  mmul(DP_T, DP_T, x, fp);
  msub(DP_T, DP_T, x, fp);
  msub(DP_T, DP_T, x, fp);
  msub(DP_T, DP_T, x, fp);
  madd(out, DP_T, c + C_B, fp);
}

/**
 * Decodes a SEC1 point (0x04 || X || Y or 0x02/0x03 || X) of PUBLIC data into
 * projective r (Z = 1). Returns 0 when valid, 1 when malformed or not on the curve.
 */
export function decodePoint(c: usize, r: usize, src: usize, len: i32): i32 {
  const fp = c + C_FP;
  const n = limbs(c);
  const L = n << 2;
  if (len < 1) return 1;
  const tag = load<u8>(src);
  memory.fill(r, 0, PT);
  const x = r, y = r + FE;
  if (tag == 4 && len == 1 + 2 * L) {
    fromBytes(DP_RAW, src + 1, n);
    if (!ltMask(DP_RAW, fp + MD_M, n)) return 1;
    toMont(x, DP_RAW, fp);
    fromBytes(DP_RAW, src + 1 + <usize>L, n);
    if (!ltMask(DP_RAW, fp + MD_M, n)) return 1;
    toMont(y, DP_RAW, fp);
    curveRhs(c, DP_RHS, x);
    mmul(DP_T, y, y, fp);
    if (!eqMask(DP_T, DP_RHS, n)) return 1;
  } else if ((tag == 2 || tag == 3) && len == 1 + L) {
    fromBytes(DP_RAW, src + 1, n);
    if (!ltMask(DP_RAW, fp + MD_M, n)) return 1;
    toMont(x, DP_RAW, fp);
    curveRhs(c, DP_RHS, x);
    mpow(y, DP_RHS, c + C_SQRT, fp);
    mmul(DP_T, y, y, fp);
    if (!eqMask(DP_T, DP_RHS, n)) return 1;
    fromMont(DP_RAW, y, fp);
    if ((load<u32>(DP_RAW) & 1) != <u32>(tag & 1)) {
      memory.fill(DP_T, 0, FE);
      msub(y, DP_T, y, fp);
    }
  } else {
    return 1;
  }
  memory.copy(r + 2 * FE, fp + MD_ONE, FE);
  return 0;
}

const EP_X = memory.data(48);
const EP_Y = memory.data(48);

// ---- Jacobian coordinates ---------------------------------------------------
// (X : Y : Z) stands for (X/Z^2, Y/Z^3); infinity has Z = 0. Used where the
// incomplete formulas are provably safe (the P-256 fixed-base comb and the
// variable-base window, see mulBaseCt and mulVarJac) or on public data with
// explicit special cases (verification).

const JD = memory.data(48);
const JG = memory.data(48);
const JB = memory.data(48);
const JA = memory.data(48);
const JT = memory.data(48);
const JX = memory.data(48);
const JY = memory.data(48);
const JZ = memory.data(48);

/** r = 2p (dbl-2001-b, a = -3). Infinity doubles to infinity. Constant time. */
export function jdbl(c: usize, r: usize, p: usize): void {
  const fp = c + C_FP;
  const X = p, Y = p + FE, Z = p + 2 * FE;
  msqr(JD, Z, fp); // delta
  msqr(JG, Y, fp); // gamma
  mmul(JB, X, JG, fp); // beta
  msub(JT, X, JD, fp);
  madd(JA, X, JD, fp);
  mmul(JA, JT, JA, fp);
  madd(JT, JA, JA, fp);
  madd(JA, JT, JA, fp); // alpha = 3 (X - delta)(X + delta)
  madd(JZ, Y, Z, fp);
  msqr(JZ, JZ, fp);
  msub(JZ, JZ, JG, fp);
  msub(JZ, JZ, JD, fp); // Z3 = (Y + Z)^2 - gamma - delta
  madd(JB, JB, JB, fp);
  madd(JB, JB, JB, fp); // 4 beta
  msqr(JX, JA, fp);
  msub(JX, JX, JB, fp);
  msub(JX, JX, JB, fp); // X3 = alpha^2 - 8 beta
  msub(JT, JB, JX, fp);
  mmul(JY, JA, JT, fp);
  msqr(JG, JG, fp);
  madd(JG, JG, JG, fp);
  madd(JG, JG, JG, fp);
  madd(JG, JG, JG, fp); // 8 gamma^2
  msub(JY, JY, JG, fp); // Y3 = alpha (4 beta - X3) - 8 gamma^2
  memory.copy(r, JX, FE);
  memory.copy(r + FE, JY, FE);
  memory.copy(r + 2 * FE, JZ, FE);
}

const JZZ = memory.data(48);
const JU = memory.data(48);
const JS = memory.data(48);
const JH = memory.data(48);
const JHH = memory.data(48);
const JI = memory.data(48);
const JJ = memory.data(48);
const JR = memory.data(48);
const JV = memory.data(48);

/**
 * Core of madd-2007-bl: r = p + (x2, y2) for p != +-(x2, y2) and p not infinity.
 * Leaves H and 2(S2 - Y1) in JH and JR for the callers' special-case checks.
 */
function jaddMixedCore(c: usize, r: usize, p: usize, x2: usize, y2: usize): void {
  const fp = c + C_FP;
  const X1 = p, Y1 = p + FE, Z1 = p + 2 * FE;
  msqr(JZZ, Z1, fp);
  mmul(JU, x2, JZZ, fp); // U2
  mmul(JS, Z1, JZZ, fp);
  mmul(JS, y2, JS, fp); // S2
  msub(JH, JU, X1, fp); // H
  msqr(JHH, JH, fp);
  madd(JI, JHH, JHH, fp);
  madd(JI, JI, JI, fp); // I = 4 HH
  mmul(JJ, JH, JI, fp); // J
  msub(JR, JS, Y1, fp);
  madd(JR, JR, JR, fp); // r = 2 (S2 - Y1)
  mmul(JV, X1, JI, fp); // V
  msqr(JX, JR, fp);
  msub(JX, JX, JJ, fp);
  msub(JX, JX, JV, fp);
  msub(JX, JX, JV, fp); // X3 = r^2 - J - 2V
  madd(JZ, Z1, JH, fp);
  msqr(JZ, JZ, fp);
  msub(JZ, JZ, JZZ, fp);
  msub(JZ, JZ, JHH, fp); // Z3 = (Z1 + H)^2 - Z1Z1 - HH
  msub(JT, JV, JX, fp);
  mmul(JY, JR, JT, fp);
  mmul(JT, Y1, JJ, fp);
  msub(JY, JY, JT, fp);
  msub(JY, JY, JT, fp); // Y3 = r (V - X3) - 2 Y1 J
  memory.copy(r, JX, FE);
  memory.copy(r + FE, JY, FE);
  memory.copy(r + 2 * FE, JZ, FE);
}

const JP = memory.data(<i32>PT);

/** Variable-time r = p + (x2, y2) on PUBLIC data, all cases handled. r may alias p. */
export function jaddMixedVar(c: usize, r: usize, p: usize, x2: usize, y2: usize): void {
  const fp = c + C_FP;
  const n = limbs(c);
  if (isZeroMask(p + 2 * FE, n)) {
    memory.copy(r, x2, FE);
    memory.copy(r + FE, y2, FE);
    memory.copy(r + 2 * FE, fp + MD_ONE, FE);
    return;
  }
  memory.copy(JP, p, PT);
  jaddMixedCore(c, r, JP, x2, y2);
  if (isZeroMask(JH, n)) {
    if (isZeroMask(JR, n)) {
      // p == q: double q
      memory.copy(JP, x2, FE);
      memory.copy(JP + FE, y2, FE);
      memory.copy(JP + 2 * FE, fp + MD_ONE, FE);
      jdbl(c, r, JP);
    } else {
      memory.fill(r, 0, PT); // p == -q
      memory.copy(r + FE, fp + MD_ONE, FE);
    }
  }
}

const JC_T = memory.data(<i32>PT);
const DIGITS = memory.data(100); // signed digits of a secret scalar (public positions)

/**
 * Signed recoding of a SECRET scalar k < n into WIN digits of WB bits,
 * d_w in [-2^(WB-1), 2^(WB-1)], k = sum d_w 2^(WB w), with arithmetic only
 * (branches and addresses depend on the window position, never on k).
 */
function recodeSigned(c: usize, k: usize): void {
  const n = limbs(c);
  const wb = load<i32>(c + C_WB);
  const win = load<i32>(c + C_WIN);
  const half = 1 << (wb - 1);
  const mask: u32 = (1 << wb) - 1;
  let carry: i32 = 0;
  for (let w = 0; w < win; w++) {
    const bit = w * wb;
    const idx = bit >> 5;
    const sh = <u32>(bit & 31);
    let bits: u32 = idx < n ? load<u32>(k + (<usize>idx << 2)) >> sh : 0;
    if (sh + <u32>wb > 32 && idx + 1 < n) bits |= load<u32>(k + (<usize>(idx + 1) << 2)) << (32 - sh);
    const v = <i32>(bits & mask) + carry; // 0..2^wb
    carry = (v + half - 1) >> wb;
    store<i8>(DIGITS + <usize>w, <i8>(v - (carry << wb)));
  }
}

/**
 * SIMD build, 64-byte entries (P-256): SEL = entry mag of the row (entry 1 when
 * mag is 0), reading all te entries and keeping one by a mask (v128.bitselect).
 */
function selectRow64(row: usize, mag: u32, te: u32): void {
  let s0 = v128.load(row, 0);
  let s1 = v128.load(row, 16);
  let s2 = v128.load(row, 32);
  let s3 = v128.load(row, 48);
  for (let j: u32 = 2; j <= te; j++) {
    const m = i32x4.splat(<i32>((<u64>(mag ^ j) - 1) >> 32));
    const e = row + <usize>(j - 1) * 64;
    s0 = v128.bitselect(v128.load(e, 0), s0, m);
    s1 = v128.bitselect(v128.load(e, 16), s1, m);
    s2 = v128.bitselect(v128.load(e, 32), s2, m);
    s3 = v128.bitselect(v128.load(e, 48), s3, m);
  }
  v128.store(SEL, s0, 0);
  v128.store(SEL, s1, 16);
  v128.store(SEL, s2, 32);
  v128.store(SEL, s3, 48);
}

/**
 * Loads digit * (row base) into SEL (x then y, affine) by scanning all entries
 * of the row with masks and negating y by mask; returns all ones when digit != 0.
 */
function selectEntry(c: usize, row: usize, digit: i32): u32 {
  const fp = c + C_FP;
  const L = <usize>limbs(c) << 2;
  const stride: usize = 2 * L;
  const te = <u32>load<i32>(c + C_TE);
  const neg = digit >> 31;
  const mag = <u32>((digit ^ neg) - neg);
  if (ASC_FEATURE_SIMD && stride == 64) {
    selectRow64(row, mag, te);
  } else {
    memory.copy(SEL, row, stride);
    for (let j: u32 = 2; j <= te; j++) {
      const mask = <u32>((<u64>(mag ^ j) - 1) >> 32);
      cmovBytes(SEL, row + <usize>(j - 1) * stride, mask, stride);
    }
  }
  msub(SEL_NY, ZERO, SEL + L, fp);
  cmovBytes(SEL + L, SEL_NY, <u32>neg, L);
  return ~<u32>((<u64>mag - 1) >> 32);
}

/**
 * r = k * G in Jacobian coordinates for a SECRET scalar k (< n). Constant time:
 * every window scans its whole table row by mask and always adds.
 *
 * P-256 (one row per 6-bit window) uses the incomplete Jacobian mixed
 * addition, which is safe here. Before window w the accumulator is A = k_w G
 * with |k_w| <= 32 (64^w - 1) / 63 < 64^w, the entry is E = d 64^w G with
 * 1 <= |d| <= 32, so k_w -+ d 64^w is never 0 and, for w <= 41, its size is
 * below 2^251 (1 + 1/63) < n: A != +-E. In the top window 42 (bits 252..255 and
 * the carry) 1 <= d <= 16 and k_w + d 2^252 = k, so A == -E would need k == 0,
 * and A == E would need k == d 2^253 mod n, a value whose top digit is not d
 * (checked for every d by the tests' recoding of those 16 scalars). An
 * accumulator at infinity is handled by mask; a dropped addition (d == 0) may
 * compute garbage, which the mask discards.
 *
 * P-384 (rows for every third 4-bit window) uses the complete projective
 * formulas: three passes (windows 2, 1, 0 mod 3) joined by four doublings, so
 * no exceptional case needs an argument; the result is converted to Jacobian.
 */
export function mulBaseCt(c: usize, r: usize, k: usize): void {
  if (load<i32>(c + C_READY) == 0) buildTable(c);
  const fp = c + C_FP;
  const n = limbs(c);
  const L = <usize>n << 2;
  const rowBytes = <usize>load<i32>(c + C_TE) * 2 * L;
  const table = load<usize>(c + C_TABLE);
  const win = load<i32>(c + C_WIN);
  const step = load<i32>(c + C_STEP);
  recodeSigned(c, k);
  if (step == 1) {
    memory.fill(r, 0, PT); // infinity: Z = 0
    for (let w = 0; w < win; w++) {
      const use = selectEntry(c, table + <usize>w * rowBytes, <i32>load<i8>(DIGITS + <usize>w));
      const inf = isZeroMask(r + 2 * FE, n);
      jaddMixedCore(c, JC_T, r, SEL, SEL + L);
      // accumulator at infinity: the sum is the entry itself
      cmovBytes(JC_T, SEL, inf, L);
      cmovBytes(JC_T + FE, SEL + L, inf, L);
      cmovBytes(JC_T + 2 * FE, fp + MD_ONE, inf, L);
      cmovBytes(r, JC_T, use, PT);
    }
  } else {
    const wb = load<i32>(c + C_WB);
    pinf(c, r);
    for (let pass = step - 1; pass >= 0; pass--) {
      for (let w = pass; w < win; w += step) {
        const use = selectEntry(c, table + <usize>(w / step) * rowBytes, <i32>load<i8>(DIGITS + <usize>w));
        paddMixed(c, JC_T, r, SEL, SEL + L);
        cmovBytes(r, JC_T, use, PT);
      }
      if (pass > 0) for (let i = 0; i < wb; i++) pdbl(c, r, r);
    }
    // projective (X : Y : Z) -> Jacobian (X Z : Y Z^2 : Z)
    mmul(r, r, r + 2 * FE, fp);
    msqr(JC_T, r + 2 * FE, fp);
    mmul(r + FE, r + FE, JC_T, fp);
  }
  memory.fill(DIGITS, 0, 100);
}

const JI2 = memory.data(48);
/** Affine (Montgomery form) of a Jacobian point; all ones if infinity. Constant time. */
export function jToAffine(c: usize, x: usize, y: usize, p: usize): u32 {
  const fp = c + C_FP;
  minv(ZI, p + 2 * FE, fp);
  msqr(JI2, ZI, fp);
  mmul(x, p, JI2, fp);
  mmul(JI2, JI2, ZI, fp);
  mmul(y, p + FE, JI2, fp);
  return isZeroMask(p + 2 * FE, limbs(c));
}

/** 0x04 || X || Y of a Jacobian point; returns 1 if infinity. */
export function encodeJacobian(c: usize, dst: usize, p: usize): i32 {
  const fp = c + C_FP;
  const n = limbs(c);
  const inf = jToAffine(c, EP_X, EP_Y, p);
  store<u8>(dst, 4);
  fromMont(EP_X, EP_X, fp);
  fromMont(EP_Y, EP_Y, fp);
  toBytes(dst + 1, EP_X, n);
  toBytes(dst + 1 + (<usize>n << 2), EP_Y, n);
  return <i32>(inf & 1);
}

// ---- verification: u1 G + u2 Q on public data (variable time) ---------------

const VQA = memory.data(8 * 96); // affine Q, 3Q, ..., 15Q: x || y, 48 bytes each
const VK = memory.data(64); // scalar being recoded (n + 1 limbs)
const VNAF1 = memory.data(400); // wNAF digits of u1, one i8 each
const VNAF2 = memory.data(400); // wNAF digits of u2
const VNY = memory.data(48);

/** wNAF of the n-limb PUBLIC scalar k with the given width into out; returns the digit count. */
function wnaf(k: usize, n: i32, width: u32, out: usize): i32 {
  memory.fill(VK, 0, 64);
  memory.copy(VK, k, <usize>n << 2);
  const full: i32 = 1 << width;
  let len = 0;
  for (;;) {
    let any: u32 = 0;
    for (let i = 0; i <= n; i++) any |= load<u32>(VK + (<usize>i << 2));
    if (any == 0) break;
    let d: i32 = 0;
    const low = load<u32>(VK);
    if (low & 1) {
      d = <i32>(low & <u32>(full - 1));
      if (d >= full >> 1) d -= full;
      // k -= d (|d| < 2^(width-1)): subtract or add a small value with carry
      let acc: i64 = <i64>low - <i64>d;
      store<u32>(VK, <u32>acc);
      let carry: i64 = acc >> 32;
      for (let i = 1; i <= n; i++) {
        acc = <i64>load<u32>(VK + (<usize>i << 2)) + carry;
        store<u32>(VK + (<usize>i << 2), <u32>acc);
        carry = acc >> 32;
      }
    }
    store<i8>(out + <usize>len, <i8>d);
    len++;
    // k >>= 1
    for (let i = 0; i <= n; i++) {
      const cur = load<u32>(VK + (<usize>i << 2));
      const next: u32 = i < n ? load<u32>(VK + (<usize>(i + 1) << 2)) : 0;
      store<u32>(VK + (<usize>i << 2), (cur >> 1) | (next << 31));
    }
  }
  return len;
}

/** r += digit * (odd-multiple table entry), variable time (public data). */
function addOddVar(c: usize, r: usize, tab: usize, stride: usize, yOff: usize, d: i32): void {
  if (d == 0) return;
  const e = tab + <usize>((d < 0 ? -d : d) >> 1) * stride;
  if (d < 0) {
    msub(VNY, ZERO, e + yOff, c + C_FP);
    jaddMixedVar(c, r, r, e, VNY);
  } else {
    jaddMixedVar(c, r, r, e, e + yOff);
  }
}

/**
 * r (Jacobian) = u1 * G + u2 * q for PUBLIC scalars u1, u2 (limbs, < n) and a
 * validated affine point q (projective with Z = 1). Variable time: interleaved
 * wNAF, width 7 for G (static odd multiples) and width 5 for q.
 */
export function mulDoubleVar(c: usize, r: usize, u1: usize, q: usize, u2: usize): void {
  if (load<i32>(c + C_READY) == 0) buildTable(c);
  const n = limbs(c);
  const L = <usize>n << 2;
  oddMultiples(c, WS, q, 8);
  batchToAffine(c, WS, 8, VQA, 96, 48);
  const len1 = wnaf(u1, n, 7, VNAF1);
  const len2 = wnaf(u2, n, 5, VNAF2);
  const godd = load<usize>(c + C_GODD);
  memory.fill(r, 0, PT);
  for (let i = (len1 > len2 ? len1 : len2) - 1; i >= 0; i--) {
    if (!isZeroMask(r + 2 * FE, n)) jdbl(c, r, r);
    if (i < len2) addOddVar(c, r, VQA, 96, 48, <i32>load<i8>(VNAF2 + <usize>i));
    if (i < len1) addOddVar(c, r, godd, 2 * L, L, <i32>load<i8>(VNAF1 + <usize>i));
  }
}

const VZ2 = memory.data(48);
const VRM = memory.data(48);
const VRN = memory.data(64);

/**
 * For a Jacobian point p (PUBLIC) and r < n: 1 when x(p) mod n == r, without
 * an inversion: checks X == r Z^2, and X == (r + n) Z^2 when r + n < p.
 */
export function jCheckX(c: usize, p: usize, r: usize): i32 {
  const fp = c + C_FP;
  const n = limbs(c);
  if (isZeroMask(p + 2 * FE, n)) return 0;
  msqr(VZ2, p + 2 * FE, fp);
  toMont(VRM, r, fp);
  mmul(VRM, VRM, VZ2, fp);
  if (eqMask(VRM, p, n)) return 1;
  // r + n, as an integer
  let carry: u64 = 0;
  const order = c + C_FN + MD_M;
  for (let i = 0; i < n; i++) {
    const s = <u64>load<u32>(r + (<usize>i << 2)) + <u64>load<u32>(order + (<usize>i << 2)) + carry;
    store<u32>(VRN + (<usize>i << 2), <u32>s);
    carry = s >> 32;
  }
  if (carry != 0 || !ltMask(VRN, fp + MD_M, n)) return 0;
  toMont(VRM, VRN, fp);
  mmul(VRM, VRM, VZ2, fp);
  return eqMask(VRM, p, n) ? 1 : 0;
}

const MJ_AFF = memory.data(15 * 96); // affine x || y, 48 bytes each
const MJ_SEL = memory.data(96);
const MJ_T = memory.data(<i32>PT);

/**
 * r (Jacobian) = k * q for a SECRET scalar k (< n) and a validated point q
 * (projective, Z = 1). Constant time: fixed 4-bit windows from the top, four
 * doublings, a masked scan of the 15 affine multiples, an addition kept by mask.
 * The incomplete mixed addition is safe: before adding digit d the accumulator
 * is 16 A q with 16 A + d <= k < n, so it is never +-d q unless both are zero
 * (accumulator at infinity, handled by mask; d = 0, result discarded).
 */
export function mulVarJac(c: usize, r: usize, q: usize, k: usize): void {
  const fp = c + C_FP;
  const n = limbs(c);
  const L = <usize>n << 2;
  // multiples j q (j = 1..15) with complete formulas, then affine by one batch inversion
  memory.copy(WS, q, PT);
  for (let j = 1; j < 15; j++) padd(c, WS + <usize>j * PT, WS + <usize>(j - 1) * PT, q);
  batchToAffine(c, WS, 15, MJ_AFF, 96, 48);
  memory.fill(r, 0, PT);
  for (let w = n * 8 - 1; w >= 0; w--) {
    jdbl(c, r, r);
    jdbl(c, r, r);
    jdbl(c, r, r);
    jdbl(c, r, r);
    const digit = (load<u32>(k + (<usize>(w >> 3) << 2)) >> (<u32>(w & 7) << 2)) & 15;
    memory.copy(MJ_SEL, MJ_AFF, 96);
    for (let j: u32 = 2; j <= 15; j++) {
      const mask = <u32>((<u64>(digit ^ j) - 1) >> 32);
      cmovBytes(MJ_SEL, MJ_AFF + <usize>(j - 1) * 96, mask, 96);
    }
    const inf = isZeroMask(r + 2 * FE, n);
    jaddMixedCore(c, MJ_T, r, MJ_SEL, MJ_SEL + 48);
    cmovBytes(MJ_T, MJ_SEL, inf, L);
    cmovBytes(MJ_T + FE, MJ_SEL + 48, inf, L);
    cmovBytes(MJ_T + 2 * FE, fp + MD_ONE, inf, L);
    const use = ~<u32>((<u64>digit - 1) >> 32);
    cmovBytes(r, MJ_T, use, PT);
  }
}
