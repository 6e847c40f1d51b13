/**
 * sm-kms's raw operations: the key ring's keys used without JOSE framing, in the forms that
 * PKCS#11 mechanisms take and give (the PKCS#11 module in providers/pkcs11 forwards to these).
 * No HTTP here.
 *
 * Guarantees:
 * - The padding family is the key's own: an RS256 key signs PKCS#1 v1.5 only, a PS256 key PSS
 *   only, an RSA-OAEP-256 key does OAEP with SHA-256 only, an ES key ECDSA only; the hash of a
 *   signature is the caller's (PKCS#11 signs any digest), checked against its length.
 * - Signing and encrypting use the current version; a caller that names another version (it
 *   holds an older public key) gets 409 `key_version_not_current` instead of a signature that
 *   its public key does not verify. Decrypt and verify take any version above the minimum.
 * - Every failure to verify is `signature_invalid`, to decrypt `decryption_failed`.
 * - AES-GCM takes the caller's IV as PKCS#11 does; reusing an IV with one key breaks GCM, and the
 *   caller owns that (without an IV a fresh random one is made and returned).
 * - HSM-held keys: AES-GCM (96-bit IV), ECDSA with the key's own hash and OAEP decrypt run in the
 *   token; pre-hashed signing and raw RSA padding there are `raw_op_not_in_hsm` (422).
 */
import { constants, createPublicKey, privateDecrypt, privateEncrypt, publicDecrypt, publicEncrypt, type KeyObject } from "node:crypto";
import { p256, p384, p521 } from "@noble/curves/nist.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { AppError } from "../../src/service/errors.ts";
import { equalBytes } from "../../src/crypto/constant-time.ts";
import { decryptionFailed, signatureInvalid, keyPublicOnly } from "../../src/keyring/jose-ops.ts";
import { oaepDecode } from "../../src/keyring/jwe-parts.ts";
import type { ActiveVersion, Keyring } from "../../src/keyring/index.ts";
import type { RawDecryptInput, RawEncryptInput, RawHash, RawSignInput, RawSignMechanism, RawVerifyInput } from "../../schemas/sm-kms-raw.ts";
import { b64u, fromB64u } from "./domain.ts";

const HASH = { "SHA-256": sha256, "SHA-384": sha384, "SHA-512": sha512 } as const;
const HASH_LEN = { "SHA-256": 32, "SHA-384": 48, "SHA-512": 64 } as const;
/** DER DigestInfo prefixes (RFC 8017 §9.2 note 1). */
const DIGEST_INFO: Record<RawHash, Uint8Array> = {
  "SHA-256": Uint8Array.from([0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20]),
  "SHA-384": Uint8Array.from([0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30]),
  "SHA-512": Uint8Array.from([0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40]),
};
const CURVES = { ES256: p256, ES384: p384, ES512: p521 } as const;
const KEY_HASH: Record<string, RawHash> = { ES256: "SHA-256", ES384: "SHA-384", ES512: "SHA-512" };

const mechanismNotAllowed = (mechanism: string, alg: string) =>
  new AppError("mechanism_not_allowed", `${mechanism} is not a mechanism of ${alg} keys`);
const notInHsm = (what: string) => new AppError("raw_op_not_in_hsm", `${what} is not available for keys held in the HSM`);
const notCurrent = (current: number) =>
  new AppError("key_version_not_current", `only the current version (${current}) signs and encrypts; read its public key again`);

type Family = "ecdsa" | "pkcs1" | "pss";
function familyOf(m: RawSignMechanism): Family {
  return m.startsWith("ECDSA") ? "ecdsa" : m.endsWith("PKCS") ? "pkcs1" : "pss";
}
const FAMILY_OF_ALG: Record<string, Family> = { ES256: "ecdsa", ES384: "ecdsa", ES512: "ecdsa", RS256: "pkcs1", PS256: "pss" };

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}

function mgf1(hash: RawHash, seed: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let c = 0, o = 0; o < len; c++) {
    const block = HASH[hash](concat(seed, Uint8Array.from([c >>> 24, (c >>> 16) & 255, (c >>> 8) & 255, c & 255])));
    out.set(block.subarray(0, Math.min(block.length, len - o)), o);
    o += block.length;
  }
  return out;
}

