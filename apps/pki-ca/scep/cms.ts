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
import { createCipheriv, createDecipheriv, createHash, createPublicKey, publicEncrypt, randomBytes, constants, type KeyObject } from "node:crypto";
import { id_data, id_envelopedData, id_signedData } from "@peculiar/asn1-cms";
import { AppError } from "../../../src/service/errors.ts";
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import { certificateFields, derBytes, derChildren, derContent, derOid, derRoot, intDer, oidDer, type DerNode } from "../../../src/pki/der.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { spkiKeyAlgorithm } from "../../../src/pki/csr.ts";
import { inThreadRsa, type RawRsaDecrypt } from "./rsa-pool.ts";
import { ATTR_CONTENT_TYPE, ATTR_MESSAGE_DIGEST, attributeDer, issuerAndSerialDer, signedDataDer, signerInfoParts, verifySignerInfo, type ContentSigner, type SignerInfoParts } from "../../../src/pki/cms-signer.ts";

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
  /** The signer's certificate (decoded when first read; `malformed_input` if it cannot be). */
  signer: x509.X509Certificate;
  /** The DER of the signer's certificate and of its SubjectPublicKeyInfo. */
  signerDer: Uint8Array;
  signerSpki: Uint8Array;
  /** The DER of the content (an EnvelopedData ContentInfo), empty when absent. */
  content: Uint8Array;
}

const tlv = (tag: number, content: Uint8Array) => derTlv(tag, content);

