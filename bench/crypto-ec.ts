/**
 * EC micro-benchmarks of the WASM core (ECDSA P-256/P-384 sign and verify,
 * ECDH P-256) against WebCrypto, @noble/curves and native OpenSSL
 * (`openssl speed`, when installed), and dudect runs for ECDSA signing and ECDH
 * (fixed vs random private key). Used by bench/crypto.ts; runnable alone:
 *
 *   npx bun bench/crypto-ec.ts [--quick] [--no-dudect]
 */
import { execFileSync } from "node:child_process";
import { p256, p384 } from "@noble/curves/nist.js";
import { compareRows, measure, printTable, type Row } from "./lib.ts";
import { dudect } from "./dudect.ts";
import { ecdhSharedSecret, ecdsaSign, ecdsaVerify, ecGenerateKeyPair, type EcCurve } from "../src/crypto/wasm-ec.ts";
import { put, scratch, wasmExports, wasmVariant } from "../src/crypto/wasm-runtime.ts";
import { createCrypto, rawKey } from "../src/crypto/index.ts";

// The dispatcher as services use it: it sends EC work to the faster constant-time provider.
const dispatcher = await createCrypto();
const dispatcherRow = (group: string, ops: number, webcrypto: number): Row => ({
  group,
  name: "dispatcher",
  opsPerSec: ops,
  anchor: "dispatcher/webcrypto",
  ratio: ops / webcrypto,
});

const quick = process.argv.includes("--quick");
const minMs = quick ? 60 : 200;
const rounds = quick ? 3 : 5;

type OpensslEc = { sign: number; verify: number } | { op: number };

/** ops/s of `openssl speed <alg>` (ecdsap256 -> sign/verify, ecdhp256 -> op), or undefined. */
function opensslSpeed(alg: string): OpensslEc | undefined {
  try {
    const out = execFileSync("openssl", ["speed", "-seconds", "1", alg], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
      timeout: 30_000,
    });
    const line = out.trim().split("\n").pop() ?? "";
    const nums = line.trim().split(/\s+/).map(Number).filter((x) => Number.isFinite(x));
    // "... 0.0000s 0.0001s 51201.6 16596.5" (ecdsa) or "... 0.0000s 22253.8" (ecdh)
    if (alg.startsWith("ecdsa") && nums.length >= 2) return { sign: nums[nums.length - 2]!, verify: nums[nums.length - 1]! };
    if (alg.startsWith("ecdh") && nums.length >= 1) return { op: nums[nums.length - 1]! };
    return undefined;
  } catch {
    return undefined;
  }
}

const compare = (group: string, wasmOps: number, anchors: Parameters<typeof compareRows>[2]) =>
  compareRows(group, { name: `wasm (${wasmVariant()})`, ops: wasmOps }, anchors);

const b64u = (s: string) => Uint8Array.from(Buffer.from(s, "base64url"));

