/**
 * The ASN.1 of CMP (RFC 9810 Appendix F, explicit tags) and CRMF (RFC 4211, implicit tags) that
 * pki-ca reads and writes. No maintained package implements it for `@peculiar/asn1-schema`, so
 * the structures are written here: the certificate template and its parts as asn1-schema
 * classes (decorators applied by call, the project compiles without decorator syntax), the
 * message framing by a strict DER walk that keeps the exact bytes a protection covers.
 *
 * Guarantees: every read checks each tag and length against its enclosing element and fails
 * with `CmpAsnError`, never another exception; lengths use at most 3 octets (a message is far
 * below 16 MiB) and indefinite lengths are refused.
 */
import { AsnArray, AsnConvert, AsnIntegerArrayBufferConverter, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Extension, Extensions, Name, SubjectPublicKeyInfo, Time } from "@peculiar/asn1-x509";
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import { oidDer, utf8Der } from "../../../src/pki/der.ts";

export { oidDer };

export class CmpAsnError extends Error {}
const bad = (what: string) => new CmpAsnError(what);

/** One DER element inside a buffer. */
export interface Tlv {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

/** The element starting at `at`, which must end by `limit`. */
export function readTlv(b: Uint8Array, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw bad("truncated element");
  const tag = b[at]!;
  if ((tag & 0x1f) === 0x1f) throw bad("multi-octet tags are not used by CMP");
  let len = b[at + 1]!;
  let p = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3 || p + n > limit) throw bad("bad length");
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[p + i]!;
    p += n;
  }
  if (p + len > limit) throw bad("element overruns its container");
  return { tag, start: at, contentStart: p, end: p + len };
}

/** The elements inside a constructed element. */
export function children(b: Uint8Array, t: Tlv): Tlv[] {
  if (!(t.tag & 0x20)) throw bad("a constructed element was expected");
  const out: Tlv[] = [];
  for (let p = t.contentStart; p < t.end; ) {
    const c = readTlv(b, p, t.end);
    out.push(c);
    p = c.end;
    if (out.length > 1024) throw bad("too many elements");
  }
  return out;
}

/** The single top-level element of `b`, which must fill it. */
export function topLevel(b: Uint8Array, tag?: number): Tlv {
  const t = readTlv(b, 0, b.length);
  if (t.end !== b.length) throw bad("trailing bytes");
  if (tag !== undefined && t.tag !== tag) throw bad("unexpected type");
  return t;
}

export const bytesOf = (b: Uint8Array, t: Tlv) => b.subarray(t.start, t.end);
export const contentOf = (b: Uint8Array, t: Tlv) => b.subarray(t.contentStart, t.end);
export const ab = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;

/** The element of an EXPLICIT context tag's content. */
export function explicit(b: Uint8Array, t: Tlv): Tlv {
  const inner = readTlv(b, t.contentStart, t.end);
  if (inner.end !== t.end) throw bad("explicit tag with more than one element");
  return inner;
}

/** A small non-negative or negative INTEGER's value (at most 6 octets). */
export function intOf(b: Uint8Array, t: Tlv): number {
  if (t.tag !== 0x02 || t.end === t.contentStart || t.end - t.contentStart > 6) throw bad("INTEGER expected");
  let v = 0;
  for (let i = t.contentStart; i < t.end; i++) v = v * 256 + b[i]!;
  return b[t.contentStart]! & 0x80 ? v - 2 ** (8 * (t.end - t.contentStart)) : v;
}