/** EMSA-PSS-ENCODE (RFC 8017 §9.1.1) of a digest, left-padded to `k` bytes for the raw RSA step. */
function pssEncode(mHash: Uint8Array, hash: RawHash, sLen: number, modBits: number, k: number): Uint8Array {
  const hLen = HASH_LEN[hash];
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  if (emLen < hLen + sLen + 2) throw new AppError("validation_failed", "the salt is too long for this key");
  const salt = crypto.getRandomValues(new Uint8Array(sLen));
  const h = HASH[hash](concat(new Uint8Array(8), mHash, salt));
  const db = new Uint8Array(emLen - hLen - 1);
  db[db.length - sLen - 1] = 1;
  db.set(salt, db.length - sLen);
  const mask = mgf1(hash, h, db.length);
  for (let i = 0; i < db.length; i++) db[i]! ^= mask[i]!;
  db[0]! &= 0xff >>> (8 * emLen - emBits);
  const em = concat(db, h, Uint8Array.of(0xbc));
  return concat(new Uint8Array(k - emLen), em);
}

/** EMSA-PSS-VERIFY (RFC 8017 §9.1.2) of `em` (the raw RSA public result, `k` bytes). */
function pssVerify(mHash: Uint8Array, raw: Uint8Array, hash: RawHash, sLen: number, modBits: number): boolean {
  const hLen = HASH_LEN[hash];
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const em = raw.subarray(raw.length - emLen);
  if (raw.subarray(0, raw.length - emLen).some((b) => b !== 0)) return false;
  if (emLen < hLen + sLen + 2 || em[emLen - 1] !== 0xbc) return false;
  const masked = em.subarray(0, emLen - hLen - 1);
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  if ((masked[0]! & ~(0xff >>> (8 * emLen - emBits)) & 0xff) !== 0) return false;
  const mask = mgf1(hash, h, masked.length);
  const db = masked.map((b, i) => b ^ mask[i]!);
  db[0]! &= 0xff >>> (8 * emLen - emBits);
  const psLen = emLen - hLen - sLen - 2;
  if (db.subarray(0, psLen).some((b) => b !== 0) || db[psLen] !== 1) return false;
  const salt = db.subarray(db.length - sLen);
  return equalBytes(HASH[hash](concat(new Uint8Array(8), mHash, salt)), h);
}

function hashOfDigest(digest: Uint8Array): RawHash {
  const h = (Object.keys(HASH_LEN) as RawHash[]).find((k) => HASH_LEN[k] === digest.length);
  if (!h) throw new AppError("validation_failed", "a digest is 32, 48 or 64 bytes");
  return h;
}

function gcmParams(iv: Uint8Array, aad: Uint8Array | undefined): AesGcmParams {
  const params: AesGcmParams = { name: "AES-GCM", iv: iv as Uint8Array<ArrayBuffer>, tagLength: 128 };
  if (aad) params.additionalData = aad as Uint8Array<ArrayBuffer>;
  return params;
}

const modulusBits = (key: KeyObject) => key.asymmetricKeyDetails?.modulusLength ?? 0;

export class RawOps {
  /** Public keys of versions as node KeyObjects, by their opened version. */
  private readonly publicKeys = new WeakMap<object, KeyObject>();
  /**
   * EC private scalars for signing a caller's digest (WebCrypto cannot), kept as long as the
   * opened version's KeyObject is (the keyring's cache of opened versions): exporting the key
   * again for every signature costs more than the signature.
   */
  private readonly scalars = new WeakMap<KeyObject, Uint8Array>();

  constructor(private readonly ring: Keyring) {}

  private async signing(tenant: string, id: string, version: number | undefined): Promise<ActiveVersion> {
    const active = await this.ring.current(tenant, id, ["sign"]);
    if (version !== undefined && version !== active.version) throw notCurrent(active.version);
    return active;
  }

  private publicKeyOf(active: ActiveVersion): KeyObject {
    let k = this.publicKeys.get(active.usable);
    if (!k) {
      if (!active.usable.publicJwk) throw new AppError("key_not_asymmetric", "only asymmetric keys have a public key");
      k = createPublicKey({ key: active.usable.publicJwk as never, format: "jwk" });
      this.publicKeys.set(active.usable, k);
    }
    return k;
  }

  private scalarOf(raw: KeyObject): Uint8Array {
    let d = this.scalars.get(raw);
    if (!d) this.scalars.set(raw, (d = fromB64u(raw.export({ format: "jwk" }).d!)));
    return d;
  }

  private check(active: ActiveVersion, mechanism: RawSignMechanism): Family {
    const family = familyOf(mechanism);
    if (FAMILY_OF_ALG[active.spec.jose] !== family) throw mechanismNotAllowed(mechanism, active.spec.name);
    return family;
  }

