/**
 * A fast path for signing many leaf certificates under one issuer. The TBSCertificate is
 * concatenated from DER pieces: the CSR's own subject and SubjectPublicKeyInfo (copied
 * verbatim, never re-encoded), the issuer's subject, and extensions the caller encodes once;
 * then signed with `signDer`. `@peculiar/x509`'s generator does the same through key
 * import/export round trips and a generic ASN.1 serializer, about 4 ms per certificate.
 *
 * Guarantees: the CSR must already have been parsed and its signature verified (see csr.ts);
 * the DER walk here still checks every tag and length against the buffer bounds and throws
 * `malformed_input` on anything unexpected. Inner and outer signature AlgorithmIdentifiers
 * are the same bytes; the serial is written as given (the caller lints it positive and
 * minimal); validity is UTCTime through 2049 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { createHash } from "node:crypto";
import type { Extension } from "@peculiar/asn1-x509";
import { AppError } from "../service/errors.ts";
import { signDer, signatureAlgorithmId, type CaKeyType } from "./signing.ts";
import type * as x509 from "./x509.ts";

export interface LeafIssuer {
  keyType: CaKeyType;
  key: CryptoKey;
  cert: x509.X509Certificate;
}

export interface LeafParams {
  serialHex: string;
  /** DER of the PKCS#10 request: its subject and public key are copied unchanged. */
  csrDer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** DER of each Extension, in order; the subject key identifier is appended. */
  extensions: Uint8Array[];
}

interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

function readTlv(b: Uint8Array, at: number, limit: number, tag: number): Tlv {
  if (at + 2 > limit || b[at] !== tag) throw bad();
  let len = b[at + 1]!;
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || p + n > limit) throw bad();
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | b[p + i]!;
    p += n;
  }
  if (p + len > limit) throw bad();
  return { tag, start: at, contentStart: p, end: p + len };
}

const bad = () => new AppError("malformed_input", "the request's DER structure is not as expected");

/** DER encoding of a tag and content. */
export function derTlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(1 + len.length + n);
  out[0] = tag;
  out.set(len, 1);
  let o = 1 + len.length;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The CSR's subject Name and SubjectPublicKeyInfo, as their DER bytes, and the public key bits. */
export function csrParts(csr: Uint8Array): { subject: Uint8Array; spki: Uint8Array; keyBits: Uint8Array } {
  const outer = readTlv(csr, 0, csr.length, 0x30);
  const cri = readTlv(csr, outer.contentStart, outer.end, 0x30);
  const version = readTlv(csr, cri.contentStart, cri.end, 0x02);
  const subject = readTlv(csr, version.end, cri.end, 0x30);
  const spki = readTlv(csr, subject.end, cri.end, 0x30);
  const alg = readTlv(csr, spki.contentStart, spki.end, 0x30);
  const bits = readTlv(csr, alg.end, spki.end, 0x03);
  if (bits.end - bits.contentStart < 2) throw bad();
  return { subject: csr.subarray(subject.start, subject.end), spki: csr.subarray(spki.start, spki.end), keyBits: csr.subarray(bits.contentStart + 1, bits.end) };
}

/** The subject Name DER of a certificate. */
function certSubject(der: Uint8Array): Uint8Array {
  const outer = readTlv(der, 0, der.length, 0x30);
  const tbs = readTlv(der, outer.contentStart, outer.end, 0x30);
  let p = tbs.contentStart;
  if (der[p] === 0xa0) p = readTlv(der, p, tbs.end, 0xa0).end;
  p = readTlv(der, p, tbs.end, 0x02).end; // serial
  p = readTlv(der, p, tbs.end, 0x30).end; // signature
  p = readTlv(der, p, tbs.end, 0x30).end; // issuer
  p = readTlv(der, p, tbs.end, 0x30).end; // validity
  const subject = readTlv(der, p, tbs.end, 0x30);
  return der.slice(subject.start, subject.end);
}

/** DER of an Extension given as a `@peculiar/x509` or `@peculiar/asn1-x509` object. */
export function extensionDer(e: x509.Extension | Extension): Uint8Array {
  return "rawData" in e ? new Uint8Array(e.rawData) : new Uint8Array(AsnConvert.serialize(e));
}