/** DER INTEGER of a small number. */
export function intDer(n: number): Uint8Array {
  if (n < 0) {
    if (n === -1) return new Uint8Array([0x02, 0x01, 0xff]);
    throw new Error("negative integers other than -1 are not written");
  }
  const bytes: number[] = [];
  let x = n;
  do {
    bytes.unshift(x & 0xff);
    x = Math.floor(x / 256);
  } while (x > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return derTlv(0x02, new Uint8Array(bytes));
}

/** The dotted OID of an OBJECT IDENTIFIER element. */
export function oidOf(b: Uint8Array, t: Tlv): string {
  if (t.tag !== 0x06 || t.end === t.contentStart || t.end - t.contentStart > 64) throw bad("OBJECT IDENTIFIER expected");
  const parts: number[] = [];
  let v = 0;
  for (let i = t.contentStart; i < t.end; i++) {
    v = v * 128 + (b[i]! & 0x7f);
    if (!(b[i]! & 0x80)) {
      if (parts.length === 0) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
      else parts.push(v);
      v = 0;
    }
  }
  return parts.join(".");
}


export const seq = (...parts: Uint8Array[]) => derTlv(0x30, ...parts);
export const octets = (b: Uint8Array) => derTlv(0x04, b);
/** An EXPLICIT context-specific [n] around one element. */
export const ctx = (n: number, inner: Uint8Array) => derTlv(0xa0 | n, inner);
export const utf8 = utf8Der;
export const NULL_DER = new Uint8Array([0x05, 0x00]);

/** A BIT STRING with no unused bits. */
export const bitString = (b: Uint8Array) => derTlv(0x03, new Uint8Array([0]), b);

/** The bytes of a BIT STRING element (unused bits must be 0). */
export function bitStringBytes(b: Uint8Array, t: Tlv): Uint8Array {
  if (t.tag !== 0x03 || t.end === t.contentStart || b[t.contentStart] !== 0) throw bad("BIT STRING (whole octets) expected");
  return b.subarray(t.contentStart + 1, t.end);
}

/** A named-bit BIT STRING (PKIFailureInfo) with the given bits set, in DER's minimal form. */
export function namedBits(bits: number[]): Uint8Array {
  if (bits.length === 0) return new Uint8Array([0x03, 0x01, 0x00]);
  const max = Math.max(...bits);
  const bytes = new Uint8Array((max >> 3) + 1);
  for (const n of bits) bytes[n >> 3]! |= 0x80 >> (n & 7);
  const unused = 7 - (max & 7);
  return derTlv(0x03, new Uint8Array([unused]), bytes);
}

/** The bit numbers set in a named-bit BIT STRING. */
export function namedBitsOf(b: Uint8Array, t: Tlv): number[] {
  if (t.tag !== 0x03 || t.end === t.contentStart) throw bad("BIT STRING expected");
  const out: number[] = [];
  for (let i = t.contentStart + 1; i < t.end; i++) for (let k = 0; k < 8; k++) if (b[i]! & (0x80 >> k)) out.push((i - t.contentStart - 1) * 8 + k);
  return out;
}

/** A GeneralizedTime of `d` (seconds, Z). */
export function generalizedTime(d: Date): Uint8Array {
  const s = d.toISOString().replace(/[-:T]/g, "").replace(/\.\d+Z$/, "Z");
  return derTlv(0x18, new TextEncoder().encode(s));
}

/** AlgorithmIdentifier DER: its OID and optional parameters element. */
export function algorithmOf(b: Uint8Array, t: Tlv): { oid: string; params?: Tlv } {
  if (t.tag !== 0x30) throw bad("AlgorithmIdentifier expected");
  const [o, p, ...rest] = children(b, t);
  if (!o || rest.length) throw bad("AlgorithmIdentifier expected");
  return { oid: oidOf(b, o), params: p && p.tag !== 0x05 ? p : undefined };
}

// --- CRMF (RFC 4211 Appendix B: IMPLICIT TAGS; Name and Time, being CHOICEs, stay explicit) ---

const prop = (cls: { prototype: object }, name: string, options: Parameters<typeof AsnProp>[0]) => AsnProp(options)(cls.prototype, name);

/** OptionalValidity ::= SEQUENCE { notBefore [0] Time OPTIONAL, notAfter [1] Time OPTIONAL } */
export class OptionalValidity {
  notBefore?: Time;
  notAfter?: Time;
}
prop(OptionalValidity, "notBefore", { type: Time, context: 0, optional: true });
prop(OptionalValidity, "notAfter", { type: Time, context: 1, optional: true });
AsnType({ type: AsnTypeTypes.Sequence })(OptionalValidity);

/** CertTemplate (RFC 4211 §5). */
export class CertTemplate {
  version?: number;
  serialNumber?: ArrayBuffer;
  signingAlg?: AlgorithmIdentifier;
  issuer?: Name;
  validity?: OptionalValidity;
  subject?: Name;
  publicKey?: SubjectPublicKeyInfo;
  issuerUID?: ArrayBuffer;
  subjectUID?: ArrayBuffer;
  extensions?: Extensions;
}
prop(CertTemplate, "version", { type: AsnPropTypes.Integer, context: 0, implicit: true, optional: true });
prop(CertTemplate, "serialNumber", { type: AsnPropTypes.Integer, context: 1, implicit: true, optional: true, converter: AsnIntegerArrayBufferConverter });
prop(CertTemplate, "signingAlg", { type: AlgorithmIdentifier, context: 2, implicit: true, optional: true });
prop(CertTemplate, "issuer", { type: Name, context: 3, optional: true });
prop(CertTemplate, "validity", { type: OptionalValidity, context: 4, implicit: true, optional: true });
prop(CertTemplate, "subject", { type: Name, context: 5, optional: true });
prop(CertTemplate, "publicKey", { type: SubjectPublicKeyInfo, context: 6, implicit: true, optional: true });
prop(CertTemplate, "issuerUID", { type: AsnPropTypes.BitString, context: 7, implicit: true, optional: true });
prop(CertTemplate, "subjectUID", { type: AsnPropTypes.BitString, context: 8, implicit: true, optional: true });
prop(CertTemplate, "extensions", { type: Extensions, context: 9, implicit: true, optional: true });
AsnType({ type: AsnTypeTypes.Sequence })(CertTemplate);

/** Parses a CertTemplate's DER. */
export function parseCertTemplate(der: Uint8Array): CertTemplate {
  try {
    return AsnConvert.parse(ab(der), CertTemplate);
  } catch (e) {
    throw bad(`the certificate template cannot be read: ${(e as Error).message}`);
  }
}

/** The DER of a Name, an SPKI or Extensions read from a template, for the CSR built from it. */
export const derOf = (v: Name | SubjectPublicKeyInfo | Extension[] | Extensions) => new Uint8Array(AsnConvert.serialize(Array.isArray(v) && !(v instanceof AsnArray) ? new Extensions(v) : v));
