/**
 * The CMS of SCEP (RFC 8894 §3): a pkiMessage is a SignedData whose signed attributes carry
 * the SCEP fields and whose content is an EnvelopedData (RSA key transport, RFC 5652 §6.2.1).
 * Parsing and building both directions, so the server and the tests share one implementation.
 *
 * Guarantees: a parsed message's signature is verified over its signed attributes with the
 * certificate it names, and its messageDigest matches its content; anything else is
 * `malformed_input`. Key transport is RSAES-PKCS1-v1_5 (what SCEP clients send): the RSA
 * decryption runs without padding and the padding is removed here, and a bad padding yields a
 * random content key (implicit rejection), so a padding oracle only ever sees "the content does
 * not decrypt", never a distinct error.
 */
import { createCipheriv, createDecipheriv, createHash, createPublicKey, privateDecrypt, publicEncrypt, randomBytes, constants, type KeyObject } from "node:crypto";
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
  EncryptedContent,
  EncryptedContentInfo,
  EnvelopedData,
  id_data,
  id_envelopedData,
  id_signedData,
  IssuerAndSerialNumber,
  KeyTransRecipientInfo,
  RecipientIdentifier,
  RecipientInfo,
  RecipientInfos,
  SignedData,
  SignerInfos,
} from "@peculiar/asn1-cms";
import { AppError } from "../../../src/service/errors.ts";
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { ATTR_CONTENT_TYPE, ATTR_MESSAGE_DIGEST, signerInfo, verifySignerInfo } from "../../../src/pki/cms-signer.ts";

/** SCEP attribute OIDs (id-attributes, RFC 8894 §3.2.1). */
export const SCEP_ATTR = {
  messageType: "2.16.840.1.113733.1.9.2",
  pkiStatus: "2.16.840.1.113733.1.9.3",
  failInfo: "2.16.840.1.113733.1.9.4",
  senderNonce: "2.16.840.1.113733.1.9.5",
  recipientNonce: "2.16.840.1.113733.1.9.6",
  transactionID: "2.16.840.1.113733.1.9.7",
} as const;
export const MESSAGE_TYPE = { CertRep: "3", RenewalReq: "17", PKCSReq: "19", CertPoll: "20", GetCert: "21", GetCRL: "22" } as const;
export const PKI_STATUS = { SUCCESS: "0", FAILURE: "2", PENDING: "3" } as const;
export const FAIL_INFO = { badAlg: "0", badMessageCheck: "1", badRequest: "2", badTime: "3", badCertId: "4" } as const;

const RSA_ENCRYPTION = "1.2.840.113549.1.1.1";
const SHA256_OID = "2.16.840.1.101.3.4.2.1";
/** Content ciphers SCEP clients use, by OID: node cipher name and key length. */
const CIPHERS: Record<string, { name: string; keyLength: number }> = {
  "2.16.840.1.101.3.4.1.2": { name: "aes-128-cbc", keyLength: 16 },
  "2.16.840.1.101.3.4.1.22": { name: "aes-192-cbc", keyLength: 24 },
  "2.16.840.1.101.3.4.1.42": { name: "aes-256-cbc", keyLength: 32 },
  "1.2.840.113549.3.7": { name: "des-ede3-cbc", keyLength: 24 },
  // Single DES: what Debian's scepclient (micromdm 2.1) sends whatever the caps say. Read only,
  // never sent; the request travels inside TLS, and one-time challenges die with their first use.
  "1.3.14.3.2.7": { name: "des-cbc", keyLength: 8 },
};
export const AES_256_CBC = "2.16.840.1.101.3.4.1.42";

const malformed = (m: string, cause?: unknown) => new AppError("malformed_input", m, { cause });

/** A verified pkiMessage: its SCEP attributes, its signer and its (still enveloped) content. */
export interface PkiMessage {
  messageType: string;
  transactionId: string;
  senderNonce?: Uint8Array;
  recipientNonce?: Uint8Array;
  pkiStatus?: string;
  failInfo?: string;
  signer: x509.X509Certificate;
  /** The DER of the content (an EnvelopedData ContentInfo), empty when absent. */
  content: Uint8Array;
}