  /** The digest a signature covers, and its hash (the hashing mechanisms hash `data`). */
  private digestOf(mechanism: RawSignMechanism, data: Uint8Array, pss?: { hash: RawHash }): { digest: Uint8Array; hash: RawHash } {
    if (mechanism.includes("SHA256")) return { digest: sha256(data), hash: "SHA-256" };
    if (mechanism.includes("SHA384")) return { digest: sha384(data), hash: "SHA-384" };
    if (mechanism === "RSA-PKCS") return { digest: data, hash: "SHA-256" }; // a DigestInfo, signed as given
    const hash = hashOfDigest(data);
    if (pss && pss.hash !== hash) throw new AppError("validation_failed", `the digest is not a ${pss.hash} digest`);
    return { digest: data, hash };
  }

  async sign(tenant: string, id: string, input: RawSignInput): Promise<{ kid: string; signature: string }> {
    const active = await this.signing(tenant, id, input.version);
    const family = this.check(active, input.mechanism);
    const data = fromB64u(input.data);
    const { digest, hash } = this.digestOf(input.mechanism, data, input.pss);
    const raw = active.usable.raw;
    if (!raw) {
      const token = active.usable.token;
      if (!token) throw keyPublicOnly();
      // The token signs with the key's own hash over the data (ECDSA-SHA256 on P-256, …).
      if (family !== "ecdsa" || input.mechanism === "ECDSA" || KEY_HASH[active.spec.jose] !== hash) throw notInHsm(`${input.mechanism} on ${active.spec.name}`);
      return { kid: active.kid, signature: b64u(await token.objects.sign(token.object, active.spec.jose as "ES256", data)) };
    }
    let signature: Uint8Array;
    if (family === "ecdsa") {
      if (input.mechanism !== "ECDSA" && active.usable.secret) {
        signature = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash }, active.usable.secret, data as Uint8Array<ArrayBuffer>));
      } else {
        signature = CURVES[active.spec.jose as keyof typeof CURVES].sign(digest, this.scalarOf(raw), { prehash: false });
      }
    } else if (family === "pkcs1") {
      const t = input.mechanism === "RSA-PKCS" ? digest : concat(DIGEST_INFO[hash], digest);
      if (t.length > modulusBits(raw) / 8 - 11) throw new AppError("validation_failed", "the input is too long for this key");
      signature = new Uint8Array(privateEncrypt({ key: raw, padding: constants.RSA_PKCS1_PADDING }, t));
    } else {
      const sLen = input.pss?.salt_length ?? HASH_LEN[hash];
      const k = Math.ceil(modulusBits(raw) / 8);
      signature = new Uint8Array(privateDecrypt({ key: raw, padding: constants.RSA_NO_PADDING }, pssEncode(digest, hash, sLen, modulusBits(raw), k)));
    }
    return { kid: active.kid, signature: b64u(signature) };
  }

  async verify(tenant: string, id: string, input: RawVerifyInput): Promise<{ valid: true; kid: string }> {
    const active = input.version === undefined ? await this.ring.current(tenant, id, ["sign"]) : await this.ring.version(tenant, id, input.version, ["sign"]);
    const family = this.check(active, input.mechanism);
    const { digest, hash } = this.digestOf(input.mechanism, fromB64u(input.data), input.pss);
    const sig = fromB64u(input.signature);
    const pub = this.publicKeyOf(active);
    let ok = false;
    try {
      if (family === "ecdsa") {
        const jwk = active.usable.publicJwk!;
        const point = concat(Uint8Array.of(4), fromB64u(jwk.x!), fromB64u(jwk.y!));
        ok = CURVES[active.spec.jose as keyof typeof CURVES].verify(sig, digest, point, { prehash: false, lowS: false });
      } else if (family === "pkcs1") {
        const t = input.mechanism === "RSA-PKCS" ? digest : concat(DIGEST_INFO[hash], digest);
        ok = equalBytes(new Uint8Array(publicDecrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, sig)), t);
      } else {
        const k = Math.ceil(modulusBits(pub) / 8);
        if (sig.length !== k) throw signatureInvalid();
        const em = new Uint8Array(publicEncrypt({ key: pub, padding: constants.RSA_NO_PADDING }, sig));
        ok = pssVerify(digest, em, hash, input.pss?.salt_length ?? HASH_LEN[hash], modulusBits(pub));
      }
    } catch (e) {
      if (e instanceof AppError) throw e;
      ok = false;
    }
    if (!ok) throw signatureInvalid();
    return { valid: true, kid: active.kid };
  }

  private checkCipher(active: ActiveVersion, input: RawEncryptInput | RawDecryptInput): void {
    const alg = active.spec.jose;
    if (input.mechanism === "AES-GCM" ? alg !== "dir" : alg !== "RSA-OAEP-256") throw mechanismNotAllowed(input.mechanism, active.spec.name);
    if (input.mechanism === "RSA-OAEP" && (input.hash ?? "SHA-256") !== "SHA-256") throw new AppError("validation_failed", "RSA-OAEP-256 keys use SHA-256 for OAEP and MGF1");
    if (input.mechanism === "RSA-OAEP" && (input.iv !== undefined || input.aad !== undefined)) throw new AppError("validation_failed", "RSA-OAEP takes no iv or aad");
  }

  async encrypt(tenant: string, id: string, input: RawEncryptInput): Promise<{ kid: string; ciphertext: string; iv?: string }> {
    const active = await this.ring.current(tenant, id, ["encrypt"]);
    if (input.version !== undefined && input.version !== active.version) throw notCurrent(active.version);
    this.checkCipher(active, input);
    const plaintext = fromB64u(input.plaintext);
    if (input.mechanism === "RSA-OAEP") {
      const out = publicEncrypt({ key: this.publicKeyOf(active), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, plaintext);
      return { kid: active.kid, ciphertext: b64u(new Uint8Array(out)) };
    }
    const iv = input.iv !== undefined ? fromB64u(input.iv) : crypto.getRandomValues(new Uint8Array(12));
    if (iv.length === 0) throw new AppError("validation_failed", "the IV is empty");
    const aad = input.aad === undefined ? undefined : fromB64u(input.aad);
    const token = active.usable.token;
    let out: Uint8Array;
    if (token) {
      if (iv.length !== 12) throw notInHsm("AES-GCM with an IV other than 96 bits");
      out = await token.objects.aesGcmEncrypt(token.object, iv, plaintext, aad);
    } else {
      if (!active.usable.secret) throw keyPublicOnly();
      out = new Uint8Array(await crypto.subtle.encrypt(gcmParams(iv, aad), active.usable.secret, plaintext as Uint8Array<ArrayBuffer>));
    }
    return { kid: active.kid, ciphertext: b64u(out), iv: b64u(iv) };
  }

  async decrypt(tenant: string, id: string, input: RawDecryptInput): Promise<{ kid: string; plaintext: string }> {
    const active = input.version === undefined ? await this.ring.current(tenant, id, ["encrypt"]) : await this.ring.version(tenant, id, input.version, ["encrypt"]);
    this.checkCipher(active, input);
    const ciphertext = fromB64u(input.ciphertext);
    const token = active.usable.token;
    let out: Uint8Array;
    if (input.mechanism === "RSA-OAEP") {
      if (token) {
        const em = await token.objects.rsaDecryptRaw(token.object, ciphertext).catch(() => {
          throw decryptionFailed();
        });
        const m = oaepDecode(em);
        if (!m) throw decryptionFailed();
        out = m;
      } else {
        if (!active.usable.raw) throw keyPublicOnly();
        try {
          out = new Uint8Array(privateDecrypt({ key: active.usable.raw, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, ciphertext));
        } catch {
          throw decryptionFailed();
        }
      }
      return { kid: active.kid, plaintext: b64u(out) };
    }
    if (input.iv === undefined) throw new AppError("validation_failed", "AES-GCM decryption needs the iv");
    const iv = fromB64u(input.iv);
    const aad = input.aad === undefined ? undefined : fromB64u(input.aad);
    if (ciphertext.length < 16 || iv.length === 0) throw decryptionFailed();
    if (token) {
      if (iv.length !== 12) throw notInHsm("AES-GCM with an IV other than 96 bits");
      out = await token.objects.aesGcmDecrypt(token.object, iv, ciphertext, aad);
    } else {
      if (!active.usable.secret) throw keyPublicOnly();
      try {
        out = new Uint8Array(await crypto.subtle.decrypt(gcmParams(iv, aad), active.usable.secret, ciphertext as Uint8Array<ArrayBuffer>));
      } catch {
        throw decryptionFailed();
      }
    }
    return { kid: active.kid, plaintext: b64u(out) };
  }
}
