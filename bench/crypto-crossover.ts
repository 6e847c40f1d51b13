/**
 * Crossover benchmark: wasm vs webcrypto providers, called through the provider interface
 * exactly as the dispatcher calls them, for input sizes 64 B .. 4 MiB. Prints a table of
 * throughput per size and, per operation, the smallest size from which webcrypto stays faster:
 * the values to put in `MEASURED_CROSSOVERS` (src/crypto/dispatcher.ts).
 *
 * Run: npx bun bench/crypto-crossover.ts [--quick]
 */
import { measure, printTable, type Row } from "./lib.ts";
import { rawKey, type CryptoProvider } from "../src/crypto/provider.ts";
import { createWasmProvider } from "../src/crypto/wasm-provider.ts";
import { createWebCryptoProvider } from "../src/crypto/webcrypto.ts";
import { wasmVariant } from "../src/crypto/wasm.ts";

const quick = process.argv.includes("--quick");
const SIZES = [64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304];
const fmtSize = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`);

const wasm = createWasmProvider();
const web = createWebCryptoProvider();
const key = rawKey("aes", crypto.getRandomValues(new Uint8Array(32)));
const macKey = rawKey("secret", crypto.getRandomValues(new Uint8Array(32)));
const iv = crypto.getRandomValues(new Uint8Array(12));

type Case = { op: string; run: (p: CryptoProvider, data: Uint8Array, sealed: Uint8Array) => Promise<unknown> };
const CASES: Case[] = [
  { op: "aesGcmEncrypt", run: (p, d) => p.aesGcmEncrypt(key, iv, d) },
  { op: "aesGcmDecrypt", run: (p, _d, s) => p.aesGcmDecrypt(key, iv, s) },
  { op: "digest", run: (p, d) => p.digest("SHA-256", d) },
  { op: "hmac", run: (p, d) => p.hmac("SHA-256", macKey, d) },
];

const rows: Row[] = [];
const crossovers: Record<string, number | null> = {};
for (const c of CASES) {
  const ratios: number[] = [];
  for (const size of SIZES) {
    const data = crypto.getRandomValues(new Uint8Array(Math.min(size, 65536)));
    const full = size > 65536 ? new Uint8Array(size).map((_, i) => data[i % data.length] as number) : data;
    const sealed = await web.aesGcmEncrypt(key, iv, full);
    // Larger inputs need fewer iterations: shorter rounds keep the whole run under a minute.
    const minMs = quick ? 20 : size >= 1 << 20 ? 150 : 60;
    const w = await measure(() => c.run(wasm, full, sealed), { minMs, rounds: quick ? 3 : 5 });
    const n = await measure(() => c.run(web, full, sealed), { minMs, rounds: quick ? 3 : 5 });
    rows.push({ group: `${c.op} ${fmtSize(size)}`, name: `wasm (${wasmVariant()})`, opsPerSec: w });
    rows.push({ group: `${c.op} ${fmtSize(size)}`, name: "webcrypto", opsPerSec: n, anchor: "wasm", ratio: n / w });
    ratios.push(n / w);
  }
  // The crossover: the first size from which webcrypto is faster at every larger size,
  // interpolated on log(size) / log(ratio) between it and the grid point below it.
  let idx: number | null = null;
  for (let i = SIZES.length - 1; i >= 0 && (ratios[i] as number) >= 1; i--) idx = i;
  if (idx === null || idx === 0) crossovers[c.op] = idx;
  else {
    const [s1, s2] = [SIZES[idx - 1] as number, SIZES[idx] as number];
    const [r1, r2] = [Math.log(ratios[idx - 1] as number), Math.log(ratios[idx] as number)];
    crossovers[c.op] = Math.round(s1 * (s2 / s1) ** (r2 === r1 ? 1 : -r1 / (r2 - r1)));
  }
}

// Size-independent operations: which provider to prefer outright.
const prefer: Record<string, string> = {};
const msg = crypto.getRandomValues(new Uint8Array(64));
for (const curve of ["P-256", "P-384"] as const) {
  const wk = await wasm.generateEcKeyPair(curve);
  const nk = await web.generateEcKeyPair(curve);
  const sig = await web.sign(nk.privateKey, "SHA-256", msg);
  const ops: [string, (p: CryptoProvider, k: typeof wk) => Promise<unknown>][] = [
    ["sign", (p, k) => p.sign(k.privateKey, "SHA-256", msg)],
    ["verify", (p) => p.verify(nk.publicKey, "SHA-256", msg, sig)],
    ["ecdh", (p, k) => p.ecdh(k.privateKey, nk.publicKey.material)],
  ];
  for (const [op, run] of ops) {
    const w = await measure(() => run(wasm, wk), { minMs: quick ? 20 : 60, rounds: 3 });
    const n = await measure(() => run(web, nk), { minMs: quick ? 20 : 60, rounds: 3 });
    rows.push({ group: `${op} ${curve}`, name: `wasm (${wasmVariant()})`, opsPerSec: w });
    rows.push({ group: `${op} ${curve}`, name: "webcrypto", opsPerSec: n, anchor: "wasm", ratio: n / w });
    prefer[`${op} ${curve}`] = n >= w ? "webcrypto" : "wasm";
  }
}

printTable(`crypto providers through the CryptoProvider interface (${process.versions.bun ? `Bun ${process.versions.bun}` : "node"})`, rows);
console.log("\ncrossovers (use wasm below, webcrypto at or above):");
for (const [op, bytes] of Object.entries(crossovers)) {
  console.log(`  ${op}: ${bytes === null ? "wasm is faster at every size" : bytes === 0 ? "webcrypto is faster at every size" : `${bytes} bytes`}`);
}
console.log("\nsize-independent operations (prefer):");
for (const [op, name] of Object.entries(prefer)) console.log(`  ${op}: ${name}`);
