/**
 * The one CMS SignerInfo builder (RFC 5652 §5.3) with signed attributes, for every SignedData the
 * suite writes (RFC 3161 time-stamp tokens, SCEP pkiMessages): the attributes are put in DER
 * SET OF order (ascending encodings), that SET is what gets signed, and the signer is named by
 * issuer and serial number with SHA-256 as the digest algorithm.
 */
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate } from "@peculiar/asn1-x509";
import {
  Attribute,
  CertificateChoices,
  CertificateSet,
  ContentInfo,
  DigestAlgorithmIdentifiers,
  EncapsulatedContent,
  EncapsulatedContentInfo,
  id_signedData,
  IssuerAndSerialNumber,
  SignedData,
  SignerIdentifier,
  SignerInfo,
  SignerInfos,
} from "@peculiar/asn1-cms";
import { derTlv } from "./leaf-signer.ts";
import { derContent, derRoot, oidDer } from "./der.ts";
import { verifyBySpki } from "./csr.ts";
import type * as x509 from "./x509.ts";

export const SHA256_ALGORITHM_OID = "2.16.840.1.101.3.4.2.1";

/** Signs the DER of the signed attributes; returns the signature algorithm and the signature. */
export type SignedAttrsSigner = (signedAttrsDer: ArrayBuffer) => Promise<{ algorithm: AlgorithmIdentifier; signature: ArrayBuffer }>;

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

/** The DER of a SET OF from its (already encoded, sorted) elements. */
function setOf(elements: Uint8Array[]): Uint8Array {
  const n = elements.reduce((s, e) => s + e.length, 0);
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  const out = new Uint8Array(1 + len.length + n);
  out.set([0x31, ...len]);
  let o = 1 + len.length;
  for (const e of elements) {
    out.set(e, o);
    o += e.length;
  }
  return out;
}

/** A SignerInfo over `attributes` by the holder of `certDer`, signed by `sign`. */
export async function signerInfo(attributes: Attribute[], certDer: ArrayBuffer, sign: SignedAttrsSigner): Promise<SignerInfo> {
  // DER SET OF: ascending order of the encodings; the SignerInfo lists them in that same order.
  const encoded = attributes.map((a) => ({ a, d: new Uint8Array(AsnConvert.serialize(a)) })).sort((x, y) => compareBytes(x.d, y.d));
  const { algorithm, signature } = await sign(setOf(encoded.map((e) => e.d)).slice().buffer as ArrayBuffer);
  const cert = AsnConvert.parse(certDer, Certificate);
  return new SignerInfo({
    version: 1,
    sid: new SignerIdentifier({ issuerAndSerialNumber: new IssuerAndSerialNumber({ issuer: cert.tbsCertificate.issuer, serialNumber: cert.tbsCertificate.serialNumber }) }),
    digestAlgorithm: new AlgorithmIdentifier({ algorithm: SHA256_ALGORITHM_OID }),
    signedAttrs: encoded.map((e) => e.a),
    signatureAlgorithm: algorithm,
    signature: new OctetString(signature),
  });
}

/** A certificate and how its key signs: what `signedContent` signs with. */
export interface ContentSigner {
  cert: x509.X509Certificate;
  sign: SignedAttrsSigner;
}

/**
 * A ContentInfo of a SignedData over `content` of type `contentType` (signed contentType and
 * messageDigest attributes, SHA-256), carrying `certs` and the signer's certificate once each.
 */
