/**
 * The one CMS SignerInfo builder (RFC 5652 §5.3) with signed attributes, for every SignedData the
 * suite writes (RFC 3161 time-stamp tokens, SCEP pkiMessages): the attributes are put in DER
 * SET OF order (ascending encodings), that SET is what gets signed, and the signer is named by
 * issuer and serial number with SHA-256 as the digest algorithm. SignedData and SignerInfo are
 * written from DER pieces (certificates copied verbatim), never through the generic serializer.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { Attribute, id_signedData, SignerInfo } from "@peculiar/asn1-cms";
import { derTlv } from "./leaf-signer.ts";
import { createHash } from "node:crypto";
import { AppError } from "../service/errors.ts";
import { certificateFields, derBytes, derChildren, derContent, derOid, derRoot, intDer, oidDer, type DerNode } from "./der.ts";
import { verifyBySpki } from "./csr.ts";
import type * as x509 from "./x509.ts";

export const SHA256_ALGORITHM_OID = "2.16.840.1.101.3.4.2.1";

/** Signs the DER of the signed attributes; returns the signature algorithm and the signature. */
export type SignedAttrsSigner = (signedAttrsDer: ArrayBuffer) => Promise<{ algorithm: AlgorithmIdentifier; signature: ArrayBuffer }>;

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

const SHA256_ALGORITHM_DER = derTlv(0x30, oidDer(SHA256_ALGORITHM_OID));

/** DER of an IssuerAndSerialNumber naming the certificate `certDer` (its issuer and serial, copied verbatim). */
export function issuerAndSerialDer(certDer: Uint8Array): Uint8Array {
  const { issuer, serial } = certificateFields(certDer);
  return derTlv(0x30, derBytes(issuer), derBytes(serial));
}

/** DER of an Attribute with one value (`value` is that value's DER). */
export const attributeDer = (oid: string, value: Uint8Array): Uint8Array => derTlv(0x30, oidDer(oid), derTlv(0x31, value));

/**
 * DER of a SignerInfo over `attributes` (each an Attribute's DER) by the holder of `certDer`,
 * signed by `sign`. Written from DER pieces: the generic ASN.1 serializer costs milliseconds per
 * message on the enrollment paths.
 */
export async function signerInfoDer(attributes: Uint8Array[], certDer: Uint8Array, sign: SignedAttrsSigner): Promise<Uint8Array> {
  // DER SET OF: ascending order of the encodings; the SignerInfo lists them in that same order.
  const sorted = [...attributes].sort(compareBytes);
  const { algorithm, signature } = await sign(derTlv(0x31, ...sorted).buffer as ArrayBuffer);
  return derTlv(0x30, intDer(1), issuerAndSerialDer(certDer), SHA256_ALGORITHM_DER, derTlv(0xa0, ...sorted), new Uint8Array(AsnConvert.serialize(algorithm)), derTlv(0x04, new Uint8Array(signature)));
}

/** A SignerInfo over `attributes` by the holder of `certDer`, signed by `sign` (`signerInfoDer`, as an object). */
export async function signerInfo(attributes: Attribute[], certDer: ArrayBuffer, sign: SignedAttrsSigner): Promise<SignerInfo> {
  const der = await signerInfoDer(attributes.map((a) => new Uint8Array(AsnConvert.serialize(a))), new Uint8Array(certDer), sign);
  return AsnConvert.parse(der.buffer as ArrayBuffer, SignerInfo);
}

/** A certificate and how its key signs: what `signedContent` signs with. */
export interface ContentSigner {
  cert: x509.X509Certificate;
  sign: SignedAttrsSigner;
}

/**
 * DER ContentInfo of a SignedData (RFC 5652 §5.1) of `version` over `content` of `contentType`
 * (always present, possibly empty), with one signer over `attributes` and the certificates
 * `certs` (DER, in the order given).
 */
