// Generates aes-simd-rounds.ts: the SIMD AES rounds over bit planes and the
// key schedule's SubWord, with the Boyar–Peralta S-box circuit written out.
// Run: node wasm/assembly/sym/gen-aes.mjs
// The round loop is kept one round long on purpose: a fixsliced, four-round
// body ran ~15% slower on Bun, as the engine left the larger function unoptimised.
import { writeFileSync } from "node:fs";

// S-box circuit (Boyar–Peralta, 113 gates) on inputs x0 (MSB) .. x7 (LSB).
// The four XNOR outputs (s1, s2, s6, s7) are plain XORs here: their complement
// (0x63) is folded into round keys 1..n by the key schedule.
const SBOX = `
y14 = x3 ^ x5; y13 = x0 ^ x6; y9 = x0 ^ x3; y8 = x0 ^ x5; t0 = x1 ^ x2;
y1 = t0 ^ x7; y4 = y1 ^ x3; y12 = y13 ^ y14; y2 = y1 ^ x0; y5 = y1 ^ x6; y3 = y5 ^ y8;
t1 = x4 ^ y12; y15 = t1 ^ x5; y20 = t1 ^ x1; y6 = y15 ^ x7; y10 = y15 ^ t0;
y11 = y20 ^ y9; y7 = x7 ^ y11; y17 = y10 ^ y11; y19 = y10 ^ y8;
y16 = t0 ^ y11; y21 = y13 ^ y16; y18 = x0 ^ y16;
t2 = y12 & y15; t3 = y3 & y6; t4 = t3 ^ t2; t5 = y4 & x7; t6 = t5 ^ t2;
t7 = y13 & y16; t8 = y5 & y1; t9 = t8 ^ t7; t10 = y2 & y7; t11 = t10 ^ t7;
t12 = y9 & y11; t13 = y14 & y17; t14 = t13 ^ t12; t15 = y8 & y10; t16 = t15 ^ t12;
t17 = t4 ^ t14; t18 = t6 ^ t16; t19 = t9 ^ t14; t20 = t11 ^ t16;
t21 = t17 ^ y20; t22 = t18 ^ y19; t23 = t19 ^ y21; t24 = t20 ^ y18;
t25 = t21 ^ t22; t26 = t21 & t23; t27 = t24 ^ t26; t28 = t25 & t27; t29 = t28 ^ t22;
t30 = t23 ^ t24; t31 = t22 ^ t26; t32 = t31 & t30; t33 = t32 ^ t24; t34 = t23 ^ t33;
t35 = t27 ^ t33; t36 = t24 & t35; t37 = t36 ^ t34; t38 = t27 ^ t36; t39 = t29 & t38;
t40 = t25 ^ t39;
t41 = t40 ^ t37; t42 = t29 ^ t33; t43 = t29 ^ t40; t44 = t33 ^ t37; t45 = t42 ^ t41;
z0 = t44 & y15; z1 = t37 & y6; z2 = t33 & x7; z3 = t43 & y16; z4 = t40 & y1;
z5 = t29 & y7; z6 = t42 & y11; z7 = t45 & y17; z8 = t41 & y10; z9 = t44 & y12;
z10 = t37 & y3; z11 = t33 & y4; z12 = t43 & y13; z13 = t40 & y5; z14 = t29 & y2;
z15 = t42 & y9; z16 = t45 & y14; z17 = t41 & y8;
t46 = z15 ^ z16; t47 = z10 ^ z11; t48 = z5 ^ z13; t49 = z9 ^ z10; t50 = z2 ^ z12;
t51 = z2 ^ z5; t52 = z7 ^ z8; t53 = z0 ^ z3; t54 = z6 ^ z7; t55 = z16 ^ z17;
t56 = z12 ^ t48; t57 = t50 ^ t53; t58 = z4 ^ t46; t59 = z3 ^ t54; t60 = t46 ^ t57;
t61 = z14 ^ t57; t62 = t52 ^ t58; t63 = t49 ^ t58; t64 = z4 ^ t59; t65 = t61 ^ t62;
t66 = z1 ^ t63;
s0 = t59 ^ t63; s6 = t56 ^ t62; s7 = t48 ^ t60;
t67 = t64 ^ t65;
s3 = t53 ^ t66; s4 = t51 ^ t66; s5 = t47 ^ t65;
s1 = t64 ^ s3; s2 = t55 ^ t67;
`.trim().split(/;\s*/).filter(Boolean).map((g) => {
  const m = /^(\w+) = (\w+) ([&^]) (\w+)$/.exec(g.trim());
  if (!m) throw new Error(`bad gate ${g}`);
  return { dst: m[1], a: m[2], op: m[3], b: m[4] };
});

