// Every case of the Wycheproof AES-GCM, HMAC-SHA-2 and HKDF-SHA-2 files against
// the WASM core: valid cases must give the expected output, invalid ones must
// be rejected.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { wasmCore } from "../../src/crypto/wasm.ts";
import { AppError } from "../../src/service/errors.ts";

type HashName = "SHA-256" | "SHA-384" | "SHA-512";
interface Group<T> { tests: T[]; tagSize?: number; ivSize?: number; keySize?: number }
interface Suite<T> { numberOfTests: number; testGroups: Group<T>[] }

const dir = new URL("../vectors/wycheproof/", import.meta.url);
const load = <T>(name: string): Suite<T> => JSON.parse(readFileSync(new URL(name, dir), "utf8")) as Suite<T>;
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "hex"));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString("hex");

function rejects(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    return e instanceof AppError ? e.code : `not an AppError: ${String(e)}`;
  }
}

describe("wycheproof aes_gcm_test.json", () => {
  interface Case { tcId: number; key: string; iv: string; aad: string; msg: string; ct: string; tag: string; result: string }
  const suite = load<Case>("aes_gcm_test.json");
  test("all cases", () => {
    let run = 0;
    let skipped = 0;
    const failures: string[] = [];
    for (const g of suite.testGroups) {
      for (const t of g.tests) {
        if (g.tagSize !== 128) {
          skipped++; // the API has 128-bit tags only
          continue;
        }
        run++;
        const key = hex(t.key), iv = hex(t.iv), aad = hex(t.aad), msg = hex(t.msg);
        const sealed = hex(t.ct + t.tag);
        // Every case with the raw key and with the key prepared once (aesGcmPrepareKey).
        const prepared = [16, 24, 32].includes(key.length) ? wasmCore.aesGcmPrepareKey(key) : undefined;
        for (const k of prepared ? [key, prepared] : [key]) {
          const how = k === key ? "raw" : "prepared";
          if (t.result === "valid") {
            const c = wasmCore.aesGcmEncrypt(k, iv, msg, aad);
            if (toHex(c) !== t.ct + t.tag) failures.push(`${t.tcId} ${how}: encrypt mismatch`);
            const p = wasmCore.aesGcmDecrypt(k, iv, sealed, aad);
            if (toHex(p) !== t.msg) failures.push(`${t.tcId} ${how}: decrypt mismatch`);
          } else {
            const code = rejects(() => wasmCore.aesGcmDecrypt(k, iv, sealed, aad));
            if (code !== "decryption_failed" && code !== "malformed_input") failures.push(`${t.tcId} ${how}: not rejected (${code})`);
          }
        }
        prepared?.destroy();
      }
    }
    console.log(`aes_gcm: ${run} cases run, ${skipped} skipped (tag size other than 128 bits)`);
    expect(failures).toEqual([]);
    expect(skipped).toBe(0);
    expect(run).toBe(suite.numberOfTests);
  });
});

for (const [file, hash] of [
  ["hmac_sha256_test.json", "SHA-256"],
  ["hmac_sha384_test.json", "SHA-384"],
  ["hmac_sha512_test.json", "SHA-512"],
] as const) {
  test(`wycheproof ${file}`, () => {
    interface Case { tcId: number; key: string; msg: string; tag: string; result: string }
    const suite = load<Case>(file);
    const failures: string[] = [];
    let run = 0;
    for (const g of suite.testGroups) {
      for (const t of g.tests) {
        run++;
        const mac = wasmCore.hmac(hash as HashName, hex(t.key), hex(t.msg));
        // Truncated-tag groups compare the leading tagSize bits.
        const got = toHex(mac.subarray(0, (g.tagSize ?? mac.length * 8) / 8));
        const match = got === t.tag;
        if ((t.result === "valid") !== match) failures.push(`${t.tcId}: ${t.result} but match=${match}`);
      }
    }
    expect(failures).toEqual([]);
    expect(run).toBe(suite.numberOfTests);
  });
}

for (const [file, hash] of [
  ["hkdf_sha256_test.json", "SHA-256"],
  ["hkdf_sha384_test.json", "SHA-384"],
  ["hkdf_sha512_test.json", "SHA-512"],
] as const) {
  test(`wycheproof ${file}`, () => {
    interface Case { tcId: number; ikm: string; salt: string; info: string; size: number; okm: string; result: string }
    const suite = load<Case>(file);
    const failures: string[] = [];
    let run = 0;
    for (const g of suite.testGroups) {
      for (const t of g.tests) {
        run++;
        const derive = () => wasmCore.hkdf(hash as HashName, hex(t.ikm), hex(t.salt), hex(t.info), t.size);
        if (t.result === "valid") {
          if (toHex(derive()) !== t.okm) failures.push(`${t.tcId}: okm mismatch`);
        } else if (rejects(derive) !== "malformed_input") {
          failures.push(`${t.tcId}: invalid case not rejected`);
        }
      }
    }
    expect(failures).toEqual([]);
    expect(run).toBe(suite.numberOfTests);
  });
}