/** Benchmark rows for ECDSA sign/verify (P-256, P-384) and ECDH P-256. */
export async function benchEc(): Promise<Row[]> {
  const rows: Row[] = [];
  const m = { minMs, rounds };
  const msg = new TextEncoder().encode("a typical JWS signing input, about a hundred bytes long, give or take a few.");
  for (const [curve, hash, noble, ossl] of [
    ["P-256", "SHA-256", p256, "ecdsap256"],
    ["P-384", "SHA-384", p384, "ecdsap384"],
  ] as const) {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"]);
    const d = b64u((await crypto.subtle.exportKey("jwk", pair.privateKey)).d!);
    const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
    const sig = ecdsaSign(curve, hash, d, msg);
    const nobleOpts = { lowS: false };
    const openssl = opensslSpeed(ossl) as { sign: number; verify: number } | undefined;
    const target = curve === "P-256" ? ">= 2x" : undefined;
    const dPriv = rawKey("ec-private", d, { curve, publicKey: pub });
    const dPub = rawKey("ec-public", pub, { curve });
    const wSign = await measure(() => ecdsaSign(curve, hash, d, msg), m);
    const webSign = await measure(() => crypto.subtle.sign({ name: "ECDSA", hash }, pair.privateKey, msg), m);
    rows.push(
      ...compare(`ECDSA ${curve} sign`, wSign, [
        { name: "webcrypto", ops: webSign },
        { name: "noble", ops: await measure(() => noble.sign(msg, d, nobleOpts), m), target },
        { name: "openssl", ops: openssl?.sign },
      ]),
      dispatcherRow(`ECDSA ${curve} sign`, await measure(() => dispatcher.sign(dPriv, hash, msg), m), webSign),
    );
    const wVerify = await measure(() => ecdsaVerify(curve, hash, pub, msg, sig), m);
    const webVerify = await measure(() => crypto.subtle.verify({ name: "ECDSA", hash }, pair.publicKey, sig, msg), m);
    rows.push(
      ...compare(`ECDSA ${curve} verify`, wVerify, [
        { name: "webcrypto", ops: webVerify },
        { name: "noble", ops: await measure(() => noble.verify(sig, msg, pub, nobleOpts), m), target },
        { name: "openssl", ops: openssl?.verify },
      ]),
      dispatcherRow(`ECDSA ${curve} verify`, await measure(() => dispatcher.verify(dPub, hash, msg, sig), m), webVerify),
    );
  }
  const curve: EcCurve = "P-256";
  const alice = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: curve }, true, ["deriveBits"]);
  const bob = await crypto.subtle.generateKey({ name: "ECDH", namedCurve: curve }, true, ["deriveBits"]);
  const aliceD = b64u((await crypto.subtle.exportKey("jwk", alice.privateKey)).d!);
  const bobRaw = new Uint8Array(await crypto.subtle.exportKey("raw", bob.publicKey));
  const openssl = opensslSpeed("ecdhp256") as { op: number } | undefined;
  const alicePub = new Uint8Array(await crypto.subtle.exportKey("raw", alice.publicKey));
  const aliceKey = rawKey("ec-private", aliceD, { curve, publicKey: alicePub });
  const webEcdh = await measure(() => crypto.subtle.deriveBits({ name: "ECDH", public: bob.publicKey }, alice.privateKey, 256), m);
  rows.push(
    ...compare("ECDH P-256", await measure(() => ecdhSharedSecret(curve, aliceD, bobRaw), m), [
      { name: "webcrypto", ops: webEcdh },
      { name: "noble", ops: await measure(() => p256.getSharedSecret(aliceD, bobRaw), m) },
      { name: "openssl", ops: openssl?.op },
    ]),
    dispatcherRow("ECDH P-256", await measure(() => dispatcher.ecdh(aliceKey, bobRaw), m), webEcdh),
  );
  return rows;
}

/**
 * dudect rows: ECDSA P-256 signing and ECDH P-256 with a fixed private key vs
 * random private keys (same message / peer key), and signing with a fixed vs a
 * random nonce (same key and message), n measurements each.
 */
export function dudectEc(n = quick ? 20_000 : 100_000): Row[] {
  const rows: Row[] = [];
  const pool = 1024;
  const fixed = ecGenerateKeyPair("P-256").privateKey;
  const keys = Array.from({ length: pool }, () => ecGenerateKeyPair("P-256").privateKey);
  const key = new Uint8Array(32);
  const msg = new TextEncoder().encode("dudect message");
  const peer = ecGenerateKeyPair("P-256").publicKey;
  const prepare = (cls: number, i: number) => key.set(cls === 0 ? fixed : keys[i % pool]!);
  const sign = dudect("ECDSA P-256 sign, fixed vs random private key", prepare, () => {
    ecdsaSign("P-256", "SHA-256", key, msg);
  }, { n });
  rows.push({ group: "dudect", name: sign.name, opsPerSec: sign.perSecond, t: sign.t });
  // The nonce path alone (comb, inversions): one key and message; the same 32
  // extra bytes give the same RFC 6979 nonce every call, random ones a fresh one.
  const core = wasmExports() as unknown as {
    ecdsaSignDigest(c: number, a: number, d: number, m: number, ml: number, x: number, xl: number, o: number): number;
  };
  const fixedExtra = crypto.getRandomValues(new Uint8Array(32));
  const extras = Array.from({ length: pool }, () => crypto.getRandomValues(new Uint8Array(32)));
  const nonce = dudect("ECDSA P-256 sign, fixed vs random nonce", (cls, i) => {
    const base = scratch(512);
    put(base, fixed);
    put(base + 64, cls === 0 ? fixedExtra : extras[i % pool]!);
    put(base + 128, msg);
  }, () => {
    const base = scratch(512);
    if (core.ecdsaSignDigest(256, 256, base, base + 128, msg.length, base + 64, 32, base + 256) !== 0) throw new Error("sign failed");
  }, { n });
  rows.push({ group: "dudect", name: nonce.name, opsPerSec: nonce.perSecond, t: nonce.t });
  const dh = dudect("ECDH P-256, fixed vs random private key", prepare, () => {
    ecdhSharedSecret("P-256", key, peer);
  }, { n });
  rows.push({ group: "dudect", name: dh.name, opsPerSec: dh.perSecond, t: dh.t });
  return rows;
}

if (import.meta.main) {
  printTable(`EC ops/s (wasm ${wasmVariant()})`, await benchEc());
  if (!process.argv.includes("--no-dudect")) printTable("dudect EC (|t| > 4.5: timing difference detected)", dudectEc());
}
