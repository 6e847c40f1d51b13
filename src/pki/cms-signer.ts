/**
 * The one CMS SignerInfo builder (RFC 5652 §5.3) with signed attributes, for every SignedData the
 * suite writes (RFC 3161 time-stamp tokens, SCEP pkiMessages): the attributes are put in DER
 * SET OF order (ascending encodings), that SET is what gets signed, and the signer is named by
 * issuer and serial number with SHA-256 as the digest algorithm.
 */
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Certificate } from "@peculiar/asn1-x509";
import { type Attribute, IssuerAndSerialNumber, SignerIdentifier, SignerInfo } from "@peculiar/asn1-cms";

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
