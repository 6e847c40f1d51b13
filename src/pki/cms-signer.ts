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
import { oidDer } from "./der.ts";
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
