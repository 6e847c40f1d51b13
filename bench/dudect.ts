/**
 * Constant-time check in the manner of dudect (Reparaz, Balasch, Verbauwhede,
 * "Dude, is my code constant time?", 2017): two input classes (fixed vs random),
 * chosen at random per measurement, each measurement a small batch of calls
 * timed with a high-resolution clock; measurements above several percentiles
 * are cropped as dudect does, and a Welch t-test compares the classes. |t| above
 * 4.5 means a timing difference was detected.
 *
 * Run: npx bun bench/dudect.ts [--n 100000]
 */
import { printTable, type Row } from "./lib.ts";

// Optional: the EC half's benchmarks (a variable specifier, as the file may not exist).
const EC_BENCH: string = "./crypto-ec.ts";
import { wasmCore } from "../src/crypto/wasm.ts";

const clock: () => number =
  typeof Bun !== "undefined" ? () => Number(Bun.nanoseconds()) : () => performance.now() * 1e6;

/** Online mean/variance (Welford). */
class Moments {
  n = 0;
  mean = 0;
  m2 = 0;
  push(x: number): void {
    this.n++;
    const d = x - this.mean;
    this.mean += d / this.n;
    this.m2 += d * (x - this.mean);
  }
  get variance(): number {
    return this.n > 1 ? this.m2 / (this.n - 1) : 0;
  }
}

function welch(a: Moments, b: Moments): number {
  const se = Math.sqrt(a.variance / a.n + b.variance / b.n);
  return se === 0 ? 0 : (a.mean - b.mean) / se;
}

/** Result of one dudect run: the largest |t| over the uncropped and cropped tests. */
export interface DudectResult {
  name: string;
  measurements: number;
  t: number;
  perSecond: number;
}

/**
 * Times `op` for `n` measurements of `batch` calls each. Inputs are laid out
 * beforehand, as dudect does: one buffer of n slots of `fixed.length` bytes,
 * class-0 slots holding `fixed` and class-1 slots random bytes, so both classes
 * cost the same to prepare (the same copy from the same kind of memory). Before
 * each measurement the slot is copied into `work`, which `op` reads.
 */
export function dudectBuffers(
  name: string,
  fixed: Uint8Array,
  work: Uint8Array,
  op: () => void,
  opts: { n?: number; batch?: number } = {},
): DudectResult {
  const n = opts.n ?? 100_000;
  const len = fixed.length;
  const classes = new Uint8Array(n);
  crypto.getRandomValues(classes);
  const inputs = new Uint8Array(n * len);
  for (let off = 0; off < inputs.length; off += 65536) crypto.getRandomValues(inputs.subarray(off, Math.min(off + 65536, inputs.length)));
  for (let i = 0; i < n; i++) {
    classes[i] = classes[i]! & 1;
    if (classes[i] === 0) inputs.set(fixed, i * len);
  }
  return run(name, classes, (i) => work.set(inputs.subarray(i * len, i * len + len)), op, opts.batch ?? 1);
}

/**
 * Times `op` for `n` measurements of `batch` calls each; `prepare(cls, i)` sets
 * up the input of measurement i (untimed). Class 0 is fixed, class 1 random.
 * Prefer dudectBuffers: here the two classes' preparation may cost differently.
 */
export function dudect(
  name: string,
  prepare: (cls: number, i: number) => void,
  op: () => void,
  opts: { n?: number; batch?: number } = {},
): DudectResult {
  const n = opts.n ?? 100_000;
  const classes = new Uint8Array(n);
  crypto.getRandomValues(classes);
  for (let i = 0; i < n; i++) classes[i] = classes[i]! & 1;
  return run(name, classes, (i) => prepare(classes[i]!, i), op, opts.batch ?? 1);
}

function run(name: string, classes: Uint8Array, prepare: (i: number) => void, op: () => void, batch: number): DudectResult {
  const n = classes.length;
  const times = new Float64Array(n);
  // Warm up so the JIT state is the same for both classes.
  for (let i = 0; i < Math.min(n, 5000); i++) {
    prepare(i);
    op();
  }
  const started = clock();
  for (let i = 0; i < n; i++) {
    prepare(i);
    const t0 = clock();
    for (let j = 0; j < batch; j++) op();
    times[i] = clock() - t0;
  }
  const elapsed = (clock() - started) / 1e9;
  // dudect's crops: keep measurements below the percentile p for a spread of p.
  const sorted = Float64Array.from(times).sort();
  const cuts = [Infinity];
  for (let k = 1; k <= 10; k++) cuts.push(sorted[Math.floor((1 - Math.pow(0.5, (10 * k) / 10)) * (n - 1))]!);
  let worst = 0;
  for (const cut of cuts) {
    const a = new Moments();
    const b = new Moments();
    for (let i = 0; i < n; i++) {
      const x = times[i]!;
      if (x >= cut) continue;
      if (classes[i] === 0) a.push(x);
      else b.push(x);
    }
    if (a.n > 100 && b.n > 100) {
      const t = welch(a, b);
      if (Math.abs(t) > Math.abs(worst)) worst = t;
    }
  }
  return { name, measurements: n, t: worst, perSecond: n / elapsed };
}

const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));

/** dudect runs for the symmetric half: AES-GCM encryption and the GCM tag check. */
export function dudectSym(n = 100_000): Row[] {
  const rows: Row[] = [];
  const iv = rnd(12);
  // Encryption: the input is key (32 bytes) then plaintext (64 bytes).
  const work = new Uint8Array(96);
  const key = work.subarray(0, 32);
  const pt = work.subarray(32);
  const enc = dudectBuffers(
    "AES-256-GCM encrypt 64 B, fixed vs random key+plaintext",
    rnd(96),
    work,
    () => {
      wasmCore.aesGcmEncrypt(key, iv, pt);
    },
    { n },
  );
  rows.push({ group: "dudect", name: enc.name, opsPerSec: enc.perSecond, t: enc.t });

  // Tag check: the input is the tag. Fixed: the real tag with its last bit
  // flipped (a 127-bit matching prefix); random: random tags. Both fail, and an
  // early-exit compare would tell them apart.
  const k = rnd(32);
  const sealed = wasmCore.aesGcmEncrypt(k, iv, rnd(64));
  const prefix = sealed.slice(64);
  prefix[15]! ^= 1;
  const input = sealed.slice();
  const tag = dudectBuffers(
    "AES-256-GCM tag check, valid-prefix vs random tag",
    prefix,
    input.subarray(64),
    () => {
      try {
        wasmCore.aesGcmDecrypt(k, iv, input);
      } catch {
        // every input here fails authentication
      }
    },
    { n },
  );
  rows.push({ group: "dudect", name: tag.name, opsPerSec: tag.perSecond, t: tag.t });
  return rows;
}

/** All dudect rows: symmetric, then the EC half's when bench/crypto-ec.ts provides them. */
export async function dudectAll(n = 100_000): Promise<Row[]> {
  const rows = dudectSym(n);
  try {
    const ec = (await import(EC_BENCH)) as { dudectEc?: () => Row[] | Promise<Row[]> };
    if (typeof ec.dudectEc === "function") rows.push(...(await ec.dudectEc()));
  } catch (e) {
    if (!(e instanceof Error && /Cannot find module|not found/i.test(e.message))) throw e;
  }
  return rows;
}

if (import.meta.main) {
  const i = process.argv.indexOf("--n");
  const n = i > 0 ? Number(process.argv[i + 1]) : 100_000;
  printTable("dudect (|t| > 4.5: timing leak detected)", await dudectAll(n));
}
