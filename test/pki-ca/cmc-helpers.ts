/**
 * A CMC (RFC 5272) requester for the tests, built on pkijs: PKCS#10 requests and the CMS
 * SignedData of Full PKI Requests come from pkijs; the PKIData around them (a CMC structure
 * pkijs has no class for) is written here, and the identityProofV2 witness is computed with
 * node:crypto, independently of the server's code.
 */
import { createHash, createHmac, randomBytes } from "node:crypto";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { derTlv } from "../../src/pki/leaf-signer.ts";

const seq = (...p: Uint8Array[]) => derTlv(0x30, ...p);
const oid = (dotted: string) => new Uint8Array(new asn1js.ObjectIdentifier({ value: dotted }).toBER(false));
const int = (n: number | bigint) => new Uint8Array(new asn1js.Integer({ value: Number(n) }).toBER(false));
const utf8 = (s: string) => new Uint8Array(new asn1js.Utf8String({ value: s }).toBER(false));
const octets = (b: Uint8Array) => derTlv(0x04, b);
const ab = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;

export const OID = {
  pkiData: "1.3.6.1.5.5.7.12.2",
  identification: "1.3.6.1.5.5.7.7.2",
  transactionId: "1.3.6.1.5.5.7.7.5",
  senderNonce: "1.3.6.1.5.5.7.7.6",
  identityProofV2: "1.3.6.1.5.5.7.7.34",
  sha256: "2.16.840.1.101.3.4.2.1",
  hmacSha256: "1.2.840.113549.2.9",
};

const attribute = (bodyPartId: number, type: string, value: Uint8Array) => seq(int(bodyPartId), oid(type), derTlv(0x31, value));

/** A P-256 key and a pkijs PKCS#10 request for `cn` with a dNSName SAN. */
export async function pkijsCsr(cn: string, keys?: CryptoKeyPair): Promise<{ keys: CryptoKeyPair; der: Uint8Array }> {
  keys ??= (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = new pkijs.CertificationRequest();
  csr.subject.typesAndValues.push(new pkijs.AttributeTypeAndValue({ type: "2.5.4.3", value: new asn1js.Utf8String({ value: cn }) }));
  await csr.subjectPublicKeyInfo.importKey(keys.publicKey);
  const san = new pkijs.GeneralNames({ names: [new pkijs.GeneralName({ type: 2, value: cn })] });
  csr.attributes = [
    new pkijs.Attribute({
      type: "1.2.840.113549.1.9.14",
      values: [new pkijs.Extensions({ extensions: [new pkijs.Extension({ extnID: "2.5.29.17", critical: false, extnValue: san.toSchema().toBER(false) })] }).toSchema()],
    }),
  ];
  await csr.sign(keys.privateKey, "SHA-256");
  return { keys, der: new Uint8Array(csr.toSchema().toBER(false)) };
}

export interface PkiDataOptions {
  csr: Uint8Array;
  transactionId?: number;
  senderNonce?: Uint8Array;
  /** identification and the shared secret its identityProofV2 is computed with. */
  identity?: { identification: string; secret: string };
}

/** The DER of a PKIData: the controls asked for and one TaggedCertificationRequest (body part 1). */
export function pkiData(o: PkiDataOptions): Uint8Array {
  const reqSequence = seq(derTlv(0xa0, int(1), o.csr));
  const controls: Uint8Array[] = [];
  let id = 2;
  if (o.transactionId !== undefined) controls.push(attribute(id++, OID.transactionId, int(o.transactionId)));
  if (o.senderNonce) controls.push(attribute(id++, OID.senderNonce, octets(o.senderNonce)));
  if (o.identity) {
    controls.push(attribute(id++, OID.identification, utf8(o.identity.identification)));
    // RFC 5272 §6.2.1: HMAC over DER(reqSequence), keyed by the hash of the shared secret.
    const key = createHash("sha256").update(o.identity.secret).digest();
    const witness = createHmac("sha256", key).update(reqSequence).digest();
    controls.push(attribute(id++, OID.identityProofV2, seq(seq(oid(OID.sha256)), seq(oid(OID.hmacSha256)), octets(witness))));
  }
  return seq(seq(...controls), reqSequence, seq(), seq());
}

/**
 * A Full PKI Request: the PKIData in a pkijs SignedData with signed contentType and
 * messageDigest, signed by `key`. Without `cert` the signer is named by the subjectKeyIdentifier
 * of `spki` (SHA-1 of its key bits); with `cert` by its issuer and serial, and it is included.
 */
export async function fullRequest(data: Uint8Array, key: CryptoKey, signer: { spki?: pkijs.PublicKeyInfo; cert?: Uint8Array }): Promise<Uint8Array> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", ab(data)));
  const signedAttrs = new pkijs.SignedAndUnsignedAttributes({
    type: 0,
    attributes: [
      new pkijs.Attribute({ type: "1.2.840.113549.1.9.3", values: [new asn1js.ObjectIdentifier({ value: OID.pkiData })] }),
      new pkijs.Attribute({ type: "1.2.840.113549.1.9.4", values: [new asn1js.OctetString({ valueHex: ab(digest) })] }),
    ],
  });
  const cert = signer.cert ? pkijs.Certificate.fromBER(ab(signer.cert)) : undefined;
  const sid = cert
    ? new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber })
    : new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: 0 }, valueHex: ab(createHash("sha1").update(new Uint8Array(signer.spki!.subjectPublicKey.valueBlock.valueHexView)).digest()) });
  const signed = new pkijs.SignedData({
    version: 3,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: OID.pkiData, eContent: new asn1js.OctetString({ valueHex: ab(data) }) }),
    signerInfos: [new pkijs.SignerInfo({ version: cert ? 1 : 3, sid, signedAttrs })],
    certificates: cert ? [cert] : undefined,
  });
  await signed.sign(key, 0, "SHA-256");
  const ci = new pkijs.ContentInfo({ contentType: pkijs.ContentInfo.SIGNED_DATA, content: signed.toSchema(true) });
  return new Uint8Array(ci.toSchema().toBER(false));
}

/** The SubjectPublicKeyInfo of a pkijs-made CSR. */
export const spkiOf = (csr: Uint8Array) => pkijs.CertificationRequest.fromBER(ab(csr)).subjectPublicKeyInfo;

export const nonce = () => new Uint8Array(randomBytes(16));
