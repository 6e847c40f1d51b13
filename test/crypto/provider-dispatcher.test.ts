/**
 * The dispatcher's routing: size-based choice by the crossover table, fallback when a provider
 * lacks an operation, and HSM keys that only ever reach their own token's provider.
 * Providers are the real ones, wrapped only to record which one ran each call.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AppError } from "../../src/service/errors.ts";
import { type CrossoverTable, MEASURED_CROSSOVERS, createDispatcher } from "../../src/crypto/dispatcher.ts";
import { type CryptoProvider, type TokenKey, rawKey } from "../../src/crypto/provider.ts";
import { Pkcs11Provider } from "../../src/crypto/pkcs11/index.ts";
import { createWasmProvider } from "../../src/crypto/wasm-provider.ts";
import { createWebCryptoProvider } from "../../src/crypto/webcrypto.ts";
import { setupSoftHsm } from "../support/softhsm.ts";
import { appError } from "../support/app-error.ts";

const rand = (n: number) => crypto.getRandomValues(new Uint8Array(n));


/** Records `provider.op` for every operation a provider runs, then runs it for real. */
function recorded(p: CryptoProvider, log: string[]): CryptoProvider {
  return new Proxy(p, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== "function" || ["supports", "constantTime", "close"].includes(String(prop))) {
        return typeof v === "function" ? v.bind(target) : v;
      }
      return (...args: unknown[]) => {
        log.push(`${target.name}.${String(prop)}`);
        return v.apply(target, args);
      };
    },
  });
}

const aesCrossover = MEASURED_CROSSOVERS.aesGcmEncrypt;
if (!aesCrossover || !("bytes" in aesCrossover)) throw new Error("MEASURED_CROSSOVERS.aesGcmEncrypt must be a size crossover");

describe("dispatcher, in-memory providers", () => {
  const log: string[] = [];
  const d = createDispatcher({ providers: [recorded(createWebCryptoProvider(), log), recorded(createWasmProvider(), log)] });
  const key = rawKey("aes", rand(32));
  const iv = rand(12);

  test("AES-GCM below the measured crossover goes to its small-input provider, above it to the other", async () => {
    log.length = 0;
    const small = rand(Math.max(1, aesCrossover.bytes - 1));
    const large = rand(aesCrossover.bytes * 4);
    const ct = await d.aesGcmEncrypt(key, iv, small);
    await d.aesGcmEncrypt(key, iv, large);
    expect(log).toEqual([`${aesCrossover.below}.aesGcmEncrypt`, `${aesCrossover.atOrAbove}.aesGcmEncrypt`]);
    expect(d.route("aesGcmEncrypt", { size: 64, keyBits: 256 }).name).toBe(aesCrossover.below);
    // Whichever provider ran, the result is the same AES-GCM.
    expect(await createWebCryptoProvider().aesGcmDecrypt(key, iv, ct)).toEqual(small);
  });

  test("a custom table routes the other way", async () => {
    const table: CrossoverTable = { aesGcmEncrypt: { below: "webcrypto", atOrAbove: "wasm", bytes: 100 }, digest: { prefer: "webcrypto" } };
    const l: string[] = [];
    const c = createDispatcher({ providers: [recorded(createWasmProvider(), l), recorded(createWebCryptoProvider(), l)], crossovers: table });
    await c.aesGcmEncrypt(key, iv, rand(10));
    await c.aesGcmEncrypt(key, iv, rand(1000));
    await c.digest("SHA-256", rand(10));
    expect(l).toEqual(["webcrypto.aesGcmEncrypt", "wasm.aesGcmEncrypt", "webcrypto.digest"]);
  });

  test("an operation the preferred provider lacks goes to one that has it", async () => {
    const l: string[] = [];
    const c = createDispatcher({
      providers: [recorded(createWasmProvider(), l), recorded(createWebCryptoProvider(), l)],
      crossovers: { wrapKey: { prefer: "wasm" } },
    });
    const wrapped = await c.wrapKey(key, rawKey("aes", rand(16)));
    expect(wrapped.length).toBe(24);
    expect(l).toEqual(["webcrypto.wrapKey"]);
    const only = createDispatcher({ providers: [createWasmProvider()] });
    expect((await appError(only.wrapKey(key, key))).code).toBe("unavailable");
  });

  test("a token key is never handed to an in-memory provider", async () => {
    log.length = 0;
    const tokenKey: TokenKey = { location: "token", provider: "pkcs11", token: "absent", type: "aes", bits: 256, label: "k", id: "00", persistent: true, handle: 1 };
    const e = await appError(d.aesGcmEncrypt(tokenKey, iv, rand(10)));
    expect(e.code).toBe("unavailable");
    expect(e.message).toContain("absent");
    expect((await appError(d.generateAesKey(256, { location: "token" }))).code).toBe("unavailable");
    expect(log).toEqual([]);
  });
});

