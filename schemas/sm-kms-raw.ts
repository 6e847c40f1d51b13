/**
 * Schemas of sm-kms's raw operations (`/keys/{id}/raw/*`): signatures and ciphertexts without
 * JOSE framing, in the forms PKCS#11 mechanisms produce (ECDSA r||s, PKCS#1 v1.5 and PSS
 * signatures over a caller's digest, RSA-OAEP, AES-GCM ciphertext||tag).
 */
import * as v from "valibot";
import { b64u, MAX_DATA_BYTES } from "./keyring.ts";

/**
 * `ECDSA`, `RSA-PKCS` and `RSA-PSS` take what the caller hashed (a digest; for `RSA-PKCS` a
 * DigestInfo); the others hash `data` themselves.
 */
export const RAW_SIGN_MECHANISMS = ["ECDSA", "ECDSA-SHA256", "ECDSA-SHA384", "RSA-PKCS", "SHA256-RSA-PKCS", "RSA-PSS", "SHA256-RSA-PSS"] as const;
export type RawSignMechanism = (typeof RAW_SIGN_MECHANISMS)[number];
export const RAW_CIPHER_MECHANISMS = ["AES-GCM", "RSA-OAEP"] as const;
export type RawCipherMechanism = (typeof RAW_CIPHER_MECHANISMS)[number];
export const RAW_HASHES = ["SHA-256", "SHA-384", "SHA-512"] as const;
export type RawHash = (typeof RAW_HASHES)[number];

const version = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(999_999_999)));
/** PSS parameters: the hash of the digest and of MGF1, and the salt length in bytes. */
const Pss = v.strictObject({ hash: v.picklist(RAW_HASHES), salt_length: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(64)) });

export const RawSignRequest = v.strictObject({
  mechanism: v.picklist(RAW_SIGN_MECHANISMS),
  data: b64u(MAX_DATA_BYTES),
  /** The version the caller holds the public key of; signing needs it to be the current one. */
  version,
  pss: v.optional(Pss),
});
export const RawSignResult = v.object({ kid: v.string(), signature: v.string() });

export const RawVerifyRequest = v.strictObject({
  mechanism: v.picklist(RAW_SIGN_MECHANISMS),
  data: b64u(MAX_DATA_BYTES),
  signature: b64u(1024),
  /** Default: the current version. */
  version,
  pss: v.optional(Pss),
});
export const RawVerifyResult = v.object({ valid: v.literal(true), kid: v.string() });

const cipherFields = {
  mechanism: v.picklist(RAW_CIPHER_MECHANISMS),
  /** AES-GCM: 1..64 bytes. */
  iv: v.optional(b64u(64)),
  /** AES-GCM additional authenticated data. */
  aad: v.optional(b64u(MAX_DATA_BYTES)),
  /** RSA-OAEP: the hash of OAEP and MGF1; only the key's own SHA-256. */
  hash: v.optional(v.picklist(RAW_HASHES)),
  version,
};
export const RawEncryptRequest = v.strictObject({ ...cipherFields, plaintext: b64u(MAX_DATA_BYTES) });
/** AES-GCM: `ciphertext` ends with the 16-byte tag; `iv` is the one given, or a fresh 12-byte one. */
export const RawEncryptResult = v.object({ kid: v.string(), ciphertext: v.string(), iv: v.optional(v.string()) });
export const RawDecryptRequest = v.strictObject({ ...cipherFields, ciphertext: b64u(MAX_DATA_BYTES + 1024) });
export const RawDecryptResult = v.object({ kid: v.string(), plaintext: v.string() });

export type RawSignInput = v.InferOutput<typeof RawSignRequest>;
export type RawVerifyInput = v.InferOutput<typeof RawVerifyRequest>;
export type RawEncryptInput = v.InferOutput<typeof RawEncryptRequest>;
export type RawDecryptInput = v.InferOutput<typeof RawDecryptRequest>;
