/**
 * Crypto micro-benchmarks of the WASM core against its anchors: WebCrypto,
 * @noble/ciphers / @noble/hashes, hash-wasm (SHA-256) and native OpenSSL
 * (`openssl speed`, when installed). Each anchor row shows wasm ÷ anchor and the
 * issue's target. EC rows come from bench/crypto-ec.ts and dudect rows from
 * bench/dudect.ts.
 *
 * Run: npx bun bench/crypto.ts [--quick] [--no-dudect]
 */
import { execFileSync } from "node:child_process";
import { gcm } from "@noble/ciphers/aes.js";
import { sha256 as nobleSha256 } from "@noble/hashes/sha2.js";
import { createSHA256 } from "hash-wasm";
import { compareRows, measureMany, printTable, type Row } from "./lib.ts";
import { dudectAll } from "./dudect.ts";
import { wasmCore, wasmVariant } from "../src/crypto/wasm.ts";
import { createCrypto, rawKey } from "../src/crypto/index.ts";

// The dispatcher as services use it (wasm + WebCrypto, measured crossovers).
const dispatcher = await createCrypto();

// Optional: the EC half's benchmarks (a variable specifier, as the file may not exist).
const EC_BENCH: string = "./crypto-ec.ts";
const quick = process.argv.includes("--quick");
const minMs = quick ? 50 : 100;
const rounds = quick ? 3 : 7;
/** Concurrent WebCrypto calls of the informational row. */
const IN_FLIGHT = 16;
const fmtSize = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : n >= 1024 ? `${n >> 10} KiB` : `${n} B`);

/** ops/s from `openssl speed -evp ALG -bytes N`, or undefined without openssl. */
function opensslSpeed(alg: string, bytes: number): number | undefined {
  try {
    const out = execFileSync("openssl", ["speed", "-evp", alg, "-bytes", String(bytes), "-seconds", "1"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 20_000,
    });
    // Last line: "<ALG>  <thousands of bytes per second>k".
    const line = out.trim().split("\n").pop() ?? "";
    const m = /([\d.]+)k\s*$/.exec(line);
    return m ? (Number(m[1]) * 1000) / bytes : undefined;
  } catch {
    return undefined;
  }
}

const compare = (group: string, wasmOps: number, anchors: Parameters<typeof compareRows>[2]) =>
  compareRows(group, { name: `wasm (${wasmVariant()})`, ops: wasmOps }, anchors);

async function benchSym(): Promise<Row[]> {
  const rows: Row[] = [];
  const key = crypto.getRandomValues(new Uint8Array(32));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ck = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
  for (const size of [64, 1024, 65536, 1 << 20]) {
    const pt = crypto.getRandomValues(new Uint8Array(size));
    const m = size >= 65536 ? { minMs: minMs * 2, rounds } : { minMs, rounds };
    const dk = rawKey("aes", key);
    const pk = wasmCore.aesGcmPrepareKey(key);
    const [w, web, nob, disp, wp, webMany] = await measureMany([
      () => wasmCore.aesGcmEncrypt(key, iv, pt),
      () => crypto.subtle.encrypt({ name: "AES-GCM", iv }, ck, pt),
      () => gcm(key, iv).encrypt(pt),
      () => dispatcher.aesGcmEncrypt(dk, iv, pt),
      () => wasmCore.aesGcmEncrypt(pk, iv, pt),
      () => Promise.all(Array.from({ length: IN_FLIGHT }, () => crypto.subtle.encrypt({ name: "AES-GCM", iv }, ck, pt))),
    ], m) as [number, number, number, number, number, number];
    pk.destroy();
    const small = size <= 1024;
    rows.push(
      ...compare(`AES-256-GCM encrypt ${fmtSize(size)}`, w, [
        { name: "webcrypto", ops: web, target: small ? ">= 3x" : undefined },
        { name: "noble", ops: nob, target: small ? ">= 1.5x" : size === 1 << 20 ? ">= 2x" : undefined },
        { name: "openssl", ops: opensslSpeed("aes-256-gcm", size) },
      ]),
      // The key prepared once (aesGcmPrepareKey), as WebCrypto's imported CryptoKey is: the
      // rows above pass raw key bytes on every call.
      {
        group: `AES-256-GCM encrypt ${fmtSize(size)}`,
        name: "wasm, prepared key",
        opsPerSec: wp,
        anchor: "wasm prepared/webcrypto",
        ratio: wp / web,
      },
      // For scale, not an anchor: every row above is one caller, one call at a time; with
      // many calls in flight WebCrypto's calls run on the runtime's worker threads, on every
      // core, while the wasm core runs on the caller's thread only.
      {
        group: `AES-256-GCM encrypt ${fmtSize(size)}`,
        name: `webcrypto, ${IN_FLIGHT} in flight`,
        opsPerSec: webMany * IN_FLIGHT,
        anchor: `wasm/webcrypto ${IN_FLIGHT} in flight (info)`,
        ratio: w / (webMany * IN_FLIGHT),
      },
      // The dispatcher against the faster of its two providers: what a service gets.
      {
        group: `AES-256-GCM encrypt ${fmtSize(size)}`,
        name: "dispatcher",
        opsPerSec: disp,
        anchor: `dispatcher/webcrypto${size === 1 << 20 ? " (target >= 0.9x)" : ""}`,
        ratio: disp / web,
      },
    );
  }
  const hasher = await createSHA256();
  for (const size of [64, 1 << 20]) {
    const d = crypto.getRandomValues(new Uint8Array(size));
    const m = size > 1024 ? { minMs: minMs * 2, rounds } : { minMs, rounds };
    const [w, web, nob, hw, disp] = await measureMany([
      () => wasmCore.sha256(d),
      () => crypto.subtle.digest("SHA-256", d),
      () => nobleSha256(d),
      () => {
        hasher.init();
        hasher.update(d);
        return hasher.digest("binary");
      },
      () => dispatcher.digest("SHA-256", d),
    ], m) as [number, number, number, number, number];
    rows.push(
      ...compare(`SHA-256 ${fmtSize(size)}`, w, [
        { name: "webcrypto", ops: web, target: size === 64 ? ">= 20x" : undefined },
        { name: "noble", ops: nob },
        { name: "hash-wasm", ops: hw, target: size === 64 ? ">= 0.8x" : undefined },
        { name: "openssl", ops: opensslSpeed("sha256", size) },
      ]),
      { group: `SHA-256 ${fmtSize(size)}`, name: "dispatcher", opsPerSec: disp, anchor: "dispatcher/webcrypto", ratio: disp / web },
    );
  }
  return rows;
}

async function benchEcRows(): Promise<Row[]> {
  try {
    const ec = (await import(EC_BENCH)) as { benchEc?: () => Row[] | Promise<Row[]> };
    return typeof ec.benchEc === "function" ? await ec.benchEc() : [];
  } catch (e) {
    if (e instanceof Error && /Cannot find module|not found/i.test(e.message)) return [];
    throw e;
  }
}

const started = performance.now();
const rows = [...(await benchSym()), ...(await benchEcRows())];
printTable(`crypto ops/s (runtime: Bun ${typeof Bun !== "undefined" ? Bun.version : "?"}, wasm ${wasmVariant()})`, rows);
if (!process.argv.includes("--no-dudect")) {
  printTable("dudect constant-time check (|t| > 4.5: timing difference detected)", await dudectAll(quick ? 20_000 : 100_000));
}
console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(1)} s`);
