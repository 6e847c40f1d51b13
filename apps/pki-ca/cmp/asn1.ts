/**
 * The ASN.1 of CMP (RFC 9810 Appendix F, explicit tags) and CRMF (RFC 4211, implicit tags) that
 * pki-ca reads and writes. No maintained package implements it for `@peculiar/asn1-schema`, so
 * the structures are written here: the certificate template and its parts as asn1-schema
 * classes (decorators applied by call, the project compiles without decorator syntax), the
 * message framing by the shared strict DER walk (src/pki/der.ts), which keeps the exact bytes a
 * protection covers.
 *
 * Guarantees: every read checks each tag and length against its enclosing element and fails
 * with `CmpAsnError`, never another exception; lengths use at most 3 octets (a message is far
 * below 16 MiB) and indefinite lengths are refused.
 */
import { AsnArray, AsnConvert, AsnIntegerArrayBufferConverter, AsnProp, AsnPropTypes, AsnType, AsnTypeTypes } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Extension, Extensions, Name, SubjectPublicKeyInfo, Time } from "@peculiar/asn1-x509";
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import { AppError } from "../../../src/service/errors.ts";
import { derChildren, derNode, derOid, intDer as nonNegativeIntDer, oidDer, utf8Der, type DerNode } from "../../../src/pki/der.ts";

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

/** Runs a read of the shared DER walker (src/pki/der.ts), its refusals as `CmpAsnError`s. */
function walk<T>(read: () => T): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof AppError) throw bad(e.message);
    throw e;
  }
}
const tlvOf = (n: DerNode): Tlv => ({ tag: n.tag, start: n.start, contentStart: n.body, end: n.end });

/** The element starting at `at`, which must end by `limit`. */
export function readTlv(b: Uint8Array, at: number, limit: number): Tlv {
  return tlvOf(walk(() => derNode(b, at, limit, "the CMP message")));
}

/** The elements inside a constructed element. */
export function children(b: Uint8Array, t: Tlv): Tlv[] {
  const out = walk(() => derChildren({ bytes: b, tag: t.tag, start: t.start, body: t.contentStart, end: t.end }, "the CMP message"));
  if (out.length > 1024) throw bad("too many elements");
  return out.map(tlvOf);
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

/** DER INTEGER of a non-negative number, or -1 (RFC 9483's certReqId of a p10cr). */
export const intDer = (n: number): Uint8Array => (n === -1 ? new Uint8Array([0x02, 0x01, 0xff]) : nonNegativeIntDer(n));

/** The dotted OID of an OBJECT IDENTIFIER element. */
export function oidOf(b: Uint8Array, t: Tlv): string {
  return walk(() => derOid({ bytes: b, tag: t.tag, start: t.start, body: t.contentStart, end: t.end }, "an OBJECT IDENTIFIER"));
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