/** The content bytes of a DER value with one of `tags` (PrintableString, OCTET STRING ...), or undefined. */
function primitive(b: Uint8Array, tags: number[]): Uint8Array | undefined {
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

/** The content of an OCTET STRING node, primitive or (BER) constructed of primitive chunks. */
function octetsOf(n: DerNode, what: string): Uint8Array {
  if (n.tag === 0x04 || n.tag === 0x80) return derContent(n, what);
  if (n.tag !== 0x24 && n.tag !== 0xa0) throw malformed(what);
  return Buffer.concat(derChildren(n, what, [0x04]).map((c) => derContent(c, what)));
}

/** The children of the single node `[0] EXPLICIT` wraps. */
function explicit0(n: DerNode, what: string): DerNode {
  const inner = n.tag === 0xa0 ? derChildren(n, what) : [];
  if (inner.length !== 1) throw malformed(what);
  return inner[0]!;
}

/** The fields of a ContentInfo of `contentType` (its `[0] EXPLICIT` content's children). */
function contentInfo(der: Uint8Array, contentType: string, what: string): DerNode[] {
  const ci = derChildren(derRoot(der, 0x30, what), what);
  if (ci.length !== 2 || derOid(ci[0]!, what) !== contentType) throw malformed(what);
  const content = explicit0(ci[1]!, what);
  if (content.tag !== 0x30) throw malformed(what);
  return derChildren(content, what);
}

/**
 * Parses and verifies a pkiMessage (DER ContentInfo of a SignedData). The structure is walked
 * in place (the certificates are not decoded, only the signer's); the generic ASN.1 parser
 * cost milliseconds per message.
 */
export async function parsePkiMessage(der: Uint8Array): Promise<PkiMessage> {
  let content: Uint8Array;
  let certs: DerNode[];
  let signers: DerNode[];
  try {
    const what = "the pkiMessage";
    const fields = contentInfo(der, id_signedData, what);
    // version, digestAlgorithms, encapContentInfo, [0] certificates, [1] crls, signerInfos
    const last = fields.at(-1);
    if (fields.length < 4 || fields[0]!.tag !== 0x02 || fields[1]!.tag !== 0x31 || fields[2]!.tag !== 0x30 || last!.tag !== 0x31) throw malformed(what);
    const optional = fields.slice(3, -1);
    if (optional.length > 2 || optional.some((f, i) => (f.tag !== 0xa0 && f.tag !== 0xa1) || (i > 0 && f.tag <= optional[i - 1]!.tag))) throw malformed(what);
    const encap = derChildren(fields[2]!, what);
    if (encap.length < 1 || encap.length > 2 || encap[0]!.tag !== 0x06) throw malformed(what);
    content = encap[1] ? octetsOf(explicit0(encap[1], what), what) : new Uint8Array(0);
    certs = optional[0]?.tag === 0xa0 ? derChildren(optional[0], what).filter((c) => c.tag === 0x30) : [];
    signers = derChildren(last!, what, [0x30]);
  } catch (cause) {
    throw malformed("the message is not a CMS SignedData", cause);
  }
  if (signers.length !== 1) throw malformed("the message must have exactly one signer");
  let si: SignerInfoParts;
  try {
    si = signerInfoParts(signers[0]!);
  } catch (cause) {
    throw malformed("the message is not a CMS SignedData", cause);
  }
  // sid: IssuerAndSerialNumber, matched byte for byte against the certificates' issuer and serial.
  const sid = derChildren(signers[0]!, "the signer")[1];
  if (!sid || sid.tag !== 0x30 || !si.signedAttrs) throw malformed("the signer must be named by issuer and serial and sign attributes");
  const [sidIssuer, sidSerial] = derChildren(sid, "the signer");
  const same = (a: DerNode | undefined, b: DerNode) => !!a && Buffer.from(derBytes(a)).equals(Buffer.from(derBytes(b)));
  let signerDer: Uint8Array | undefined;
  let spki: Uint8Array | undefined;
  for (const c of certs.map(derBytes)) {
    try {
      const f = certificateFields(c);
      if (same(sidIssuer, f.issuer) && same(sidSerial, f.serial)) [signerDer, spki] = [c.slice(), derBytes(f.spki).slice()];
    } catch {
      // not a certificate this walk reads: not the signer's
    }
    if (signerDer) break;
  }
  if (!signerDer || !spki) throw malformed("the signer's certificate is not in the message");
  const keyAlg = spkiKeyAlgorithm(spki);
  if (!keyAlg) throw malformed("the signer's public key cannot be read");
  const failure = await verifySignerInfo(si, content, spki.slice().buffer as ArrayBuffer, keyAlg);
  if (failure === "unsupported_digest") throw malformed("unsupported digest algorithm");
  if (failure === "digest_mismatch") throw malformed("the messageDigest does not match the content");
  if (failure === "unsupported_signature") throw malformed("unsupported signature algorithm");
  if (failure) throw new AppError("signature_invalid", "the message signature does not verify", { status: 400 });
  const text = (oid: string) => {
    const v = si.attrs.get(oid);
    const b = v ? primitive(v, [0x13, 0x0c, 0x16]) : undefined;
    return b ? new TextDecoder().decode(b) : undefined;
  };
  const bytes = (oid: string) => {
    const v = si.attrs.get(oid);
    return v ? primitive(v, [0x04])?.slice() : undefined;
  };
  const messageType = text(SCEP_ATTR.messageType);
  const transactionId = text(SCEP_ATTR.transactionID);
  if (!messageType || !transactionId || transactionId.length > 128) throw malformed("messageType and transactionID are required");
  const msg = { messageType, transactionId, senderNonce: bytes(SCEP_ATTR.senderNonce), recipientNonce: bytes(SCEP_ATTR.recipientNonce), pkiStatus: text(SCEP_ATTR.pkiStatus), failInfo: text(SCEP_ATTR.failInfo), signerDer, signerSpki: spki, content } as Omit<PkiMessage, "signer">;
  // The library's view of the signer's certificate only for the messages that need it (RenewalReq).
  let view: x509.X509Certificate | undefined;
  const certDer = signerDer;
  return Object.defineProperty(msg, "signer", {
    enumerable: true,
    get: () => {
      try {
        return (view ??= new x509.X509Certificate(certDer.slice()));
      } catch (cause) {
        throw malformed("the signer's certificate cannot be read", cause);
      }
    },
  }) as PkiMessage;
}

/** RSAES-PKCS1-v1_5 decryption with implicit rejection: a bad padding gives `fallbackLength` random bytes. */
async function rsaPkcs1Decrypt(key: KeyObject | RawRsaDecrypt, encrypted: Uint8Array, fallbackLength: number): Promise<Uint8Array> {
  const fallback = randomBytes(fallbackLength);
  const em = await (typeof key === "function" ? key : inThreadRsa(key))(encrypted);
  if (!em) return fallback;
  // EM = 0x00 || 0x02 || PS (>= 8 non-zero bytes) || 0x00 || M
  let sep = -1;
  for (let i = 2; i < em.length; i++) if (em[i] === 0 && sep < 0) sep = i;
  const good = em[0] === 0 && em[1] === 2 && sep >= 10 && em.length - sep - 1 === fallbackLength;
  return good ? new Uint8Array(em.subarray(sep + 1)) : fallback;
}

/**
 * Decrypts an EnvelopedData ContentInfo addressed (by issuer and serial, RSA key transport) to
 * `cert`, with its private key, or with raw RSA decryption that holds it (rsa-pool.ts).
 */
export async function openEnvelope(der: Uint8Array, cert: x509.X509Certificate, key: KeyObject | RawRsaDecrypt): Promise<Uint8Array> {
  const what = "the message content";
  let recipients: DerNode[];
  let eci: DerNode[];
  try {
    // EnvelopedData: version, [0] originatorInfo, recipientInfos, encryptedContentInfo, [1] unprotectedAttrs
    const fields = contentInfo(der, id_envelopedData, what).filter((f) => f.tag !== 0xa0 && f.tag !== 0xa1);
    if (fields.length !== 3 || fields[0]!.tag !== 0x02 || fields[1]!.tag !== 0x31 || fields[2]!.tag !== 0x30) throw malformed(what);
    recipients = derChildren(fields[1]!, what);
    eci = derChildren(fields[2]!, what);
    if (eci.length < 2 || eci.length > 3 || eci[0]!.tag !== 0x06 || eci[1]!.tag !== 0x30) throw malformed(what);
  } catch (cause) {
    throw malformed("the message content is not a CMS EnvelopedData", cause);
  }
  // KeyTransRecipientInfo: version, rid (IssuerAndSerialNumber), keyEncryptionAlgorithm, encryptedKey.
  const serial = cert.serialNumber.toLowerCase().replace(/^0+/, "");
  const serialOf = (rid: DerNode) => {
    const ias = rid.tag === 0x30 ? derChildren(rid, what) : [];
    return ias[1]?.tag === 0x02 ? Buffer.from(derContent(ias[1], what)).toString("hex").replace(/^0+/, "") : undefined;
  };
  const ktri = recipients
    .filter((r) => r.tag === 0x30)
    .map((r) => derChildren(r, what))
    .find((k) => k.length === 4 && serialOf(k[1]!) === serial);
  if (!ktri) throw malformed("the message is not encrypted to the SCEP RA certificate");
  const keyAlg = derChildren(ktri[2]!, what)[0];
  if (!keyAlg || derOid(keyAlg, what) !== RSA_ENCRYPTION) throw malformed("key transport must be rsaEncryption");
  const [algOid, params] = derChildren(eci[1]!, what);
  const cipher = CIPHERS[derOid(algOid!, what)];
  if (!cipher) throw malformed("unsupported content encryption algorithm (AES-CBC, 3DES or DES expected)");
  const iv = params?.tag === 0x04 ? derContent(params, what) : undefined;
  if (!iv || iv.length !== (cipher.name.startsWith("aes") ? 16 : 8)) throw malformed("the content encryption IV is missing or of the wrong length");
  const encrypted = eci[2] ? octetsOf(eci[2], what) : undefined;
  if (!encrypted || encrypted.length === 0) throw malformed("the envelope has no encrypted content");
  const cek = await rsaPkcs1Decrypt(key, derContent(ktri[3]!, what, 0x04), cipher.keyLength);
  try {
    const d = createDecipheriv(cipher.name, cek, iv);
    return new Uint8Array(Buffer.concat([d.update(encrypted), d.final()]));
  } catch (cause) {
    throw new AppError("decryption_failed", "the message content does not decrypt with the RA key", { status: 400, cause });
  }
}

/** An EnvelopedData ContentInfo of `content` for `recipient` (RSA key transport, AES-256-CBC by default). */
export function sealEnvelope(content: Uint8Array, recipient: x509.X509Certificate | Uint8Array, cipherOid: "2.16.840.1.101.3.4.1.2" | typeof AES_256_CBC = AES_256_CBC): Uint8Array {
  const cipher = CIPHERS[cipherOid]!;
  const cek = randomBytes(cipher.keyLength);
  const iv = randomBytes(cipher.name.startsWith("aes") ? 16 : 8);
  const c = createCipheriv(cipher.name, cek, iv);
  const encrypted = Buffer.concat([c.update(content), c.final()]);
  const recipientDer = recipient instanceof Uint8Array ? recipient : new Uint8Array(recipient.rawData);
  const pub = createPublicKey({ key: Buffer.from(derBytes(certificateFields(recipientDer).spki)), format: "der", type: "spki" });
  const encryptedKey = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, cek);
  const ktri = derTlv(0x30, intDer(0), issuerAndSerialDer(recipientDer), derTlv(0x30, oidDer(RSA_ENCRYPTION), derTlv(0x05)), derTlv(0x04, encryptedKey));
  const eci = derTlv(0x30, oidDer(id_data), derTlv(0x30, oidDer(cipherOid), derTlv(0x04, iv)), derTlv(0x80, encrypted));
  const env = derTlv(0x30, intDer(0), derTlv(0x31, ktri), eci);
  return derTlv(0x30, oidDer(id_envelopedData), derTlv(0xa0, env));
}

