/**
 * PKCS#10 certificate signing requests (RFC 2986): decoding and proof of possession.
 *
 * Guarantees: input is size-capped, accepted as one PEM block or base64 DER only,
 * and parsed by `@peculiar/x509`; any parse failure is `malformed_input` (400),
 * never an unhandled error. `verifyPossession` checks the CSR's self-signature,
 * which proves the requester holds the private key of the public key it asks for; on
 * its WebCrypto path it also requires strict DER lengths and a signature BIT STRING
 * with no unused bits, so it never accepts a CSR the library's verifier refuses.
 */
import { AppError } from "../service/errors.ts";
import { fromBase64 } from "./codec.ts";
import { subjectKeyType, type SubjectKeyType } from "./signing.ts";
import * as x509 from "./x509.ts";

/** Larger than any real CSR (an RSA-4096 request with many SANs is under 8 KiB). */
export const MAX_CSR_BYTES = 64 * 1024;

/** What a CA needs to know about a request, read once from the CSR. */
export interface ParsedCsr {
  csr: x509.Pkcs10CertificateRequest;
  der: Uint8Array;
  subject: string;
  commonName?: string;
  keyType: SubjectKeyType | string;
  dns: string[];
  ips: string[];
  emails: string[];
  uris: string[];
}

/** Decodes a CSR given as PEM (`-----BEGIN CERTIFICATE REQUEST-----`) or base64 DER. */
export function decodeCsr(text: string): Uint8Array {
  if (text.length > MAX_CSR_BYTES * 2) throw new AppError("payload_too_large", "the CSR is too large");
  const t = text.trim();
  let b64: string;
  const pem = /^-----BEGIN (NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (NEW )?CERTIFICATE REQUEST-----$/.exec(t);
  if (pem) b64 = pem[2]!.replace(/\s+/g, "");
  else if (/^[A-Za-z0-9+/=_\-\s]+$/.test(t)) b64 = t.replace(/\s+/g, "").replace(/-/g, "+").replace(/_/g, "/");
  else throw new AppError("malformed_input", "the CSR must be PEM or base64 DER");
  try {
    const der = fromBase64(b64);
    if (der.length === 0 || der.length > MAX_CSR_BYTES) throw new Error("size");
    return der;
  } catch (cause) {
    throw new AppError("malformed_input", "the CSR is not valid base64", { cause });
  }
}

/** Parses DER CSR bytes; throws `malformed_input` on anything that is not a PKCS#10 request. */
export function parseCsr(der: Uint8Array): ParsedCsr {
  let csr: x509.Pkcs10CertificateRequest;
  let keyAlg: Algorithm;
  try {
    csr = new x509.Pkcs10CertificateRequest(der.slice().buffer as ArrayBuffer);
    keyAlg = csr.publicKey.algorithm;
    void csr.subject;
  } catch (cause) {
    throw new AppError("malformed_input", "the CSR is not a valid PKCS#10 request", { cause });
  }
  const out: ParsedCsr = { csr, der, subject: csr.subject, keyType: subjectKeyType(keyAlg as never), dns: [], ips: [], emails: [], uris: [] };
  try {
    const cn = csr.subjectName.getField("CN");
    if (cn.length > 1) throw new AppError("malformed_input", "the CSR subject has more than one common name");
    out.commonName = cn[0];
    const ext = csr.getExtension("2.5.29.17");
    const san = ext ? new x509.SubjectAlternativeNameExtension(ext.rawData) : undefined;
    for (const n of san?.names.items ?? []) {
      if (n.type === "dns") out.dns.push(n.value.toLowerCase());
      else if (n.type === "ip") out.ips.push(n.value);
      else if (n.type === "email") out.emails.push(n.value);
      else if (n.type === "url") out.uris.push(n.value);
      else throw new AppError("malformed_input", `the CSR asks for an unsupported SAN type ${n.type}`);
    }
  } catch (cause) {
    if (cause instanceof AppError) throw cause;
    throw new AppError("malformed_input", "the CSR's subject or extensions cannot be read", { cause });
  }
  return out;
}

/**
 * Signature algorithms verified directly with WebCrypto, keyed by the hex of the OID's DER
 * content; anything else (RSA-PSS, SHA-1) goes through `@peculiar/x509`.
 */
const DIRECT: Record<string, { hash?: string; kind: "ecdsa" | "rsa" | "ed25519" }> = {
  "2a8648ce3d040302": { kind: "ecdsa", hash: "SHA-256" }, // 1.2.840.10045.4.3.2
  "2a8648ce3d040303": { kind: "ecdsa", hash: "SHA-384" }, // 1.2.840.10045.4.3.3
  "2a8648ce3d040304": { kind: "ecdsa", hash: "SHA-512" }, // 1.2.840.10045.4.3.4
  "2a864886f70d01010b": { kind: "rsa", hash: "SHA-256" }, // 1.2.840.113549.1.1.11
  "2a864886f70d01010c": { kind: "rsa", hash: "SHA-384" }, // 1.2.840.113549.1.1.12
  "2a864886f70d01010d": { kind: "rsa", hash: "SHA-512" }, // 1.2.840.113549.1.1.13
  "2b6570": { kind: "ed25519" }, // 1.3.101.112
};
const ecFormatter = new x509.AsnEcSignatureFormatter();

/**
 * True when the CSR's signature verifies under its own public key (proof of possession).
 * The common algorithms are checked with WebCrypto over the exact CertificationRequestInfo
 * bytes; others (RSA-PSS, SHA-1) through the library's own verifier.
 */
export async function verifyPossession(p: ParsedCsr): Promise<boolean> {
  try {
    const { info, spki, signature, oidHex } = csrSignedParts(p.der);
    const alg = DIRECT[oidHex];
    if (!alg) return await p.csr.verify();
    return await verifyBySpki(spki, p.csr.publicKey.algorithm as Algorithm & { namedCurve?: string }, alg, info, signature);
  } catch {
    return false;
  }
}

/**
 * Verifies `signature` over `data` with a SubjectPublicKeyInfo, for a signature of the given
 * kind (ECDSA signatures in their DER form, as X.509 and openssl write them). False on any
 * mismatch of key and signature kind.
 */
export async function verifyBySpki(
  spki: ArrayBuffer,
  keyAlg: Algorithm & { namedCurve?: string },
  sig: { kind: "ecdsa" | "rsa" | "ed25519"; hash?: string },
  data: ArrayBuffer,
  signature: ArrayBuffer,
): Promise<boolean> {
  if (sig.kind === "ecdsa") {
    if (keyAlg.name !== "ECDSA") return false;
    const params = { name: "ECDSA", namedCurve: keyAlg.namedCurve! };
    const key = await crypto.subtle.importKey("spki", spki, params, false, ["verify"]);
    const raw = ecFormatter.toWebSignature(params, signature);
    if (!raw) return false;
    return crypto.subtle.verify({ name: "ECDSA", hash: sig.hash! }, key, raw, data);
  }
  if (sig.kind === "rsa") {
    if (!keyAlg.name.startsWith("RSA")) return false;
    const key = await crypto.subtle.importKey("spki", spki, { name: "RSASSA-PKCS1-v1_5", hash: sig.hash! }, false, ["verify"]);
    return crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, signature, data);
  }
  if (keyAlg.name !== "Ed25519") return false;
  const key = await crypto.subtle.importKey("spki", spki, { name: "Ed25519" }, false, ["verify"]);
  return crypto.subtle.verify("Ed25519", key, signature, data);
}