const tlv = (tag: number, content: Uint8Array) => derTlv(tag, content);
const ab = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;
const printable = (s: string) => ab(tlv(0x13, new TextEncoder().encode(s)));
const octets = (b: Uint8Array) => ab(tlv(0x04, b));

/** The content bytes of a DER value with one of `tags` (PrintableString, OCTET STRING ...), or undefined. */
function primitive(der: ArrayBuffer, tags: number[]): Uint8Array | undefined {
  const b = new Uint8Array(der);
  if (b.length < 2 || !tags.includes(b[0]!)) return undefined;
  let len = b[1]!;
  let off = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3 || b.length < 2 + n) return undefined;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + b[2 + i]!;
    off = 2 + n;
  }
  return off + len === b.length ? b.subarray(off) : undefined;
}

/** Parses and verifies a pkiMessage (DER ContentInfo of a SignedData). */
export async function parsePkiMessage(der: Uint8Array): Promise<PkiMessage> {
  let signed: SignedData;
  try {
    const ci = AsnConvert.parse(ab(der), ContentInfo);
    if (ci.contentType !== id_signedData) throw new Error("not SignedData");
    signed = AsnConvert.parse(ci.content, SignedData);
  } catch (cause) {
    throw malformed("the message is not a CMS SignedData", cause);
  }
  if (signed.signerInfos.length !== 1) throw malformed("the message must have exactly one signer");
  const si = signed.signerInfos[0]!;
  const sid = si.sid.issuerAndSerialNumber;
  if (!sid || !si.signedAttrs?.length) throw malformed("the signer must be named by issuer and serial and sign attributes");
  const certs = (signed.certificates ?? []).map((c) => c.certificate).filter((c): c is Certificate => !!c);
  const sidSerial = Buffer.from(sid.serialNumber).toString("hex");
  const signerAsn = certs.find((c) => Buffer.from(c.tbsCertificate.serialNumber).toString("hex") === sidSerial && Buffer.from(AsnConvert.serialize(c.tbsCertificate.issuer)).equals(Buffer.from(AsnConvert.serialize(sid.issuer))));
  if (!signerAsn) throw malformed("the signer's certificate is not in the message");
  let signer: x509.X509Certificate;
  try {
    signer = new x509.X509Certificate(AsnConvert.serialize(signerAsn));
  } catch (cause) {
    throw malformed("the signer's certificate cannot be read", cause);
  }
  const attr = (oid: string) => si.signedAttrs!.find((a) => a.attrType === oid)?.attrValues[0];
  const eContent = signed.encapContentInfo.eContent;
  const content = eContent?.single ? new Uint8Array(eContent.single.buffer) : eContent?.any ? new Uint8Array(eContent.any) : new Uint8Array(0);
  let keyAlg: Algorithm & { namedCurve?: string };
  try {
    keyAlg = signer.publicKey.algorithm as Algorithm & { namedCurve?: string };
  } catch (cause) {
    throw malformed("the signer's public key cannot be read", cause);
  }
  const failure = await verifySignerInfo(si, content, signer.publicKey.rawData, keyAlg);
  if (failure === "unsupported_digest") throw malformed("unsupported digest algorithm");
  if (failure === "digest_mismatch") throw malformed("the messageDigest does not match the content");
  if (failure === "unsupported_signature") throw malformed("unsupported signature algorithm");
  if (failure) throw new AppError("signature_invalid", "the message signature does not verify", { status: 400 });
  const text = (oid: string) => {
    const v = attr(oid);
    const b = v ? primitive(v, [0x13, 0x0c, 0x16]) : undefined;
    return b ? new TextDecoder().decode(b) : undefined;
  };
  const bytes = (oid: string) => {
    const v = attr(oid);
    return v ? primitive(v, [0x04]) : undefined;
  };
  const messageType = text(SCEP_ATTR.messageType);
  const transactionId = text(SCEP_ATTR.transactionID);
  if (!messageType || !transactionId || transactionId.length > 128) throw malformed("messageType and transactionID are required");
  return { messageType, transactionId, senderNonce: bytes(SCEP_ATTR.senderNonce), recipientNonce: bytes(SCEP_ATTR.recipientNonce), pkiStatus: text(SCEP_ATTR.pkiStatus), failInfo: text(SCEP_ATTR.failInfo), signer, content };
}

