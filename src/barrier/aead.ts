/**
 * The primitives the barrier needs, behind one small interface so the WebCrypto default
 * can later be swapped for the project's crypto dispatcher.
 *
 * Guarantees of the WebCrypto implementation: AES-256-GCM with a 128-bit tag; keys are
 * imported or derived as non-extractable `CryptoKey`s usable only for encrypt/decrypt;
 * authentication failure is one error, with no detail about why. Constant time is the
 * runtime's WebCrypto's (BoringSSL / OpenSSL AES-NI in Bun, Deno and Node).
 */

/** AES-256-GCM and HKDF-SHA-256 for the barrier. */
export interface BarrierCrypto {
  /** Imports 32 raw bytes as a non-extractable AES-256-GCM key. The caller zeroes `raw`. */
  importKey(raw: Uint8Array): Promise<CryptoKey>;
  /** HKDF-SHA-256(ikm, salt, info) -> non-extractable AES-256-GCM key (first 32 bytes of OKM). */
  deriveKey(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array): Promise<CryptoKey>;
  /** Returns ciphertext || 16-byte tag. `iv` must be 12 bytes and never reused with `key`. */
  encrypt(key: CryptoKey, iv: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Inverse of `encrypt`; rejects (any error) when the tag, key, iv or aad do not match. */
  decrypt(key: CryptoKey, iv: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Cryptographically secure random bytes. */
  randomBytes(length: number): Uint8Array;
}

// WebCrypto typings want ArrayBuffer-backed views; copy-free when they already are.
function buf(u: Uint8Array): Uint8Array<ArrayBuffer> {
  return u.buffer instanceof ArrayBuffer ? (u as Uint8Array<ArrayBuffer>) : new Uint8Array(u);
}

/** The default `BarrierCrypto`, over the runtime's `crypto.subtle`. */
export const webCryptoBarrierCrypto: BarrierCrypto = {
  importKey(raw) {
    if (raw.length !== 32) throw new RangeError("AES-256 key must be 32 bytes");
    return crypto.subtle.importKey("raw", buf(raw), { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
  },
  async deriveKey(ikm, salt, info) {
    const base = await crypto.subtle.importKey("raw", buf(ikm), "HKDF", false, ["deriveKey"]);
    return crypto.subtle.deriveKey(
      { name: "HKDF", hash: "SHA-256", salt: buf(salt), info: buf(info) },
      base,
      { name: "AES-GCM", length: 256 },
      false,
      ["encrypt", "decrypt"],
    );
  },
  async encrypt(key, iv, plaintext, aad) {
    const out = await crypto.subtle.encrypt(
      { name: "AES-GCM", iv: buf(iv), additionalData: buf(aad), tagLength: 128 },
      key,
      buf(plaintext),
    );
    return new Uint8Array(out);
  },
  async decrypt(key, iv, ciphertext, aad) {
    const out = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: buf(iv), additionalData: buf(aad), tagLength: 128 },
      key,
      buf(ciphertext),
    );
    return new Uint8Array(out);
  },
  randomBytes(length) {
    return crypto.getRandomValues(new Uint8Array(length));
  },
};