export async function signedDataDer(o: { version: number; contentType: string; content: Uint8Array; certs: Uint8Array[]; attributes: Uint8Array[]; signer: ContentSigner }): Promise<Uint8Array> {
  const si = await signerInfoDer(o.attributes, new Uint8Array(o.signer.cert.rawData), o.signer.sign);
  const encap = derTlv(0x30, oidDer(o.contentType), derTlv(0xa0, derTlv(0x04, o.content)));
  const certs = o.certs.length ? [derTlv(0xa0, ...o.certs)] : [];
  const signed = derTlv(0x30, intDer(o.version), derTlv(0x31, SHA256_ALGORITHM_DER), encap, ...certs, derTlv(0x31, si));
  return derTlv(0x30, oidDer(id_signedData), derTlv(0xa0, signed));
}

/**
 * A ContentInfo of a SignedData over `content` of type `contentType` (signed contentType and
 * messageDigest attributes, SHA-256), carrying `certs` and the signer's certificate once each.
 */
export async function signedContent(contentType: string, content: Uint8Array, signer: ContentSigner, certs: x509.X509Certificate[]): Promise<Uint8Array> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", content.slice().buffer as ArrayBuffer));
  const attributes = [attributeDer(ATTR_CONTENT_TYPE, oidDer(contentType)), attributeDer(ATTR_MESSAGE_DIGEST, derTlv(0x04, digest))];
  const all = [...certs, signer.cert].filter((c, i, a) => a.findIndex((x) => Buffer.from(x.rawData).equals(Buffer.from(c.rawData))) === i);
  return signedDataDer({ version: 3, contentType, content, certs: all.map((c) => new Uint8Array(c.rawData)), attributes, signer });
}

/** PKCS#9 signed attributes every SignedData with signed attributes carries (RFC 5652 §11). */
export const ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3";
export const ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4";
/** Digest algorithm OIDs a received SignerInfo may name, as WebCrypto hashes. */
export const CMS_DIGESTS: Record<string, string> = {
  "1.3.14.3.2.26": "SHA-1",
  "2.16.840.1.101.3.4.2.1": "SHA-256",
  "2.16.840.1.101.3.4.2.2": "SHA-384",
  "2.16.840.1.101.3.4.2.3": "SHA-512",
};

/**
 * What verifying a received SignerInfo needs, read from its DER: the digest and signature
 * algorithm OIDs, the signed attributes' DER SET OF exactly as received (the `[0] IMPLICIT`
 * tag turned into SET's, which is what was signed), each single-valued signed attribute's value
 * (DER) by OID, and the signature.
 */
export interface SignerInfoParts {
  digestAlgorithm: string;
  signedAttrs?: Uint8Array;
  attrs: Map<string, Uint8Array>;
  signatureAlgorithm: string;
  signature: Uint8Array;
}

/**
 * Reads a SignerInfo (RFC 5652 §5.3) by walking its DER, without the generic ASN.1 parser (which
 * costs a fraction of a millisecond per message on the enrollment paths); `malformed_input` if it
 * is not one.
 */
export function signerInfoParts(n: DerNode): SignerInfoParts {
  const what = "the SignerInfo";
  // version, sid, digestAlgorithm, [0] signedAttrs, signatureAlgorithm, signature, [1] unsignedAttrs
  const f = derChildren(n, what);
  if (f.length < 5 || f[0]!.tag !== 0x02 || f[2]!.tag !== 0x30) throw new AppError("malformed_input", `${what} is not as expected`);
  const signed = f[3]!.tag === 0xa0 ? f[3] : undefined;
  const [sigAlg, signature] = f.slice(signed ? 4 : 3);
  if (sigAlg?.tag !== 0x30 || signature?.tag !== 0x04) throw new AppError("malformed_input", `${what} is not as expected`);
  const attrs = new Map<string, Uint8Array>();
  for (const a of signed ? derChildren(signed, what, [0x30]) : []) {
    const [type, values] = derChildren(a, what);
    if (type?.tag !== 0x06 || values?.tag !== 0x31) throw new AppError("malformed_input", `${what}'s attributes are not as expected`);
    const v = derChildren(values, what);
    if (v.length === 1) attrs.set(derOid(type, what), derBytes(v[0]!));
  }
  const signedAttrs = signed ? derBytes(signed).slice() : undefined;
  if (signedAttrs) signedAttrs[0] = 0x31;
  return { digestAlgorithm: derOid(derChildren(f[2]!, what)[0]!, what), signedAttrs, attrs, signatureAlgorithm: derOid(derChildren(sigAlg, what)[0]!, what), signature: derContent(signature, what) };
}

