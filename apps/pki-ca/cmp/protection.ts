/**
 * CMP message protection (RFC 9810 §5.1.3): password-based MAC (RFC 4211 §4.4 PBMParameter:
 * a one-way function iterated over secret ‖ salt, then an HMAC) and signatures, checked on
 * requests and written on answers. Also the CMP RA: the key and certificate that sign answers
 * to signature-protected requests (one per issuing CA, digitalSignature, `pki_cas` row
 * `cmp-ra-<type>`, renewed as the SCEP RA and the OCSP responders are).
 *
 * Guarantees: MACs are compared in constant time; the iteration count is bounded (a request
 * cannot make the server hash without end); only SHA-1/SHA-2 one-way functions and HMACs, and
 * ECDSA, RSA PKCS#1 v1.5 and Ed25519 signatures with SHA-2 are accepted.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import type { DataProtector } from "../../../src/service/context.ts";
import { verifyBySpki } from "../../../src/pki/csr.ts";
import { signDer } from "../../../src/pki/signing.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { delegatedCertificate, loadOrCreate, renewalDue, renewOne, type IssuingCa, type Signer } from "../hierarchy.ts";
import type { PkiStore } from "../store.ts";
import { algorithmOf, children, CmpAsnError, contentOf, intDer, intOf, octets, oidDer, seq, topLevel } from "./asn1.ts";
import { PASSWORD_BASED_MAC } from "./message.ts";

const HASHES: Record<string, string> = {
  "1.3.14.3.2.26": "sha1",
  "2.16.840.1.101.3.4.2.1": "sha256",
  "2.16.840.1.101.3.4.2.2": "sha384",
  "2.16.840.1.101.3.4.2.3": "sha512",
};
const HMACS: Record<string, string> = {
  "1.3.6.1.5.5.8.1.2": "sha1",
  "1.2.840.113549.2.7": "sha1",
  "1.2.840.113549.2.9": "sha256",
  "1.2.840.113549.2.10": "sha384",
  "1.2.840.113549.2.11": "sha512",
};
const SIGNATURES: Record<string, { kind: "ecdsa" | "rsa" | "ed25519"; hash?: string }> = {
  "1.2.840.10045.4.3.2": { kind: "ecdsa", hash: "SHA-256" },
  "1.2.840.10045.4.3.3": { kind: "ecdsa", hash: "SHA-384" },
  "1.2.840.10045.4.3.4": { kind: "ecdsa", hash: "SHA-512" },
  "1.2.840.113549.1.1.11": { kind: "rsa", hash: "SHA-256" },
  "1.2.840.113549.1.1.12": { kind: "rsa", hash: "SHA-384" },
  "1.2.840.113549.1.1.13": { kind: "rsa", hash: "SHA-512" },
  "1.3.101.112": { kind: "ed25519" },
};
/** Bounds on PBM parameters a request may name. */
const MAX_ITERATIONS = 10_000;
const MIN_ITERATIONS = 100;

export interface PbmParameters {
  salt: Uint8Array;
  owf: string;
  iterations: number;
  mac: string;
}

/** Reads PBMParameter; throws `CmpAsnError` for an unsupported or out-of-bounds one. */
export function parsePbm(params: Uint8Array | undefined): PbmParameters {
  if (!params) throw new CmpAsnError("PBMParameter missing");
  const t = topLevel(params, 0x30);
  const [salt, owf, count, mac, ...rest] = children(params, t);
  if (!salt || !owf || !count || !mac || rest.length || salt.tag !== 0x04) throw new CmpAsnError("PBMParameter expected");
  const saltBytes = contentOf(params, salt);
  const owfOid = algorithmOf(params, owf).oid;
  const macOid = algorithmOf(params, mac).oid;
  const iterations = intOf(params, count);
  if (!HASHES[owfOid] || !HMACS[macOid]) throw new CmpAsnError("unsupported PBM one-way function or MAC");
  if (iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS || saltBytes.length < 8 || saltBytes.length > 64) throw new CmpAsnError("PBM iteration count or salt out of bounds");
  return { salt: saltBytes.slice(), owf: owfOid, iterations, mac: macOid };
}

/** PBMParameter DER. */
export function pbmParametersDer(p: PbmParameters): Uint8Array {
  return seq(octets(p.salt), seq(oidDer(p.owf)), intDer(p.iterations), seq(oidDer(p.mac)));
}

