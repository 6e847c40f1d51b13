// Deno tests of the WASM core, run by `deno test --allow-read` (see
// ../deno-runner.test.ts): it must load and work under Deno unchanged.
// Covers the Wycheproof AES-GCM file, SHA-2/HMAC/HKDF against Deno's WebCrypto,
// and the error contract.
import { wasmCore, wasmVariant } from "../../../src/crypto/wasm.ts";
import { AppError } from "../../../src/service/errors.ts";

declare const Deno: { test(name: string, fn: () => void | Promise<void>): void; readTextFileSync(p: URL): string };

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}
const hex = (s: string) => new Uint8Array((s.match(/../g) ?? []).map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const rnd = (n: number) => crypto.getRandomValues(new Uint8Array(n));

Deno.test(`wasm core loads (${wasmVariant()})`, () => {
  assert(toHex(wasmCore.sha256(new TextEncoder().encode("abc"))) ===
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256(abc)");
});

Deno.test("wycheproof aes_gcm_test.json", () => {
  interface Case { tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: string }
  const suite = JSON.parse(Deno.readTextFileSync(new URL("../../vectors/wycheproof/aes_gcm_test.json", import.meta.url))) as {
    numberOfTests: number; testGroups: { tagSize: number; tests: Case[] }[];
  };
  let run = 0;
  for (const g of suite.testGroups) {
    assert(g.tagSize === 128, "only 128-bit tags are in the file");
    for (const t of g.tests) {
      run++;
      const sealed = hex(t.ct + t.tag);
      if (t.result === "valid") {
        assert(toHex(wasmCore.aesGcmEncrypt(hex(t.key), hex(t.iv), hex(t.msg), hex(t.aad))) === t.ct + t.tag, `${t.tcId} encrypt`);
        assert(toHex(wasmCore.aesGcmDecrypt(hex(t.key), hex(t.iv), sealed, hex(t.aad))) === t.msg, `${t.tcId} decrypt`);
      } else {
        let code = "none";
        try {
          wasmCore.aesGcmDecrypt(hex(t.key), hex(t.iv), sealed, hex(t.aad));
        } catch (e) {
          code = e instanceof AppError ? e.code : "other";
        }
        assert(code === "decryption_failed" || code === "malformed_input", `${t.tcId} not rejected: ${code}`);
      }
    }
  }
  assert(run === suite.numberOfTests, "all cases run");
});

Deno.test("AES-GCM matches Deno WebCrypto for sizes 0..300", async () => {
  for (let n = 0; n <= 300; n++) {
    const key = rnd(n % 2 ? 16 : 32), iv = rnd(12), aad = rnd(n % 23), pt = rnd(n);
    const ck = await crypto.subtle.importKey("raw", key, "AES-GCM", false, ["encrypt"]);
    const want = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad }, ck, pt));
    assert(toHex(wasmCore.aesGcmEncrypt(key, iv, pt, aad)) === toHex(want), `size ${n}`);
  }
});

Deno.test("SHA-2, HMAC and HKDF match Deno WebCrypto", async () => {
  for (const h of ["SHA-256", "SHA-384", "SHA-512"] as const) {
    for (const n of [0, 1, 64, 129, 1000]) {
      const d = rnd(n), key = rnd(1 + (n % 150));
      const fn = h === "SHA-256" ? wasmCore.sha256 : h === "SHA-384" ? wasmCore.sha384 : wasmCore.sha512;
      assert(toHex(fn(d)) === toHex(new Uint8Array(await crypto.subtle.digest(h, d))), `${h} ${n}`);
      const mk = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: h }, false, ["sign"]);
      assert(toHex(wasmCore.hmac(h, key, d)) === toHex(new Uint8Array(await crypto.subtle.sign("HMAC", mk, d))), `hmac ${h} ${n}`);
      const hk = await crypto.subtle.importKey("raw", key, "HKDF", false, ["deriveBits"]);
      const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: "HKDF", hash: h, salt: d, info: d.subarray(0, 9) }, hk, 8 * 77));
      assert(toHex(wasmCore.hkdf(h, key, d, d.subarray(0, 9), 77)) === toHex(bits), `hkdf ${h} ${n}`);
    }
  }
});

Deno.test("bad tag and bad key length give typed errors", () => {
  const key = rnd(16), iv = rnd(12);
  const c = wasmCore.aesGcmEncrypt(key, iv, rnd(40));
  c[c.length - 1]! ^= 1;
  let code = "";
  try { wasmCore.aesGcmDecrypt(key, iv, c); } catch (e) { code = e instanceof AppError ? e.code : "other"; }
  assert(code === "decryption_failed", "bad tag");
  try { wasmCore.aesGcmEncrypt(rnd(20), iv, rnd(1)); } catch (e) { code = e instanceof AppError ? e.code : "other"; }
  assert(code === "malformed_input", "bad key length");
});