/** What signs a pkiMessage: a certificate, its key, and how the key signs. */
export type MessageSigner = ContentSigner;

/** A signed pkiMessage: SCEP attributes (text values, nonces as bytes), content (may be empty) and the signer's certificate. */
export async function signPkiMessage(
  signer: MessageSigner,
  fields: { messageType: string; transactionId: string; senderNonce: Uint8Array; recipientNonce?: Uint8Array; pkiStatus?: string; failInfo?: string },
  content: Uint8Array,
  extraCerts: x509.X509Certificate[] = [],
): Promise<Uint8Array> {
  const text = (s: string) => tlv(0x13, new TextEncoder().encode(s));
  const attributes = [
    attributeDer(ATTR_CONTENT_TYPE, oidDer(id_data)),
    attributeDer(ATTR_MESSAGE_DIGEST, tlv(0x04, new Uint8Array(createHash("sha256").update(content).digest()))),
    attributeDer(SCEP_ATTR.messageType, text(fields.messageType)),
    attributeDer(SCEP_ATTR.transactionID, text(fields.transactionId)),
    attributeDer(SCEP_ATTR.senderNonce, tlv(0x04, fields.senderNonce)),
  ];
  if (fields.recipientNonce) attributes.push(attributeDer(SCEP_ATTR.recipientNonce, tlv(0x04, fields.recipientNonce)));
  if (fields.pkiStatus) attributes.push(attributeDer(SCEP_ATTR.pkiStatus, text(fields.pkiStatus)));
  if (fields.failInfo) attributes.push(attributeDer(SCEP_ATTR.failInfo, text(fields.failInfo)));
  const certs = [signer.cert, ...extraCerts].map((c) => new Uint8Array(c.rawData));
  return signedDataDer({ version: 1, contentType: id_data, content, certs, attributes, signer });
}