/** The signed CertificationRequestInfo bytes, the SubjectPublicKeyInfo and the signature value of a CSR. */
function csrSignedParts(der: Uint8Array): { info: ArrayBuffer; spki: ArrayBuffer; signature: ArrayBuffer; oidHex: string } {
  const outer = tlv(der, 0, der.length, 0x30);
  const info = tlv(der, outer.contentStart, outer.end, 0x30);
  const version = tlv(der, info.contentStart, info.end, 0x02);
  const subject = tlv(der, version.end, info.end, 0x30);
  const spki = tlv(der, subject.end, info.end, 0x30);
  const sigAlg = tlv(der, info.end, outer.end, 0x30);
  const oid = tlv(der, sigAlg.contentStart, sigAlg.end, 0x06);
  const sig = tlv(der, sigAlg.end, outer.end, 0x03);
  if (sig.end - sig.contentStart < 2 || der[sig.contentStart] !== 0) throw new Error("signature bits");
  const copy = (a: number, b: number) => der.slice(a, b).buffer as ArrayBuffer;
  const oidHex = Array.from(der.subarray(oid.contentStart, oid.end), (x) => x.toString(16).padStart(2, "0")).join("");
  return { info: copy(info.start, info.end), spki: copy(spki.start, spki.end), signature: copy(sig.contentStart + 1, sig.end), oidHex };
}

function tlv(b: Uint8Array, at: number, limit: number, tag: number): { start: number; contentStart: number; end: number } {
  if (at + 2 > limit || b[at] !== tag) throw new Error("unexpected DER");
  let len = b[at + 1]!;
  let q = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || q + n > limit) throw new Error("bad DER length");
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | b[q + i]!;
    q += n;
  }
  if (q + len > limit) throw new Error("DER past its end");
  return { start: at, contentStart: q, end: q + len };
}
