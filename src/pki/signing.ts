/**
 * Key types of the certificate authority and how each one signs: WebCrypto
 * generation parameters, the X.509 signing algorithm, and raw DER signing for
 * structures `@peculiar/x509` does not build (OCSP responses, time-stamps).
 *
 * Guarantees: keys come from WebCrypto only; ECDSA signatures are re-encoded
 * from WebCrypto's r||s form into the DER ECDSA-Sig-Value X.509 expects.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import * as x509 from "./x509.ts";
import { rawToDer } from "./ecdsa-signature.ts";

/** Key types an issuing CA can have. */
export const CA_KEY_TYPES = ["P-256", "P-384", "RSA-3072", "Ed25519"] as const;
export type CaKeyType = (typeof CA_KEY_TYPES)[number];

/** Key types a subject key may have (what a CSR can carry). */
export const SUBJECT_KEY_TYPES = ["P-256", "P-384", "P-521", "RSA-2048", "RSA-3072", "RSA-4096", "Ed25519"] as const;
export type SubjectKeyType = (typeof SUBJECT_KEY_TYPES)[number];

/** WebCrypto generation parameters of a CA key type. */
export function keyGenParams(t: CaKeyType): Algorithm {
  switch (t) {
    case "P-256":
    case "P-384":
      return { name: "ECDSA", namedCurve: t } as EcKeyGenParams;
    case "RSA-3072":
      return { name: "RSASSA-PKCS1-v1_5", modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as RsaHashedKeyGenParams;
    case "Ed25519":
      return { name: "Ed25519" };
  }
}

/** The signing algorithm (for `@peculiar/x509` and WebCrypto `sign`) of a CA key type. */
export function signingAlgorithm(t: CaKeyType): Algorithm {
  switch (t) {
    case "P-256":
      return { name: "ECDSA", hash: "SHA-256" } as EcdsaParams;
    case "P-384":
      return { name: "ECDSA", hash: "SHA-384" } as EcdsaParams;
    case "RSA-3072":
      return { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } as Algorithm;
    case "Ed25519":
      return { name: "Ed25519" };
  }
}

/** A new key pair of the given type; extractable only so it can be sealed for storage. */
export async function generateCaKey(t: CaKeyType): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(keyGenParams(t) as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** Imports a stored PKCS#8 private key of a CA key type. */
export function importCaKey(t: CaKeyType, pkcs8: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("pkcs8", pkcs8.slice().buffer as ArrayBuffer, keyGenParams(t) as EcKeyImportParams, false, ["sign"]);
}

/** The subject key type of a public key, or a description of why it is not one we know. */
export function subjectKeyType(alg: Algorithm & { namedCurve?: string; modulusLength?: number }): SubjectKeyType | string {
  if (alg.name === "ECDSA" || alg.name === "ECDH") return alg.namedCurve && ["P-256", "P-384", "P-521"].includes(alg.namedCurve) ? (alg.namedCurve as SubjectKeyType) : `EC ${alg.namedCurve ?? "unknown curve"}`;
  if (alg.name === "RSASSA-PKCS1-v1_5" || alg.name === "RSA-PSS" || alg.name === "RSA-OAEP") return `RSA-${alg.modulusLength ?? 0}`;
  if (alg.name === "Ed25519") return "Ed25519";
  return alg.name;
}

const algorithms = new x509.AlgorithmProvider();

/** The AlgorithmIdentifier of a CA key type's signatures (the same value `signDer` returns). */
export function signatureAlgorithmId(t: CaKeyType): AlgorithmIdentifier {
  let id = algorithmIds.get(t);
  if (!id) {
    // Re-parsed so it is an instance of the @peculiar/asn1-x509 class every consumer shares.
    id = AsnConvert.parse(AsnConvert.serialize(algorithms.toAsnAlgorithm(signingAlgorithm(t))), AlgorithmIdentifier);
    algorithmIds.set(t, id);
  }
  return id;
}
const algorithmIds = new Map<CaKeyType, AlgorithmIdentifier>();

/** Signs DER `tbs` with a CA key; returns the AlgorithmIdentifier and the X.509-form signature. */
export async function signDer(t: CaKeyType, key: CryptoKey, tbs: ArrayBuffer): Promise<{ algorithm: AlgorithmIdentifier; signature: ArrayBuffer }> {
  const alg = signingAlgorithm(t);
  const raw = await crypto.subtle.sign(alg as EcdsaParams, key, tbs);
  const signature = alg.name === "ECDSA" ? (rawToDer(new Uint8Array(raw)).buffer as ArrayBuffer) : raw;
  return { algorithm: signatureAlgorithmId(t), signature };
}
