/**
 * Key helpers for the X.509 layer: P-256 key generation, PKCS#8 PEM encoding and
 * the check that a private key belongs to a certificate.
 *
 * Guarantees: keys come from WebCrypto only; `privateKeyMatchesCertificate`
 * compares the public point/modulus derived from the private key with the
 * certificate's SubjectPublicKeyInfo (public values, so no constant time needed).
 */
import { AppError } from "../service/errors.ts";
import * as x509 from "./x509.ts";
import { toBase64 } from "./codec.ts";

/** The curve and signature algorithm of every key the suite CA makes. */
export const P256: EcKeyGenParams = { name: "ECDSA", namedCurve: "P-256" };
export const ECDSA_SHA256: EcdsaParams = { name: "ECDSA", hash: "SHA-256" };

/** A new P-256 key pair; `extractable` is needed only when the private key must be stored or handed to TLS. */
export async function generateP256(extractable: boolean): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(P256, extractable, ["sign", "verify"])) as CryptoKeyPair;
}

/** Encodes DER bytes as one PEM block with 64-column lines (RFC 7468). */
export function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = toBase64(der instanceof Uint8Array ? der : new Uint8Array(der));
  let body = "";
  for (let i = 0; i < b64.length; i += 64) body += `${b64.slice(i, i + 64)}\n`;
  return `-----BEGIN ${label}-----\n${body}-----END ${label}-----\n`;
}

/** The PKCS#8 DER of an extractable private key. */
export async function exportPkcs8(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key));
}

/** Imports a P-256 ECDSA private key from PKCS#8 DER. */
export async function importP256Pkcs8(der: Uint8Array, extractable: boolean): Promise<CryptoKey> {
  return crypto.subtle.importKey("pkcs8", toArrayBuffer(der), P256, extractable, ["sign"]);
}

/** Copies bytes into a fresh ArrayBuffer (WebCrypto and the x509 library want exactly that). */
export function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer;
}

/** The WebCrypto import parameters matching a certificate's public key algorithm. */
function importParamsFor(cert: x509.X509Certificate): { alg: Algorithm; usages: KeyUsage[] } {
  const a = cert.publicKey.algorithm as Algorithm & { namedCurve?: string };
  switch (a.name) {
    case "ECDSA":
      return { alg: { name: "ECDSA", namedCurve: a.namedCurve } as EcKeyImportParams, usages: ["sign"] };
    case "RSASSA-PKCS1-v1_5":
    case "RSA-PSS":
      return { alg: { name: a.name, hash: "SHA-256" } as RsaHashedImportParams, usages: ["sign"] };
    case "Ed25519":
      return { alg: { name: "Ed25519" }, usages: ["sign"] };
    default:
      throw new AppError("config_invalid", `unsupported certificate key algorithm ${a.name}`);
  }
}

/**
 * Imports a PKCS#8 private key with the algorithm of `cert` and checks that its
 * public half is the certificate's public key. Returns the imported key.
 *
 * @throws AppError("config_invalid") when the key cannot be parsed or does not match.
 */
export async function importKeyForCertificate(
  pkcs8: Uint8Array,
  cert: x509.X509Certificate,
  what: string,
): Promise<CryptoKey> {
  const { alg, usages } = importParamsFor(cert);
  let priv: CryptoKey;
  try {
    priv = await crypto.subtle.importKey("pkcs8", toArrayBuffer(pkcs8), alg, true, usages);
  } catch (cause) {
    throw new AppError("config_invalid", `${what}: private key is not a valid PKCS#8 ${alg.name} key for the certificate's algorithm`, { cause });
  }
  const privJwk = await crypto.subtle.exportKey("jwk", priv);
  const pubJwk = await crypto.subtle.exportKey("jwk", await cert.publicKey.export(alg, ["verify"]));
  // The private JWK carries the public values (x/y, n/e or x): comparing them binds key to certificate.
  const fields = privJwk.kty === "RSA" ? (["n", "e"] as const) : (["crv", "x", "y"] as const);
  const same = fields.every((f) => privJwk[f] === pubJwk[f]);
  if (!same) {
    throw new AppError("config_invalid", `${what}: private key does not match the certificate's public key`);
  }
  return priv;
}
