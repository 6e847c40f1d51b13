/**
 * The PKCS#11 bridge against a real SoftHSM2 token: start-up errors, Wycheproof AES-GCM and
 * ECDSA inside the token, interop with WebCrypto and @noble/curves, ECDH, key wrap, HMAC,
 * non-extractability, and finding keys again by label after a restart (in a new process).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { p256, p384 } from "@noble/curves/nist.js";
import { sha512 } from "@noble/hashes/sha2.js";
import { AppError } from "../../src/service/errors.ts";
import { type EcCurve, type HashAlg, type TokenKey, rawKey } from "../../src/crypto/provider.ts";
import { Pkcs11Provider } from "../../src/crypto/pkcs11/index.ts";
import { createWebCryptoProvider } from "../../src/crypto/webcrypto.ts";
import { setupSoftHsm, type SoftHsm, type SoftHsmToken } from "../support/softhsm.ts";
import { appError } from "../support/app-error.ts";

const here = fileURLToPath(new URL(".", import.meta.url));
const vectors = (name: string) => JSON.parse(readFileSync(join(here, "../vectors/wycheproof", name), "utf8"));
const fromHex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const toHex = (b: Uint8Array) => Buffer.from(b).toString("hex");


const hsm: SoftHsm | undefined = await setupSoftHsm();

if (hsm) {
  const env = hsm;
  let main: SoftHsmToken;
  let other: SoftHsmToken;
  let p11: Pkcs11Provider;
  const web = createWebCryptoProvider();

  beforeAll(async () => {
    main = env.createToken("cu-main");
    other = env.createToken("cu-other");
    p11 = await Pkcs11Provider.open(main.config);
  });

  afterAll(async () => {
    await p11?.close();
    env.cleanup();
  });

  describe("pkcs11 start-up errors are clear AppErrors", () => {
    test("missing module path", async () => {
      const e = await appError(Pkcs11Provider.open({ ...main.config, modulePath: join(env.dir, "no-such-module.so") }));
      expect(e.code).toBe("unavailable");
      expect(e.details).toEqual({ reason: "module_not_found" });
      expect(e.message).toContain("module not found");
    });

    test("a file that is not a PKCS#11 library", async () => {
      const e = await appError(Pkcs11Provider.open({ ...main.config, modulePath: env.confPath }));
      expect(e.details).toEqual({ reason: "module_load_failed" });
    });

    test("unknown token label", async () => {
      const e = await appError(Pkcs11Provider.open({ ...main.config, tokenLabel: "no-such-token" }));
      expect(e.code).toBe("unavailable");
      expect(e.details).toEqual({ reason: "token_not_found" });
      expect(e.message).toContain("no-such-token");
    });

    test("wrong PIN", async () => {
      const wrong = env.pinFile("wrong", `${other.pin}x`);
      const e = await appError(Pkcs11Provider.open({ ...other.config, pinFile: wrong }));
      expect(e.code).toBe("unavailable");
      expect(e.details).toEqual({ reason: "pin_incorrect" });
      expect(e.message).toContain("wrong PIN");
      expect(e.message).not.toContain(other.pin);
    });

    test("unreadable PIN file and missing token selector", async () => {
      expect((await appError(Pkcs11Provider.open({ ...other.config, pinFile: join(env.dir, "absent.pin") }))).details).toEqual({
        reason: "pin_file_unreadable",
      });
      expect((await appError(Pkcs11Provider.open({ pinFile: other.pinFile, modulePath: env.modulePath }))).details).toEqual({
        reason: "bad_config",
      });
    });

    test("the right PIN opens the second token; failed starts left nothing open", async () => {
      const p = await Pkcs11Provider.open(other.config);
      expect(p.token).toBe("cu-other");
      const k = await p.generateAesKey(128);
      const ct = await p.aesGcmEncrypt(k, new Uint8Array(12), new Uint8Array([1, 2, 3]));
      expect(toHex(await p.aesGcmDecrypt(k, new Uint8Array(12), ct))).toBe("010203");
      // A key of one token is refused by the provider of another.
      expect((await appError(p11.aesGcmEncrypt(k, new Uint8Array(12), new Uint8Array(1)))).code).toBe("bad_request");
      await p.close();
      await p.close(); // idempotent
      expect((await appError(p.aesGcmEncrypt(k, new Uint8Array(12), new Uint8Array(1)))).code).toBe("unavailable");
    });
  });

  describe("pkcs11 AES-GCM", () => {
    test("Wycheproof aes_gcm (96-bit IV, 128-bit tag) inside the token", async () => {
      const data = vectors("aes_gcm_test.json");
      let checked = 0;
      for (const g of data.testGroups) {
        if (g.ivSize !== 96 || g.tagSize !== 128) continue;
        for (const t of g.tests) {
          const key = await p11.importKey(rawKey("aes", fromHex(t.key)));
          try {
            const iv = fromHex(t.iv);
            const aad = t.aad ? fromHex(t.aad) : undefined;
            const sealed = fromHex(t.ct + t.tag);
            if (t.result === "valid") {
              expect(toHex(await p11.aesGcmEncrypt(key, iv, fromHex(t.msg), aad))).toBe(t.ct + t.tag);
              expect(toHex(await p11.aesGcmDecrypt(key, iv, sealed, aad))).toBe(t.msg);
            } else {
              const e = await appError(p11.aesGcmDecrypt(key, iv, sealed, aad));
              expect(e.code).toBe("decryption_failed");
              expect(e.status).toBe(400);
            }
            checked++;
          } finally {
            await p11.destroyKey(key);
          }
        }
      }
      expect(checked).toBe(197);
    });

    test("large inputs go through the thread pool and match WebCrypto", async () => {
      const material = crypto.getRandomValues(new Uint8Array(32));
      const key = await p11.importKey(rawKey("aes", material));
      const data = crypto.getRandomValues(new Uint8Array(300_000));
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const aad = crypto.getRandomValues(new Uint8Array(20));
      // Concurrent calls share the session pool without colliding.
      const [a, b] = await Promise.all([p11.aesGcmEncrypt(key, iv, data, aad), web.aesGcmEncrypt(rawKey("aes", material), iv, data, aad)]);
      expect(toHex(a)).toBe(toHex(b));
      const [x, y] = await Promise.all([p11.aesGcmDecrypt(key, iv, a, aad), p11.aesGcmDecrypt(key, iv, b, aad)]);
      expect(x).toEqual(data);
      expect(y).toEqual(data);
      await p11.destroyKey(key);
    });

    test("many concurrent operations share the session pool without colliding", async () => {
      const aes = await p11.generateAesKey(128);
      const ec = await p11.generateEcKeyPair("P-256");
      const jobs = Array.from({ length: 60 }, async (_, i) => {
        const data = crypto.getRandomValues(new Uint8Array(i % 3 === 0 ? 20_000 : 100));
        const iv = crypto.getRandomValues(new Uint8Array(12));
        if (i % 2 === 0) {
          const ct = await p11.aesGcmEncrypt(aes, iv, data);
          expect(await p11.aesGcmDecrypt(aes, iv, ct)).toEqual(data);
        } else {
          const sig = await p11.sign(ec.privateKey, "SHA-256", data);
          expect(await web.verify(ec.publicKey, "SHA-256", data, sig)).toBe(true);
        }
      });
      await Promise.all(jobs);
      await p11.destroyKey(aes);
      await p11.destroyKey(ec.privateKey);
    });

    test("supports() reflects the token's mechanisms and the parameters", () => {
      for (const op of ["aesGcmEncrypt", "sign", "verify", "ecdh", "wrapKey", "unwrapKey", "hmac", "digest", "generateEcKeyPair"] as const) {
        expect(p11.supports(op)).toBe(true);
      }
      expect(p11.supports("aesGcmEncrypt", { keyBits: 512 })).toBe(false);
      expect(p11.supports("sign", { curve: "P-521" as EcCurve })).toBe(false);
      expect(p11.name).toBe("pkcs11");
    });

    test("bad arguments are malformed_input, before the token is called", async () => {
      const key = await p11.generateAesKey(256);
      expect((await appError(p11.aesGcmEncrypt(key, new Uint8Array(16), new Uint8Array(1)))).code).toBe("malformed_input");
      expect((await appError(p11.aesGcmDecrypt(key, new Uint8Array(12), new Uint8Array(15)))).code).toBe("malformed_input");
      expect((await appError(p11.aesGcmEncrypt(rawKey("aes", new Uint8Array(16)), new Uint8Array(12), new Uint8Array(1)))).code).toBe(
        "bad_request",
      );
    });
  });

  describe("pkcs11 ECDSA", () => {
    const nobleOf = { "P-256": p256, "P-384": p384 } as const;
    for (const curve of ["P-256", "P-384"] as EcCurve[]) {
      for (const hash of ["SHA-256", "SHA-384", "SHA-512"] as HashAlg[]) {
        test(`${curve}/${hash}: sign in the token, verify with WebCrypto, @noble/curves and the token`, async () => {
          const { privateKey, publicKey } = await p11.generateEcKeyPair(curve);
          const msg = crypto.getRandomValues(new Uint8Array(100));
          const sig = await p11.sign(privateKey, hash, msg);
          expect(sig.length).toBe(curve === "P-256" ? 64 : 96);
          expect(await web.verify(publicKey, hash, msg, sig)).toBe(true);
          const spki = await crypto.subtle.importKey("raw", new Uint8Array(publicKey.material), { name: "ECDSA", namedCurve: curve }, false, ["verify"]);
          expect(await crypto.subtle.verify({ name: "ECDSA", hash }, spki, new Uint8Array(sig), msg)).toBe(true);
          const digest = hash === "SHA-512" ? sha512(msg) : new Uint8Array(await crypto.subtle.digest(hash, msg));
          expect(nobleOf[curve].verify(sig, digest, publicKey.material, { prehash: false, lowS: false })).toBe(true);
          expect(await p11.verify(publicKey, hash, msg, sig)).toBe(true);
          expect(await p11.verify(privateKey, hash, msg, sig)).toBe(true);
          const bad = sig.slice();
          bad[5] = (bad[5] as number) ^ 1;
          expect(await p11.verify(publicKey, hash, msg, bad)).toBe(false);
          expect(await web.verify(publicKey, hash, msg, bad)).toBe(false);
          expect(await p11.verify(publicKey, hash, msg, sig.subarray(1))).toBe(false);
          await p11.destroyKey(privateKey);
        });
      }
    }

    for (const [file, expected] of [
      ["ecdsa_secp256r1_sha256_p1363_test.json", 262],
      ["ecdsa_secp384r1_sha384_p1363_test.json", 0],
    ] as const) {
      test(`Wycheproof ${file}: verified inside the token`, async () => {
        const data = vectors(file);
        let checked = 0;
        for (const g of data.testGroups) {
          const curve: EcCurve = g.publicKey.curve === "secp256r1" ? "P-256" : "P-384";
          const pub = rawKey("ec-public", fromHex(g.publicKey.uncompressed), { curve });
          for (const t of g.tests) {
            if (t.result === "acceptable") continue;
            const ok = await p11.verify(pub, g.sha, fromHex(t.msg), fromHex(t.sig));
            if (ok !== (t.result === "valid")) throw new Error(`tcId ${t.tcId} (${t.comment}): token says ${ok}, expected ${t.result}`);
            checked++;
          }
        }
        if (expected) expect(checked).toBe(expected);
        else expect(checked).toBeGreaterThan(200);
      });
    }
  });

  describe("pkcs11 ECDH, key wrap, HMAC", () => {
    test("P-256 ECDH in the token agrees with WebCrypto (Z as an AES-256 key, used inside the token)", async () => {
      const hsmPair = await p11.generateEcKeyPair("P-256");
      const peer = await web.generateEcKeyPair("P-256");
      const aes = await p11.ecdh(hsmPair.privateKey, peer.publicKey.material, { type: "aes", bits: 256 });
      expect(aes.location).toBe("token");
      const ours = await web.ecdh(peer.privateKey, hsmPair.publicKey.material, { type: "aes", bits: 256 });
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const ct = await p11.aesGcmEncrypt(aes, iv, new TextEncoder().encode("agreed"));
      expect(new TextDecoder().decode(await web.aesGcmDecrypt(ours, iv, ct))).toBe("agreed");
      // Truncating Z is left to a KDF: tokens disagree on which bytes they keep.
      expect((await appError(p11.ecdh(hsmPair.privateKey, peer.publicKey.material, { type: "aes", bits: 128 }))).code).toBe("malformed_input");
      await p11.destroyKey(hsmPair.privateKey);
    });

    test("ECDH secrets in the token equal Z computed by WebCrypto (compared through HMAC)", async () => {
      for (const curve of ["P-256", "P-384"] as EcCurve[]) {
        const hsmPair = await p11.generateEcKeyPair(curve);
        const peer = await web.generateEcKeyPair(curve);
        const z = await web.ecdh(peer.privateKey, hsmPair.publicKey.material);
        expect(z.location === "raw" && z.material.length).toBe(curve === "P-256" ? 32 : 48);
        // The generic-secret form: HMAC under Z inside the token equals HMAC under Z outside.
        const secret = await p11.ecdh(hsmPair.privateKey, peer.publicKey.material);
        const msg = new TextEncoder().encode("mac me");
        expect(toHex(await p11.hmac("SHA-256", secret, msg))).toBe(toHex(await web.hmac("SHA-256", z, msg)));
        expect((await appError(p11.readKeyValue(secret))).code).toBe("forbidden");
        await p11.destroyKey(hsmPair.privateKey);
      }
    });

    test("ECDH refuses an off-curve peer point", async () => {
      const pair = await p11.generateEcKeyPair("P-256");
      const bad = pair.publicKey.material.slice();
      bad[64] = (bad[64] as number) ^ 1;
      expect((await appError(p11.ecdh(pair.privateKey, bad))).code).toBe("malformed_input");
      await p11.destroyKey(pair.privateKey);
    });

    test("RFC 3394 wrap in the token interoperates with WebCrypto AES-KW, both ways", async () => {
      const kekMaterial = crypto.getRandomValues(new Uint8Array(32));
      const kek = await p11.importKey(rawKey("aes", kekMaterial));
      const rawKek = rawKey("aes", kekMaterial);
      const dek = rawKey("aes", crypto.getRandomValues(new Uint8Array(32)));
      const wrappedInToken = await p11.wrapKey(kek, dek);
      expect(wrappedInToken.length).toBe(40);
      expect(toHex(wrappedInToken)).toBe(toHex(await web.wrapKey(rawKek, dek)));
      const back = await web.unwrapKey(rawKek, wrappedInToken, { type: "aes" });
      expect(back.location === "raw" && toHex(back.material)).toBe(toHex(dek.material));
      // WebCrypto wraps, the token unwraps into a non-extractable key that encrypts like the original.
      const inToken = (await p11.unwrapKey(kek, await web.wrapKey(rawKek, dek), { type: "aes" })) as TokenKey;
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const msg = crypto.getRandomValues(new Uint8Array(50));
      expect(toHex(await p11.aesGcmEncrypt(inToken, iv, msg))).toBe(toHex(await web.aesGcmEncrypt(dek, iv, msg)));
      expect(await p11.keyProtection(inToken)).toMatchObject({ sensitive: true, extractable: false });
      const tampered = wrappedInToken.slice();
      tampered[3] = (tampered[3] as number) ^ 0x80;
      expect((await appError(p11.unwrapKey(kek, tampered, { type: "aes" }))).code).toBe("decryption_failed");
      // Token keys are never wrapped out.
      expect((await appError(p11.wrapKey(kek, inToken))).code).toBe("forbidden");
    });

    test("HMAC with an imported secret matches WebCrypto for every hash", async () => {
      // SoftHSM2 wants HMAC keys at least as long as the hash output.
      const material = crypto.getRandomValues(new Uint8Array(64));
      const key = await p11.importKey(rawKey("secret", material));
      const data = crypto.getRandomValues(new Uint8Array(333));
      for (const hash of ["SHA-256", "SHA-384", "SHA-512"] as HashAlg[]) {
        expect(toHex(await p11.hmac(hash, key, data))).toBe(toHex(await web.hmac(hash, rawKey("secret", material), data)));
        expect(toHex(await p11.digest(hash, data))).toBe(toHex(await web.digest(hash, data)));
      }
      const short = await p11.importKey(rawKey("secret", material.subarray(0, 32)));
      expect((await appError(p11.hmac("SHA-512", short, data))).code).toBe("malformed_input");
    });
  });

  describe("pkcs11 key protection and persistence", () => {
    test("generated keys are sensitive and never extractable: reading CKA_VALUE fails", async () => {
      const aes = await p11.generateAesKey(256);
      const ec = await p11.generateEcKeyPair("P-256");
      for (const k of [aes, ec.privateKey]) {
        const e = await appError(p11.readKeyValue(k));
        expect(e.code).toBe("forbidden");
        expect(e.details).toEqual({ ckr: "CKR_ATTRIBUTE_SENSITIVE" });
        expect(await p11.keyProtection(k)).toEqual({ sensitive: true, extractable: false, neverExtractable: true, persistent: false });
      }
      // An imported key is sensitive and non-extractable too (never-extractable it cannot claim).
      const imported = await p11.importKey(rawKey("aes", new Uint8Array(16)));
      expect((await appError(p11.readKeyValue(imported))).code).toBe("forbidden");
    });

    test("a persistent key is found again by label in a new process (a restart)", async () => {
      const key = await p11.generateAesKey(256, { label: "cu-root-key" });
      expect(key.location === "token" && key.persistent).toBe(true);
      expect((await appError(p11.generateAesKey(128, { label: "cu-root-key" }))).code).toBe("conflict");
      const pair = await p11.generateEcKeyPair("P-384", { label: "cu-signing-key" });
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const ct = await p11.aesGcmEncrypt(key, iv, new TextEncoder().encode("survives restarts"));

      const providerUrl = new URL("../../src/crypto/pkcs11/index.ts", import.meta.url).href;
      const script = `
        const { Pkcs11Provider } = await import(${JSON.stringify(providerUrl)});
        const p = await Pkcs11Provider.open(${JSON.stringify(main.config)});
        const k = await p.findKey("cu-root-key");
        const pt = await p.aesGcmDecrypt(k, Buffer.from("${toHex(iv)}", "hex"), Buffer.from("${toHex(ct)}", "hex"));
        const s = await p.findKey("cu-signing-key");
        const sig = await p.sign(s, "SHA-384", new TextEncoder().encode("hello"));
        let value = "readable";
        try { await p.readKeyValue(k); } catch (e) { value = e.code; }
        console.log(JSON.stringify({ pt: new TextDecoder().decode(pt), bits: k.bits, curve: s.curve, sig: Buffer.from(sig).toString("hex"), value }));
        await p.close();
      `;
      const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...process.env } });
      expect(r.stderr).not.toContain("error");
      const out = JSON.parse(r.stdout.trim().split("\n").pop() as string);
      expect(out.pt).toBe("survives restarts");
      expect(out.bits).toBe(256);
      expect(out.curve).toBe("P-384");
      expect(out.value).toBe("forbidden");
      expect(await web.verify(pair.publicKey, "SHA-384", new TextEncoder().encode("hello"), fromHex(out.sig))).toBe(true);

      // In this process too: handles found by label work after the provider is reopened.
      const again = await p11.findKey("cu-signing-key");
      expect(again.publicKey && toHex(again.publicKey)).toBe(toHex(pair.publicKey.material));
      expect((await appError(p11.findKey("no-such-key"))).code).toBe("not_found");
    });
  });
}