const hsm = await setupSoftHsm();
if (hsm) {
  describe("dispatcher with an HSM", () => {
    let p11: Pkcs11Provider;
    const log: string[] = [];
    let d: ReturnType<typeof createDispatcher>;

    beforeAll(async () => {
      p11 = await Pkcs11Provider.open(hsm.createToken("cu-dispatch").config);
      // The HSM first in the list: it must still never be chosen for in-memory work.
      d = createDispatcher({
        providers: [recorded(p11, log), recorded(createWasmProvider(), log), recorded(createWebCryptoProvider(), log)],
      });
    });
    afterAll(async () => {
      await d.close();
      hsm.cleanup();
    });

    test("operations on HSM keys stay on pkcs11, whatever the size", async () => {
      log.length = 0;
      const k = await d.generateAesKey(256, { location: "token" });
      expect(k.location).toBe("token");
      const iv = rand(12);
      const small = rand(16);
      const ct = await d.aesGcmEncrypt(k, iv, small);
      await d.aesGcmEncrypt(k, iv, rand(200_000));
      expect(await d.aesGcmDecrypt(k, iv, ct)).toEqual(small);
      const pair = await d.generateEcKeyPair("P-256", { location: "token" });
      const sig = await d.sign(pair.privateKey, "SHA-256", small);
      const peer = await createWebCryptoProvider().generateEcKeyPair("P-256");
      await d.ecdh(pair.privateKey, peer.publicKey.material);
      await d.wrapKey(k, rawKey("aes", rand(32)));
      expect(log).toEqual([
        "pkcs11.generateAesKey",
        "pkcs11.aesGcmEncrypt",
        "pkcs11.aesGcmEncrypt",
        "pkcs11.aesGcmDecrypt",
        "pkcs11.generateEcKeyPair",
        "pkcs11.sign",
        "pkcs11.ecdh",
        "pkcs11.wrapKey",
      ]);
      // Verifying with the (raw) public key is in-memory work: it leaves the HSM alone.
      log.length = 0;
      expect(await d.verify(pair.publicKey, "SHA-256", small, sig)).toBe(true);
      expect(log).toHaveLength(1);
      expect(log[0]).not.toStartWith("pkcs11.");
    });

    test("in-memory work never goes to the HSM, even listed first", async () => {
      log.length = 0;
      const raw = await d.generateAesKey(128);
      expect(raw.location).toBe("raw");
      await d.aesGcmEncrypt(raw, rand(12), rand(10));
      await d.digest("SHA-384", rand(10));
      await d.hmac("SHA-256", rawKey("secret", rand(32)), rand(10));
      expect(log.filter((x) => x.startsWith("pkcs11."))).toEqual([]);
      expect(log).toHaveLength(4);
    });

    test("a key of another token is refused, not sent elsewhere", async () => {
      log.length = 0;
      const foreign: TokenKey = { location: "token", provider: "pkcs11", token: "cu-elsewhere", type: "aes", bits: 256, label: "x", id: "00", persistent: true, handle: 1 };
      expect((await appError(d.aesGcmEncrypt(foreign, rand(12), rand(10)))).code).toBe("unavailable");
      expect(log).toEqual([]);
    });
  });
}