/** RSAES-PKCS1-v1_5 decryption with implicit rejection: a bad padding gives `fallbackLength` random bytes. */
function rsaPkcs1Decrypt(key: KeyObject, encrypted: Uint8Array, fallbackLength: number): Uint8Array {
  const fallback = randomBytes(fallbackLength);
  let em: Buffer;
  try {
    em = privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, encrypted);
  } catch {
    return fallback;
  }
  // EM = 0x00 || 0x02 || PS (>= 8 non-zero bytes) || 0x00 || M
  let sep = -1;
  for (let i = 2; i < em.length; i++) if (em[i] === 0 && sep < 0) sep = i;
  const good = em[0] === 0 && em[1] === 2 && sep >= 10 && em.length - sep - 1 === fallbackLength;
  return good ? new Uint8Array(em.subarray(sep + 1)) : fallback;
}

/** Decrypts an EnvelopedData ContentInfo addressed (by issuer and serial, RSA key transport) to `cert`. */
export function openEnvelope(der: Uint8Array, cert: x509.X509Certificate, key: KeyObject): Uint8Array {
  let env: EnvelopedData;
  try {
    const ci = AsnConvert.parse(ab(der), ContentInfo);
    if (ci.contentType !== id_envelopedData) throw new Error("not EnvelopedData");
    env = AsnConvert.parse(ci.content, EnvelopedData);
  } catch (cause) {
    throw malformed("the message content is not a CMS EnvelopedData", cause);
  }
  const serial = cert.serialNumber.toLowerCase().replace(/^0+/, "");
  const ktri = env.recipientInfos
    .map((r) => r.ktri)
    .find((k) => k?.rid.issuerAndSerialNumber && Buffer.from(k.rid.issuerAndSerialNumber.serialNumber).toString("hex").replace(/^0+/, "") === serial);
  if (!ktri) throw malformed("the message is not encrypted to the SCEP RA certificate");
  if (ktri.keyEncryptionAlgorithm.algorithm !== RSA_ENCRYPTION) throw malformed("key transport must be rsaEncryption");
  const eci = env.encryptedContentInfo;
  const cipher = CIPHERS[eci.contentEncryptionAlgorithm.algorithm];
  if (!cipher) throw malformed("unsupported content encryption algorithm (AES-CBC, 3DES or DES expected)");
  const params = eci.contentEncryptionAlgorithm.parameters;
  const iv = params ? primitive(params, [0x04]) : undefined;
  if (!iv || iv.length !== (cipher.name.startsWith("aes") ? 16 : 8)) throw malformed("the content encryption IV is missing or of the wrong length");
  const ec = eci.encryptedContent;
  const encrypted = ec?.value ? new Uint8Array(ec.value.buffer) : ec?.constructedValue ? Buffer.concat(ec.constructedValue.map((o) => Buffer.from(o.buffer))) : undefined;
  if (!encrypted || encrypted.length === 0) throw malformed("the envelope has no encrypted content");
  const cek = rsaPkcs1Decrypt(key, new Uint8Array(ktri.encryptedKey.buffer), cipher.keyLength);
  try {
    const d = createDecipheriv(cipher.name, cek, iv);
    return new Uint8Array(Buffer.concat([d.update(encrypted), d.final()]));
  } catch (cause) {
    throw new AppError("decryption_failed", "the message content does not decrypt with the RA key", { status: 400, cause });
  }
}

