/**
 * The keyring's token objects (`TokenKeyObjects`) against a real SoftHSM2 token: generation
 * of every key kind (AES, HMAC, EC P-256/P-384/P-521, RSA, Ed25519) with the protection
 * attributes, imports checked against WebCrypto and RFC 8032 known answers, each operation
 * cross-checked with WebCrypto, and the refusals (labels, kinds, bad points, tags).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { AppError } from "../../src/service/errors.ts";
import { Pkcs11Provider, TokenKeyObjects, type TokenKeySpec } from "../../src/crypto/pkcs11/index.ts";
import { oaepDecode } from "../../src/keyring/jwe-parts.ts";
import { setupSoftHsm, type SoftHsm } from "../support/softhsm.ts";
import { appError } from "../support/app-error.ts";

const hsm: SoftHsm | undefined = await setupSoftHsm();
const fromHex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));
const b64u = (b: Uint8Array) => Buffer.from(b).toString("base64url");
const subtle = crypto.subtle;


if (hsm) {
  let p11: Pkcs11Provider;
  let objects: TokenKeyObjects;
  let n = 0;
  const at = () => ({ label: `objects-test-${++n}`, id: (n + 256).toString(16).padStart(4, "0") });

  beforeAll(async () => {
    const token = hsm.createToken("cu-objects");
    p11 = await Pkcs11Provider.open(token.config);
    objects = new TokenKeyObjects(p11);
  });

  afterAll(async () => {
    await p11?.close();
    hsm.cleanup();
  });

  describe("generated keys sign in the token; WebCrypto verifies with the public JWK", () => {
    const cases: Array<[string, TokenKeySpec, "ES256" | "ES384" | "ES512" | "RS256" | "PS256" | "EdDSA", AlgorithmIdentifier | EcdsaParams | RsaPssParams]> = [
      ["P-256", { type: "ec", curve: "P-256", use: "sign" }, "ES256", { name: "ECDSA", hash: "SHA-256" }],
      ["P-384", { type: "ec", curve: "P-384", use: "sign" }, "ES384", { name: "ECDSA", hash: "SHA-384" }],
      ["P-521", { type: "ec", curve: "P-521", use: "sign" }, "ES512", { name: "ECDSA", hash: "SHA-512" }],
      ["RSA PKCS#1 v1.5", { type: "rsa", bits: 2048, use: "sign" }, "RS256", { name: "RSASSA-PKCS1-v1_5" }],
      ["RSA-PSS", { type: "rsa", bits: 2048, use: "sign" }, "PS256", { name: "RSA-PSS", saltLength: 32 }],
      ["Ed25519", { type: "ed25519" }, "EdDSA", { name: "Ed25519" }],
    ];
    for (const [name, spec, alg, verifyAlg] of cases) {
      test(name, async () => {
        expect(objects.supports(spec)).toBe(true);
        const obj = await objects.generate(spec, at());
        expect(obj.publicJwk).toBeDefined();
        expect(obj.publicJwk!.d).toBeUndefined();
        const importAlg =
          alg === "EdDSA" ? { name: "Ed25519" } : alg.startsWith("ES") ? { name: "ECDSA", namedCurve: spec.type === "ec" ? spec.curve : "" } : { name: (verifyAlg as { name: string }).name, hash: "SHA-256" };
        const pub = await subtle.importKey("jwk", obj.publicJwk as JsonWebKey, importAlg, false, ["verify"]);
        const msg = new TextEncoder().encode(`message for ${name}`);
        const sig = await objects.sign(obj, alg, msg);
        expect(await subtle.verify(verifyAlg, pub, new Uint8Array(sig), msg)).toBe(true);
        expect(await subtle.verify(verifyAlg, pub, new Uint8Array(sig), new TextEncoder().encode("other"))).toBe(false);
        expect(await objects.protection(obj)).toEqual({ sensitive: true, extractable: false, neverExtractable: true, persistent: true });
        expect((await appError(objects.readValue(obj))).code).toBe("forbidden");
      });
    }
  });

  test("Ed25519 import gives RFC 8032's signature (test 1)", async () => {
    const d = fromHex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    const x = fromHex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    const obj = await objects.import({ type: "ed25519" }, { kty: "OKP", crv: "Ed25519", x: b64u(x), d: b64u(d) }, at());
    const sig = await objects.sign(obj, "EdDSA", new Uint8Array(0));
    expect(Buffer.from(sig).toString("hex")).toBe(
      "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    );
    expect(await objects.protection(obj)).toMatchObject({ sensitive: true, extractable: false });
  });

  test("HMAC and AES-GCM of imported keys match WebCrypto's", async () => {
    const k = crypto.getRandomValues(new Uint8Array(64));
    const mac = await objects.import({ type: "hmac", bytes: 64 }, { kty: "oct", k: b64u(k) }, at());
    const ref = await subtle.importKey("raw", k, { name: "HMAC", hash: "SHA-512" }, false, ["sign"]);
    const data = crypto.getRandomValues(new Uint8Array(100));
    expect(Buffer.from(await objects.hmac(mac, "SHA-512", data))).toEqual(Buffer.from(await subtle.sign("HMAC", ref, data)));

    const a = crypto.getRandomValues(new Uint8Array(32));
    const aes = await objects.import({ type: "aes" }, { kty: "oct", k: b64u(a) }, at());
    const aref = await subtle.importKey("raw", a, "AES-GCM", false, ["encrypt", "decrypt"]);
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const aad = new TextEncoder().encode("header");
    const ct = await objects.aesGcmEncrypt(aes, iv, data, aad);
    expect(Buffer.from(ct)).toEqual(Buffer.from(await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad }, aref, data)));
    expect(Buffer.from(await objects.aesGcmDecrypt(aes, iv, ct, aad))).toEqual(Buffer.from(data));
    ct[0]! ^= 1;
    expect((await appError(objects.aesGcmDecrypt(aes, iv, ct, aad))).code).toBe("decryption_failed");
  });

  test("AES key wrap matches WebCrypto's RFC 3394 output; a tampered wrap is decryption_failed", async () => {
    const a = crypto.getRandomValues(new Uint8Array(32));
    const kek = await objects.import({ type: "aes" }, { kty: "oct", k: b64u(a) }, at());
    const cek = crypto.getRandomValues(new Uint8Array(32));
    const wrapped = await objects.aesKwWrap(kek, cek);
    const ref = await subtle.importKey("raw", a, "AES-KW", false, ["wrapKey"]);
    const c = await subtle.importKey("raw", cek, { name: "HMAC", hash: "SHA-256" }, true, ["sign"]);
    expect(Buffer.from(wrapped)).toEqual(Buffer.from(await subtle.wrapKey("raw", c, ref, "AES-KW")));
    expect(Buffer.from(await objects.aesKwUnwrap(kek, wrapped))).toEqual(Buffer.from(cek));
    wrapped[5]! ^= 1;
    expect((await appError(objects.aesKwUnwrap(kek, wrapped))).code).toBe("decryption_failed");
  });

  test("ECDH in the token gives WebCrypto's shared secret; a point off the curve is refused", async () => {
    for (const curve of ["P-256", "P-384"] as const) {
      const obj = await objects.generate({ type: "ec", curve, use: "derive" }, at());
      const peer = await subtle.generateKey({ name: "ECDH", namedCurve: curve }, true, ["deriveBits"]);
      const peerPoint = new Uint8Array(await subtle.exportKey("raw", peer.publicKey));
      const mine = await subtle.importKey("jwk", obj.publicJwk as JsonWebKey, { name: "ECDH", namedCurve: curve }, false, []);
      const bits = curve === "P-256" ? 256 : 384;
      const expected = new Uint8Array(await subtle.deriveBits({ name: "ECDH", public: mine }, peer.privateKey, bits));
      expect(Buffer.from(await objects.ecdh(obj, peerPoint))).toEqual(Buffer.from(expected));
      const off = peerPoint.slice();
      off[off.length - 1]! ^= 1;
      expect((await appError(objects.ecdh(obj, off))).code).toBe("malformed_input");
      // A derive key does not sign, and a signing key does not derive.
      expect((await appError(objects.sign(obj, curve === "P-256" ? "ES256" : "ES384", new Uint8Array(1)))).code).toBe("bad_request");
    }
  });

  test("raw RSA in the token with OAEP decoding opens WebCrypto's RSA-OAEP-256; bad padding is caught", async () => {
    const pair = (await subtle.generateKey({ name: "RSA-OAEP", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, true, [
      "encrypt",
      "decrypt",
    ])) as CryptoKeyPair;
    const jwk = await subtle.exportKey("jwk", pair.privateKey);
    const obj = await objects.import({ type: "rsa", bits: 2048, use: "decrypt" }, jwk as Record<string, unknown>, at());
    const cek = crypto.getRandomValues(new Uint8Array(32));
    const c = new Uint8Array(await subtle.encrypt({ name: "RSA-OAEP" }, pair.publicKey, cek));
    const em = await objects.rsaDecryptRaw(obj, c);
    expect(em.length).toBe(256);
    expect(Buffer.from(oaepDecode(em)!)).toEqual(Buffer.from(cek));
    for (const i of [0, 5, 40, 200]) {
      const bad = em.slice();
      bad[i]! ^= 0x10;
      expect(oaepDecode(bad)).toBeUndefined();
    }
    expect((await appError(objects.rsaDecryptRaw(obj, new Uint8Array(256).fill(0xff)))).code).toBe("decryption_failed");
    expect((await appError(objects.sign(obj, "RS256", new Uint8Array(1)))).code).toBe("bad_request");
  });

  describe("references and refusals", () => {
    test("find by label and id after re-opening; wrong kind is stored_material_corrupt; destroy removes every object", async () => {
      const ref = at();
      const made = await objects.generate({ type: "ec", curve: "P-384", use: "sign" }, ref);
      expect((await appError(objects.generate({ type: "aes" }, ref))).code).toBe("conflict");
      const again = new TokenKeyObjects(p11);
      const found = await again.find(made.ref, { type: "ec", curve: "P-384", use: "sign" });
      const sig = await again.sign(found, "ES384", new Uint8Array([1, 2, 3]));
      const pub = await subtle.importKey("jwk", made.publicJwk as JsonWebKey, { name: "ECDSA", namedCurve: "P-384" }, false, ["verify"]);
      expect(await subtle.verify({ name: "ECDSA", hash: "SHA-384" }, pub, new Uint8Array(sig), new Uint8Array([1, 2, 3]))).toBe(true);
      expect((await appError(again.find(made.ref, { type: "rsa", bits: 2048, use: "sign" }))).code).toBe("stored_material_corrupt");
      expect((await appError(again.find({ ...made.ref, token: "another" }, { type: "ec", curve: "P-384", use: "sign" }))).code).toBe("not_found");
      expect(await again.destroy(made.ref)).toBe(2); // private and public objects
      expect((await appError(again.find(made.ref, { type: "ec", curve: "P-384", use: "sign" }))).code).toBe("not_found");
      expect(await again.destroy(made.ref)).toBe(0);
    });

    test("bad labels, ids, sizes and operations are malformed_input or bad_request", async () => {
      expect((await appError(objects.generate({ type: "aes" }, { label: "", id: "00" }))).code).toBe("malformed_input");
      expect((await appError(objects.generate({ type: "aes" }, { label: "x", id: "XYZ" }))).code).toBe("malformed_input");
      expect((await appError(objects.generate({ type: "hmac", bytes: 8 }, at()))).code).toBe("malformed_input");
      expect((await appError(objects.generate({ type: "rsa", bits: 1024, use: "sign" }, at()))).code).toBe("malformed_input");
      const aes = await objects.generate({ type: "aes" }, at());
      expect((await appError(objects.aesGcmEncrypt(aes, new Uint8Array(16), new Uint8Array(4)))).code).toBe("malformed_input");
      expect((await appError(objects.hmac(aes, "SHA-256", new Uint8Array(4)))).code).toBe("bad_request");
      expect((await appError(objects.aesKwWrap(aes, new Uint8Array(10)))).code).toBe("malformed_input");
      expect((await appError(objects.import({ type: "aes" }, { kty: "oct", k: b64u(new Uint8Array(16)) }, at()))).code).toBe("malformed_input");
      expect((await appError(objects.import({ type: "ec", curve: "P-256", use: "sign" }, { kty: "EC", x: "!!", y: "AA", d: "AA" }, at()))).code).toBe("malformed_input");
    });
  });
}