// The x/y inputs of the circuit's AND layer z0..z17 are computed early, then
// wait through the long middle part. Stored to scratch memory when computed and
// reloaded for the z layer, so the engine's register allocator does not spill
// values on the critical path instead (measured on Bun: ~18% fewer cycles per
// S-box alone, ~8% faster rounds).
const Z_START = SBOX.findIndex((g) => g.dst === "z0");
const Z_IN = [...new Set(SBOX.slice(Z_START).filter((g) => g.dst.startsWith("z")).flatMap((g) => [g.a, g.b]))]
  .filter((v) => /^[xy]/.test(v));
const slot = (v) => 16 * Z_IN.indexOf(v);

// Emits the S-box gates; with `park`, the z layer's inputs go through memory at YV.
function sbox(ind, park) {
  const out = [];
  const parked = (v) => park && Z_IN.includes(v);
  for (const v of Z_IN) if (park && v.startsWith("x")) out.push(`${ind}v128.store(YV, ${v}, ${slot(v)});`);
  SBOX.forEach((g, i) => {
    const use = (v) => (i >= Z_START && parked(v) ? `v128.load(YV, ${slot(v)})` : v);
    out.push(`${ind}const ${g.dst} = v128.${g.op === "&" ? "and" : "xor"}(${use(g.a)}, ${use(g.b)});`);
    if (parked(g.dst)) out.push(`${ind}v128.store(YV, ${g.dst}, ${slot(g.dst)});`);
  });
  return out;
}

// Byte p = 4 * column + row of a plane. ShiftRows: (r, c) takes (r, c + r);
// rot1: (r, c) takes (r + 1, c); rot2: (r, c) takes (r + 2, c).
const idx = (f) => Array.from({ length: 16 }, (_, p) => f(p & 3, p >> 2));
const SR = idx((r, c) => 4 * ((c + r) & 3) + r);
const ROT1 = idx((r, c) => 4 * c + ((r + 1) & 3));
const ROT2 = idx((r, c) => 4 * c + ((r + 2) & 3));
const ROT1_SR = ROT1.map((i) => SR[i]);
const shuf = (v, perm) => `v128.shuffle<u8>(${v}, ${v}, ${perm.join(", ")})`;

// Emits one round: S-box, ShiftRows, then MixColumns (unless `last`) and the key.
function round(last, ind) {
  const out = [];
  // Plane i is bit i: the circuit's x0 (MSB) is plane 7.
  for (let i = 0; i < 8; i++) out.push(`${ind}const x${i} = p${7 - i};`);
  // Output bit i of the S-box is s(7 - i).
  if (last) {
    out.push(...sbox(ind, true));
    for (let i = 0; i < 8; i++) out.push(`${ind}p${i} = v128.xor(${shuf(`s${7 - i}`, SR)}, v128.load(k, ${16 * i}));`);
    return out;
  }
  // MixColumns: out = 2(a0 ^ a1) ^ a1 ^ (a2 ^ a3); doubling feeds u7 into
  // bits 0, 1, 3, 4. Plane 7 first, then 0..6, so each u dies one plane later.
  const mix = (i) => {
    out.push(`${ind}const r${i} = ${shuf(`s${7 - i}`, ROT1_SR)};`);
    out.push(`${ind}const u${i} = v128.xor(${shuf(`s${7 - i}`, SR)}, r${i});`);
  };
  const outPlane = (i) => {
    const terms = [];
    if (i > 0) terms.push(`u${i - 1}`);
    if (i === 0 || i === 1 || i === 3 || i === 4) terms.push("u7");
    terms.push(`r${i}`);
    let e = `v128.load(k, ${16 * i})`;
    for (const t of terms) e = `v128.xor(${e}, ${t})`;
    out.push(`${ind}p${i} = v128.xor(${e}, ${shuf(`u${i}`, ROT2)});`);
  };
  // Each step goes right after the S-box output it needs, so outputs are
  // consumed early instead of waiting in registers.
  const steps = [[7, () => mix(7)]];
  for (let i = 0; i < 7; i++) steps.push([i, () => mix(i)], [-1, () => outPlane(i)]);
  steps.push([-1, () => outPlane(7)]);
  const ready = new Set();
  for (const line of sbox(ind, true)) {
    out.push(line);
    const m = /const s(\d) = /.exec(line);
    if (m) ready.add(7 - Number(m[1]));
    while (steps.length && (steps[0][0] < 0 || ready.has(steps[0][0]))) steps.shift()[1]();
  }
  return out;
}