/**
 * DER of a non-critical subjectAltName Extension (RFC 5280 §4.2.1.6). Names must already be
 * validated: DNS names, emails and URIs are written as IA5String bytes, IPs as 4 or 16 octets,
 * UPNs as otherName `[0] { 1.3.6.1.4.1.311.20.2.3, [0] EXPLICIT UTF8String }`.
 */
export function subjectAltNameDer(names: { dns: string[]; ips: Uint8Array[]; emails: string[]; uris?: string[]; upns?: string[] }): Uint8Array {
  const enc = new TextEncoder();
  const general = [
    ...(names.upns ?? []).map((u) => derTlv(0xa0, UPN_OID, derTlv(0xa0, derTlv(0x0c, enc.encode(u))))),
    ...names.emails.map((e) => derTlv(0x81, enc.encode(e))),
    ...names.dns.map((d) => derTlv(0x82, enc.encode(d))),
    ...(names.uris ?? []).map((u) => derTlv(0x86, enc.encode(u))),
    ...names.ips.map((ip) => derTlv(0x87, ip)),
  ];
  return derTlv(0x30, SAN_OID, derTlv(0x04, derTlv(0x30, ...general)));
}
const SAN_OID = new Uint8Array([0x06, 0x03, 0x55, 0x1d, 0x11]);
/** OBJECT IDENTIFIER 1.3.6.1.4.1.311.20.2.3 (Microsoft User Principal Name). */
const UPN_OID = new Uint8Array([0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x14, 0x02, 0x03]);

function time(d: Date): Uint8Array {
  const y = d.getUTCFullYear();
  const two = (n: number) => String(n).padStart(2, "0");
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  const utc = y >= 1950 && y < 2050;
  return derTlv(utc ? 0x17 : 0x18, new TextEncoder().encode(`${utc ? two(y % 100) : String(y).padStart(4, "0")}${rest}`));
}

function nibble(c: number): number {
  // 0-9, a-f, A-F (checked by signLeaf).
  return c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57;
}

function hexBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = (nibble(hex.charCodeAt(i * 2)) << 4) | nibble(hex.charCodeAt(i * 2 + 1));
  return out;
}

const VERSION_V3 = new Uint8Array([0xa0, 0x03, 0x02, 0x01, 0x02]);
/** Extension prefix of subjectKeyIdentifier: OID 2.5.29.14, then OCTET STRING { OCTET STRING (20) }. */
const SKI_PREFIX = new Uint8Array([0x06, 0x03, 0x55, 0x1d, 0x0e, 0x04, 0x16, 0x04, 0x14]);
const issuerSubjects = new WeakMap<x509.X509Certificate, Uint8Array>();
const algorithmDers = new Map<CaKeyType, Uint8Array>();

/** Signs a leaf certificate; returns its DER. */
export async function signLeaf(issuer: LeafIssuer, p: LeafParams): Promise<Uint8Array> {
  let issuerName = issuerSubjects.get(issuer.cert);
  if (!issuerName) {
    issuerName = certSubject(new Uint8Array(issuer.cert.rawData));
    issuerSubjects.set(issuer.cert, issuerName);
  }
  let alg = algorithmDers.get(issuer.keyType);
  if (!alg) {
    alg = new Uint8Array(AsnConvert.serialize(signatureAlgorithmId(issuer.keyType)));
    algorithmDers.set(issuer.keyType, alg);
  }
  if (!/^([0-9a-fA-F]{2}){1,20}$/.test(p.serialHex)) throw new AppError("bad_request", "the serial must be 1 to 20 octets of hex");
  const { subject, spki, keyBits } = csrParts(p.csrDer);
  // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
  // Synchronous (a 20-byte identifier, not a security function): no async round trip per
  // certificate; node:crypto's native hash costs about a third of a JS one here.
  const ski = derTlv(0x30, SKI_PREFIX, new Uint8Array(createHash("sha1").update(keyBits).digest()));
  const tbs = derTlv(
    0x30,
    VERSION_V3,
    derTlv(0x02, hexBytes(p.serialHex)),
    alg,
    issuerName,
    derTlv(0x30, time(p.notBefore), time(p.notAfter)),
    subject,
    spki,
    derTlv(0xa3, derTlv(0x30, ...p.extensions, ski)),
  );
  const { signature } = await signDer(issuer.keyType, issuer.key, tbs.slice().buffer as ArrayBuffer);
  return derTlv(0x30, tbs, alg, derTlv(0x03, new Uint8Array([0]), new Uint8Array(signature)));
}