/** The PBM of `data` under `secret` (RFC 4211 §4.4). */
export function pbm(secret: Uint8Array, p: PbmParameters, data: Uint8Array): Uint8Array {
  const owf = HASHES[p.owf]!;
  let key = createHash(owf).update(secret).update(p.salt).digest();
  for (let i = 1; i < p.iterations; i++) key = createHash(owf).update(key).digest();
  return new Uint8Array(createHmac(HMACS[p.mac]!, key).update(data).digest());
}

/** True when `mac` is the PBM of `data` (constant-time comparison). */
export function pbmValid(secret: Uint8Array, p: PbmParameters, data: Uint8Array, mac: Uint8Array): boolean {
  const expected = pbm(secret, p, data);
  return expected.length === mac.length && timingSafeEqual(expected, mac);
}

/** The answer's PBM parameters: the request's functions and count, a fresh salt. */
export const answerPbm = (req: PbmParameters): PbmParameters => ({ ...req, salt: new Uint8Array(randomBytes(16)) });

/** The protectionAlg DER of a PBM. */
export const pbmAlgorithmDer = (p: PbmParameters) => seq(oidDer(PASSWORD_BASED_MAC), pbmParametersDer(p));

/** Verifies a signature protection with the signer's certificate. */
export function signatureValid(alg: string, signer: x509.X509Certificate, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  return spkiSignatureValid(alg, new Uint8Array(signer.publicKey.rawData), data, signature);
}

/** Verifies a signature with a SubjectPublicKeyInfo (a CRMF POPO, a message protection). */
export async function spkiSignatureValid(alg: string, spki: Uint8Array, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
  const sig = SIGNATURES[alg];
  if (!sig) return false;
  try {
    const key = new x509.PublicKey(spki.slice().buffer as ArrayBuffer);
    const keyAlg = key.algorithm as Algorithm & { namedCurve?: string };
    return await verifyBySpki(key.rawData, keyAlg, sig, data.slice().buffer as ArrayBuffer, signature.slice().buffer as ArrayBuffer);
  } catch {
    return false;
  }
}

export const isSignatureAlgorithm = (oid: string) => oid in SIGNATURES;

// --- The CMP RA: signs answers to signature-protected requests. ---

export const cmpRaId = (ca: IssuingCa) => `cmp-ra-${ca.keyType.toLowerCase()}`;

export interface CmpRa {
  signer: Signer;
  issuing: IssuingCa;
  /** Signs DER; returns the AlgorithmIdentifier DER and the signature. */
  sign(data: Uint8Array): Promise<{ algorithm: Uint8Array; signature: Uint8Array }>;
}

const raCertificate = (keys: CryptoKeyPair, subject: string | x509.Name, ca: IssuingCa, hours: number) => delegatedCertificate(keys, subject, ca, hours, x509.KeyUsageFlags.digitalSignature, []);

function toRa(signer: Signer, issuing: IssuingCa): CmpRa {
  return {
    signer,
    issuing,
    async sign(data) {
      const { algorithm, signature } = await signDer(signer.keyType, signer.key, data.slice().buffer as ArrayBuffer);
      return { algorithm: new Uint8Array(AsnConvert.serialize(algorithm)), signature: new Uint8Array(signature) };
    },
  };
}

/** The CMP RA of an issuing CA (same key type), created on first use. */
export async function loadOrCreateCmpRa(store: PkiStore, protector: DataProtector, issuing: IssuingCa, hours: number): Promise<CmpRa> {
  const signer = await loadOrCreate(store, protector, cmpRaId(issuing), issuing.keyType, (keys) => raCertificate(keys, `CN=cryptoutil pki-ca CMP RA ${issuing.keyType}, O=cryptoutil`, issuing, hours), issuing.id);
  return toRa(signer, issuing);
}

/** The RA renewed (fresh key, same subject) when less than `fraction` of its validity remains; else undefined. */
export async function renewCmpRaIfDue(store: PkiStore, protector: DataProtector, ra: CmpRa, hours: number, fraction: number, now = Date.now()): Promise<CmpRa | undefined> {
  if (!renewalDue(ra.signer.cert, now, fraction)) return undefined;
  const next = await renewOne(store, protector, ra.signer, ra.issuing.cert.notAfter, (keys) => raCertificate(keys, ra.signer.cert.subjectName, ra.issuing, hours));
  return next ? toRa(next, ra.issuing) : undefined;
}