function fn(name, doc) {
  const L = [];
  L.push(`/** ${doc} */`);
  L.push(`export function ${name}(q: usize, rk: usize, n: i32): void {`);
  for (let i = 0; i < 8; i++) L.push(`  let p${i} = v128.xor(v128.load(q, ${16 * i}), v128.load(rk, ${16 * i}));`);
  L.push(`  let k = rk;`);
  L.push(`  for (let r = 1; r < n; r++) {`);
  L.push(`    k += 128;`);
  L.push(...round(false, "    "));
  L.push(`  }`);
  L.push(`  {`);
  L.push(`    k += 128;`);
  L.push(...round(true, "    "));
  L.push(`  }`);
  for (let i = 0; i < 8; i++) L.push(`  v128.store(q, p${i}, ${16 * i});`);
  L.push(`}`);
  return L.join("\n");
}

// SubWord of the key schedule on one 32-bit word: the word's bytes become
// planes of 0x00/0xFF bytes, go through the same circuit, and come back through
// i8x16.bitmask (bit p = byte p of a plane).
function subWord() {
  const L = [];
  L.push("/** The AES S-box on each byte of w (key schedule SubWord). */");
  L.push(`export function subWordV(w: u32): u32 {`);
  L.push(`  const k = i32x4.splat(w);`);
  for (let i = 0; i < 8; i++) {
    L.push(`  const m${i} = i32x4.splat(${"0x" + (0x01010101 << i >>> 0).toString(16)});`);
    L.push(`  const x${7 - i} = i8x16.eq(v128.and(k, m${i}), m${i});`);
  }
  // One word, latency-bound: parking would only add store-to-load delay.
  L.push(...sbox("  ", false));
  L.push(`  let y: u32 = 0;`);
  // Bit p of the mask moves to bit 8p (p < 4), then to bit 8p + i for output bit i.
  for (let i = 0; i < 8; i++) {
    L.push(`  y |= (((<u32>i8x16.bitmask(s${7 - i}) & 0xF) * 0x00204081) & 0x01010101) << ${i};`);
  }
  L.push(`  return y ^ 0x63636363;`);
  L.push(`}`);
  return L.join("\n");
}

const header = `// Generated by gen-aes.mjs: AES rounds over bit planes (SIMD build only).
// Constant time: only XOR, AND, fixed byte shuffles and byte compares on v128
// values, loads and stores at fixed addresses, and (SubWord) a mask-to-bits
// step by multiplication; no table lookups, no branches or memory indices
// depending on keys or data.
//
// Scratch for S-box values parked between the circuit's layers (secret: wiped
// by aesWipe).
export const YV_BYTES: i32 = ${16 * Z_IN.length};
export const YV: usize = memory.data(YV_BYTES, 16);

// Layout: eight v128 planes per batch of eight blocks; plane i holds bit i of
// every state byte, byte 4 * column + row of the plane holding that bit for the
// eight blocks. Round keys (n + 1 groups of eight planes at rk) must carry the
// S-box constant 0x63 in rounds 1..n (see aesSetKey).
`;

writeFileSync(
  new URL("./aes-simd-rounds.ts", import.meta.url),
  header + "\n" +
    fn("roundsV", "Encrypts the eight blocks at q (eight planes, in place); n rounds.") + "\n\n" +
    subWord() + "\n",
);