/** The parts of a SignerInfo already parsed by the generic parser (its signed attributes re-encoded from their received values, which gives those bytes back). */
function partsOf(si: SignerInfo): SignerInfoParts {
  const attrs = new Map<string, Uint8Array>();
  for (const a of si.signedAttrs ?? []) if (a.attrValues.length === 1) attrs.set(a.attrType, new Uint8Array(a.attrValues[0]!));
  const signedAttrs = si.signedAttrs?.length ? derTlv(0x31, ...si.signedAttrs.map((a) => new Uint8Array(AsnConvert.serialize(a)))) : undefined;
  return { digestAlgorithm: si.digestAlgorithm.algorithm, signedAttrs, attrs, signatureAlgorithm: si.signatureAlgorithm.algorithm, signature: new Uint8Array(si.signature.buffer) };
}

/** The content bytes of a signed attribute's single DER value with `tag`, or undefined. */
export function signedAttrValue(si: SignerInfo | SignerInfoParts, oid: string, tag: number): Uint8Array | undefined {
  const v = ("attrs" in si ? si : partsOf(si)).attrs.get(oid);
  if (!v) return undefined;
  try {
    return derContent(derRoot(v, tag, "a signed attribute"), "a signed attribute").slice();
  } catch {
    return undefined;
  }
}

/** Why a received SignerInfo did not verify; each caller answers in its protocol's own form. */
export type SignerInfoFailure = "unsupported_digest" | "no_signed_attributes" | "content_type" | "digest_mismatch" | "unsupported_signature" | "bad_signature";

/**
 * Verifies a received SignerInfo with signed attributes over `content` (RFC 5652 §5.4): a known
 * digest algorithm, the signed contentType when `contentType` is given, messageDigest equal to
 * the content's hash, and the signature over the DER SET OF the attributes as received. RSA
 * signatures must name one of `rsaSignatureOids` (any PKCS#1 algorithm when not given). Takes
 * the generic parser's SignerInfo or the DER walk's parts. Returns the failure, or undefined
 * when it verifies.
 */
export async function verifySignerInfo(
  signerInfo: SignerInfo | SignerInfoParts,
  content: Uint8Array,
  spki: ArrayBuffer,
  keyAlg: Algorithm & { namedCurve?: string },
  opts: { contentType?: string; rsaSignatureOids?: readonly string[] } = {},
): Promise<SignerInfoFailure | undefined> {
  const si = "attrs" in signerInfo ? signerInfo : partsOf(signerInfo);
  const ab = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;
  const hash = CMS_DIGESTS[si.digestAlgorithm];
  if (!hash) return "unsupported_digest";
  if (!si.signedAttrs) return "no_signed_attributes";
  if (opts.contentType !== undefined) {
    const type = signedAttrValue(si, ATTR_CONTENT_TYPE, 0x06);
    if (!type || !Buffer.from(derTlv(0x06, type)).equals(Buffer.from(oidDer(opts.contentType)))) return "content_type";
  }
  const digest = createHash(hash.replace("-", "").toLowerCase()).update(content).digest();
  const claimed = signedAttrValue(si, ATTR_MESSAGE_DIGEST, 0x04);
  if (!claimed || !digest.equals(claimed)) return "digest_mismatch";
  const kind = keyAlg.name === "ECDSA" ? "ecdsa" : keyAlg.name === "Ed25519" ? "ed25519" : "rsa";
  const sigAlg = si.signatureAlgorithm;
  if (kind === "rsa" && !(opts.rsaSignatureOids ? opts.rsaSignatureOids.includes(sigAlg) : sigAlg.startsWith("1.2.840.113549.1.1."))) return "unsupported_signature";
  try {
    if (await verifyBySpki(spki, keyAlg, { kind, hash }, ab(si.signedAttrs), ab(si.signature))) return undefined;
  } catch {
    // a key or signature the runtime cannot read: not verified
  }
  return "bad_signature";
}