/** An EnvelopedData ContentInfo of `content` for `recipient` (RSA key transport, AES-256-CBC by default). */
export function sealEnvelope(content: Uint8Array, recipient: x509.X509Certificate, cipherOid: "2.16.840.1.101.3.4.1.2" | typeof AES_256_CBC = AES_256_CBC): Uint8Array {
  const cipher = CIPHERS[cipherOid]!;
  const cek = randomBytes(cipher.keyLength);
  const iv = randomBytes(cipher.name.startsWith("aes") ? 16 : 8);
  const c = createCipheriv(cipher.name, cek, iv);
  const encrypted = Buffer.concat([c.update(content), c.final()]);
  const pub = createPublicKey({ key: Buffer.from(recipient.publicKey.rawData), format: "der", type: "spki" });
  const encryptedKey = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, cek);
  const certAsn = AsnConvert.parse(recipient.rawData, Certificate);
  const env = new EnvelopedData({
    version: 0,
    recipientInfos: new RecipientInfos([
      new RecipientInfo({
        ktri: new KeyTransRecipientInfo({
          version: 0,
          rid: new RecipientIdentifier({ issuerAndSerialNumber: new IssuerAndSerialNumber({ issuer: certAsn.tbsCertificate.issuer, serialNumber: certAsn.tbsCertificate.serialNumber }) }),
          keyEncryptionAlgorithm: new AlgorithmIdentifier({ algorithm: RSA_ENCRYPTION, parameters: null }),
          encryptedKey: new OctetString(encryptedKey),
        }),
      }),
    ]),
    encryptedContentInfo: new EncryptedContentInfo({
      contentType: id_data,
      contentEncryptionAlgorithm: new AlgorithmIdentifier({ algorithm: cipherOid, parameters: octets(iv) }),
      encryptedContent: new EncryptedContent({ value: new OctetString(encrypted) }),
    }),
  });
  return new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: id_envelopedData, content: AsnConvert.serialize(env) })));
}

/** What signs a pkiMessage: a certificate, its key, and how the key signs. */
export interface MessageSigner {
  cert: x509.X509Certificate;
  sign(data: ArrayBuffer): Promise<{ algorithm: AlgorithmIdentifier; signature: ArrayBuffer }>;
}

/** A signed pkiMessage: SCEP attributes (text values, nonces as bytes), content (may be empty) and the signer's certificate. */
export async function signPkiMessage(
  signer: MessageSigner,
  fields: { messageType: string; transactionId: string; senderNonce: Uint8Array; recipientNonce?: Uint8Array; pkiStatus?: string; failInfo?: string },
  content: Uint8Array,
  extraCerts: x509.X509Certificate[] = [],
): Promise<Uint8Array> {
  const attrs = [
    new Attribute({ attrType: ATTR_CONTENT_TYPE, attrValues: [ab(tlv(0x06, new Uint8Array([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01])))] }),
    new Attribute({ attrType: ATTR_MESSAGE_DIGEST, attrValues: [octets(new Uint8Array(createHash("sha256").update(content).digest()))] }),
    new Attribute({ attrType: SCEP_ATTR.messageType, attrValues: [printable(fields.messageType)] }),
    new Attribute({ attrType: SCEP_ATTR.transactionID, attrValues: [printable(fields.transactionId)] }),
    new Attribute({ attrType: SCEP_ATTR.senderNonce, attrValues: [octets(fields.senderNonce)] }),
  ];
  if (fields.recipientNonce) attrs.push(new Attribute({ attrType: SCEP_ATTR.recipientNonce, attrValues: [octets(fields.recipientNonce)] }));
  if (fields.pkiStatus) attrs.push(new Attribute({ attrType: SCEP_ATTR.pkiStatus, attrValues: [printable(fields.pkiStatus)] }));
  if (fields.failInfo) attrs.push(new Attribute({ attrType: SCEP_ATTR.failInfo, attrValues: [printable(fields.failInfo)] }));
  const signed = new SignedData({
    version: 1,
    digestAlgorithms: new DigestAlgorithmIdentifiers([new AlgorithmIdentifier({ algorithm: SHA256_OID })]),
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data, eContent: new EncapsulatedContent({ single: new OctetString(content) }) }),
    certificates: new CertificateSet([signer.cert, ...extraCerts].map((c) => new CertificateChoices({ certificate: AsnConvert.parse(c.rawData, Certificate) }))),
    signerInfos: new SignerInfos([await signerInfo(attrs, signer.cert.rawData, (signedAttrs) => signer.sign(signedAttrs))]),
  });
  return new Uint8Array(AsnConvert.serialize(new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signed) })));
}
