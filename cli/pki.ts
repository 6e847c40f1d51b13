/**
 * What the `ca` commands do on the user's machine: key pairs (WebCrypto), PKCS#10 requests
 * (@peculiar/x509), PEM files, and OCSP (RFC 6960) requests and the verification of their
 * answers (@peculiar/asn1-ocsp, signatures checked with node:crypto against the CA chain).
 * Private keys exist only in memory and in the PKCS#8 file written 0600.
 */
import * as x509 from "../src/pki/x509.ts";
import { toPem } from "../src/pki/keys.ts";
import { OcspCheckError, verifyOcspResponse as verifyAnswer, type OcspStatus } from "../src/pki/ocsp-client.ts";
import { canonicalIp } from "../src/pki/sans.ts";
import { FailedError, UsageError } from "./errors.ts";

export interface KeySpec {
  kty: "EC" | "RSA" | "OKP";
  curve?: string;
  size?: number;
}

interface KeyAlg {
  gen: Algorithm;
  sign: Algorithm;
  describe: string;
}

/** The WebCrypto algorithms of `--kty/--curve/--size` (defaults: EC P-256, RSA 3072, OKP Ed25519). */
export function keyAlgorithm(s: KeySpec): KeyAlg {
  const kty = s.kty.toUpperCase();
  if (kty === "EC") {
    const curve = s.curve ?? "P-256";
    if (curve !== "P-256" && curve !== "P-384") throw new UsageError("--curve for EC keys is P-256 or P-384");
    return { gen: { name: "ECDSA", namedCurve: curve } as EcKeyGenParams, sign: { name: "ECDSA", hash: curve === "P-384" ? "SHA-384" : "SHA-256" } as EcdsaParams, describe: `EC ${curve}` };
  }
  if (kty === "RSA") {
    const size = s.size ?? 3072;
    if (![2048, 3072, 4096].includes(size)) throw new UsageError("--size for RSA keys is 2048, 3072 or 4096");
    const gen = { name: "RSASSA-PKCS1-v1_5", modulusLength: size, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as RsaHashedKeyGenParams;
    return { gen, sign: gen, describe: `RSA ${size}` };
  }
  if (kty === "OKP") {
    if ((s.curve ?? "Ed25519") !== "Ed25519") throw new UsageError("--curve for OKP keys is Ed25519");
    return { gen: { name: "Ed25519" }, sign: { name: "Ed25519" }, describe: "Ed25519" };
  }
  throw new UsageError("--kty is EC, RSA or OKP");
}

export async function generateKeyPair(alg: KeyAlg): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(alg.gen as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function privateKeyPem(keys: CryptoKeyPair): Promise<string> {
  return toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey)));
}

export async function publicKeyPem(keys: CryptoKeyPair): Promise<string> {
  return toPem("PUBLIC KEY", new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)));
}

/** A SAN by its look: `upn:name@domain` (a Microsoft UPN), an IP address, an e-mail address, a URI, else a DNS name. */
export function sanOf(value: string): x509.JsonGeneralName {
  const upn = /^upn:(.+)$/i.exec(value);
  if (upn) {
    if (!/^[^@\s]+@[^@\s]+$/.test(upn[1]!)) throw new UsageError(`'${value}' is not upn:name@domain`);
    return { type: "upn", value: upn[1]! };
  }
  if (canonicalIp(value)) return { type: "ip", value };
  if (/^[^@\s]+@[^@\s]+$/.test(value)) return { type: "email", value };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return { type: "url", value };
  if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/.test(value)) throw new UsageError(`'${value}' is not a DNS name, IP address, e-mail address, URI or upn:name@domain`);
  return { type: "dns", value };
}

/** A PKCS#10 request for `subject` (the CN) and the SANs, signed with the new key. */
export async function makeCsr(subject: string, sans: string[], keys: CryptoKeyPair, alg: KeyAlg): Promise<string> {
  const extensions: x509.Extension[] = [];
  if (sans.length) extensions.push(new x509.SubjectAlternativeNameExtension(sans.map(sanOf)));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [subject] }], keys, signingAlgorithm: alg.sign, extensions });
  return csr.toString("pem");
}

/** `24h`, `30d` or a date (`2027-01-01`, ISO 8601): the validity in whole days the CA takes. */
export function validityDays(notAfter: string, now = Date.now()): number {
  const rel = /^(\d{1,6})([hd])$/.exec(notAfter);
  let ms: number;
  if (rel) ms = Number(rel[1]) * (rel[2] === "h" ? 3_600_000 : 86_400_000);
  else {
    const t = Date.parse(notAfter);
    if (Number.isNaN(t)) throw new UsageError(`--not-after takes 24h, 30d or a date such as 2027-01-01, not '${notAfter}'`);
    ms = t - now;
  }
  if (ms <= 0) throw new UsageError("--not-after is in the past");
  return Math.max(1, Math.ceil(ms / 86_400_000));
}

/** Every certificate in a PEM text, in order. */
export function certificatesIn(pem: string, what: string): x509.X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new UsageError(`${what} holds no PEM certificate`);
  try {
    return blocks.map((b) => new x509.X509Certificate(b));
  } catch {
    throw new UsageError(`${what} holds a certificate that does not parse`);
  }
}

export { ocspRequest, serialOf, type OcspStatus } from "../src/pki/ocsp-client.ts";

/** Checks an OCSP answer (src/pki/ocsp-client.ts); an answer that cannot be trusted is a FailedError. */
export async function verifyOcspResponse(body: Uint8Array, cert: x509.X509Certificate, issuer: x509.X509Certificate, nonce: ArrayBuffer): Promise<OcspStatus> {
  try {
    return await verifyAnswer(body, cert, issuer, nonce);
  } catch (e) {
    throw e instanceof OcspCheckError ? new FailedError(e.message) : e;
  }
}