export async function signedContent(contentType: string, content: Uint8Array, signer: ContentSigner, certs: x509.X509Certificate[]): Promise<Uint8Array> {
  const ab = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;
  const attrs = [
    new Attribute({ attrType: "1.2.840.113549.1.9.3", attrValues: [ab(oidDer(contentType))] }),
    new Attribute({ attrType: "1.2.840.113549.1.9.4", attrValues: [ab(derTlv(0x04, new Uint8Array(await crypto.subtle.digest("SHA-256", ab(content)))))] }),
  ];
  const all = [...certs, signer.cert].filter((c, i, a) => a.findIndex((x) => Buffer.from(x.rawData).equals(Buffer.from(c.rawData))) === i);
  const signed = new SignedData({
    version: 3,
    digestAlgorithms: new DigestAlgorithmIdentifiers([new AlgorithmIdentifier({ algorithm: SHA256_ALGORITHM_OID })]),
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: contentType, eContent: new EncapsulatedContent({ single: new OctetString(content) }) }),
    certificates: new CertificateSet(all.map((c) => new CertificateChoices({ certificate: AsnConvert.parse(c.rawData, Certificate) }))),
    signerInfos: new SignerInfos([await signerInfo(attrs, signer.cert.rawData, signer.sign)]),
  });
  return new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signed) })));
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

/** The content bytes of a signed attribute's single DER value with `tag`, or undefined. */
export function signedAttrValue(si: SignerInfo, oid: string, tag: number): Uint8Array | undefined {
  const v = si.signedAttrs?.find((a) => a.attrType === oid)?.attrValues;
  if (!v || v.length !== 1) return undefined;
  try {
    return derContent(derRoot(new Uint8Array(v[0]!), tag, "a signed attribute"), "a signed attribute").slice();
  } catch {
    return undefined;
  }
}

/** Why a received SignerInfo did not verify; each caller answers in its protocol's own form. */
export type SignerInfoFailure = "unsupported_digest" | "no_signed_attributes" | "content_type" | "digest_mismatch" | "unsupported_signature" | "bad_signature";

/**
 * Verifies a received SignerInfo with signed attributes over `content` (RFC 5652 §5.4): a known
 * digest algorithm, the signed contentType when `contentType` is given, messageDigest equal to
 * the content's hash, and the signature over the DER SET OF the attributes as received (each
 * re-encoded from its received values, which gives those bytes back). RSA signatures must name
 * one of `rsaSignatureOids` (any PKCS#1 algorithm when not given). Returns the failure, or
 * undefined when it verifies.
 */
export async function verifySignerInfo(
  si: SignerInfo,
  content: Uint8Array,
  spki: ArrayBuffer,
  keyAlg: Algorithm & { namedCurve?: string },
  opts: { contentType?: string; rsaSignatureOids?: readonly string[] } = {},
): Promise<SignerInfoFailure | undefined> {
  const ab = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;
  const hash = CMS_DIGESTS[si.digestAlgorithm.algorithm];
  if (!hash) return "unsupported_digest";
  if (!si.signedAttrs?.length) return "no_signed_attributes";
  if (opts.contentType !== undefined) {
    const type = signedAttrValue(si, ATTR_CONTENT_TYPE, 0x06);
    if (!type || !Buffer.from(derTlv(0x06, type)).equals(Buffer.from(oidDer(opts.contentType)))) return "content_type";
  }
  const digest = new Uint8Array(await crypto.subtle.digest(hash, ab(content)));
  const claimed = signedAttrValue(si, ATTR_MESSAGE_DIGEST, 0x04);
  if (!claimed || !Buffer.from(claimed).equals(Buffer.from(digest))) return "digest_mismatch";
  const kind = keyAlg.name === "ECDSA" ? "ecdsa" : keyAlg.name === "Ed25519" ? "ed25519" : "rsa";
  const sigAlg = si.signatureAlgorithm.algorithm;
  if (kind === "rsa" && !(opts.rsaSignatureOids ? opts.rsaSignatureOids.includes(sigAlg) : sigAlg.startsWith("1.2.840.113549.1.1."))) return "unsupported_signature";
  const signedAttrs = derTlv(0x31, ...si.signedAttrs.map((a) => new Uint8Array(AsnConvert.serialize(a))));
  try {
    if (await verifyBySpki(spki, keyAlg, { kind, hash }, ab(signedAttrs), ab(new Uint8Array(si.signature.buffer)))) return undefined;
  } catch {
    // a key or signature the runtime cannot read: not verified
  }
  return "bad_signature";
}
