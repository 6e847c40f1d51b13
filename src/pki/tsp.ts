/**
 * RFC 3161 time-stamping: TimeStampReq parsing and signed TimeStampResp tokens
 * (CMS SignedData over a TSTInfo, with an ESS signingCertificateV2 attribute per
 * RFC 5816 so verifiers can bind the token to the TSA certificate).
 *
 * Guarantees: requests are size-capped and parsed by `@peculiar/asn1-tsp`; only
 * SHA-256/384/512 imprints of the right length are stamped; a request policy
 * other than the TSA's, or any request extension, is refused; the nonce is echoed.
 * Parse failures are `malformed_input` (400); policy refusals return a rejection.
 */
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { Certificate } from "@peculiar/asn1-x509";
import { Attribute, CertificateChoices, CertificateSet, ContentInfo, EncapsulatedContent, EncapsulatedContentInfo, id_signedData, SignedData, SignerInfos, DigestAlgorithmIdentifiers } from "@peculiar/asn1-cms";
import { Accuracy, id_ct_tstInfo, PKIFailureInfo, PKIFreeText, PKIStatus, PKIStatusInfo, TimeStampReq, TimeStampResp, TimeStampToken, TSTInfo } from "@peculiar/asn1-tsp";
import { AlgorithmIdentifier } from "@peculiar/asn1-x509";
import { AppError } from "../service/errors.ts";
import { hashParametersOk, signDer, type CaKeyType } from "./signing.ts";
import * as x509 from "./x509.ts";
import { ATTR_CONTENT_TYPE, ATTR_MESSAGE_DIGEST, SHA256_ALGORITHM_OID, signerInfo } from "./cms-signer.ts";

export const MAX_TSP_REQUEST_BYTES = 16 * 1024;
const HASHES: Record<string, { name: string; length: number }> = {
  "2.16.840.1.101.3.4.2.1": { name: "SHA-256", length: 32 },
  "2.16.840.1.101.3.4.2.2": { name: "SHA-384", length: 48 },
  "2.16.840.1.101.3.4.2.3": { name: "SHA-512", length: 64 },
};
const ATTR_SIGNING_CERT_V2 = "1.2.840.113549.1.9.16.2.47";
/** DER of the OBJECT IDENTIFIER id-ct-TSTInfo (1.2.840.113549.1.9.16.1.4). */
const TSTINFO_OID_DER = new Uint8Array([0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04]);

/** PKIFailureInfo bit numbers of RFC 3161 §2.4.2 (the package's flag values do not follow them). */
export const TSP_FAILURE = { badAlg: 0, badRequest: 2, badDataFormat: 5, timeNotAvailable: 14, unacceptedPolicy: 15, unacceptedExtension: 16, addInfoNotAvailable: 17, systemFailure: 25 } as const;
export type TspFailure = keyof typeof TSP_FAILURE;

export interface TsaSigner {
  keyType: CaKeyType;
  key: CryptoKey;
  cert: x509.X509Certificate;
}

export type TspOutcome = { granted: true; response: Uint8Array } | { granted: false; response: Uint8Array; reason: string };

/** Parses a DER TimeStampReq; throws `malformed_input` when it is not one. */
export function parseTimeStampReq(der: Uint8Array): TimeStampReq {
  if (der.length === 0 || der.length > MAX_TSP_REQUEST_BYTES) throw new AppError("malformed_input", "the time-stamp request is empty or too large");
  try {
    const req = AsnConvert.parse(der.slice().buffer as ArrayBuffer, TimeStampReq);
    if (req.version !== 1 || !req.messageImprint?.hashAlgorithm) throw new Error("version");
    if (!hashParametersOk(req.messageImprint.hashAlgorithm)) throw new Error("hash algorithm parameters are neither absent nor NULL");
    return req;
  } catch (cause) {
    throw new AppError("malformed_input", "the time-stamp request is not valid DER", { cause });
  }
}

/** A rejection TimeStampResp (RFC 3161 §2.4.2). */
export function timeStampRejection(flag: TspFailure, text: string): Uint8Array {
  const status = new PKIStatusInfo({ status: PKIStatus.rejection, statusString: new PKIFreeText([text]), failInfo: failInfo(flag) });
  return new Uint8Array(AsnConvert.serialize(new TimeStampResp({ status })));
}

function failInfo(flag: TspFailure): PKIFailureInfo {
  // A named BIT STRING: bit n is the n-th bit counting from the most significant bit of the first octet.
  const bit = TSP_FAILURE[flag];
  const bytes = new Uint8Array(Math.floor(bit / 8) + 1);
  bytes[bit >> 3] = 0x80 >> (bit % 8);
  return new PKIFailureInfo(bytes, 7 - (bit % 8));
}

/** Checks the request against the TSA's rules and, when acceptable, returns a granted response with a signed token. */
export async function stamp(signer: TsaSigner, req: TimeStampReq, opts: { policy: string; serialHex: string; now: Date; accuracySeconds: number }): Promise<TspOutcome> {
  const hash = HASHES[req.messageImprint.hashAlgorithm.algorithm];
  if (!hash) return reject("badAlg", "the message imprint must use SHA-256, SHA-384 or SHA-512");
  if (req.messageImprint.hashedMessage.byteLength !== hash.length) return reject("badDataFormat", "the message imprint length does not match its hash algorithm");
  if (req.reqPolicy !== undefined && req.reqPolicy !== opts.policy) return reject("unacceptedPolicy", "this TSA does not issue under the requested policy");
  if (req.extensions && req.extensions.length > 0) return reject("unacceptedExtension", "this TSA supports no request extensions");
  if (req.nonce && req.nonce.byteLength > 32) return reject("badDataFormat", "the nonce is longer than 32 octets");

  // Whole seconds: GeneralizedTime without a fraction; the accuracy field states the bound.
  const genTime = new Date(Math.floor(opts.now.getTime() / 1000) * 1000);
  const tst = new TSTInfo({
    version: 1,
    policy: opts.policy,
    messageImprint: req.messageImprint,
    serialNumber: hexToBytes(opts.serialHex).buffer as ArrayBuffer,
    genTime,
    accuracy: new Accuracy({ seconds: opts.accuracySeconds }),
    ordering: false,
    nonce: req.nonce,
  });
  const tstDer = AsnConvert.serialize(tst);
  const certDer = signer.cert.rawData;
  const certHash = new Uint8Array(await crypto.subtle.digest("SHA-256", certDer));
  // SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2 }, ESSCertIDv2 with the default SHA-256 omitted.
  const essCertId = der(0x30, der(0x04, certHash));
  const signingCertV2 = der(0x30, der(0x30, essCertId));
  const attrs = [
    new Attribute({ attrType: ATTR_CONTENT_TYPE, attrValues: [TSTINFO_OID_DER.slice().buffer as ArrayBuffer] }),
    new Attribute({ attrType: ATTR_MESSAGE_DIGEST, attrValues: [AsnConvert.serialize(new OctetString(await crypto.subtle.digest("SHA-256", tstDer)))] }),
    new Attribute({ attrType: ATTR_SIGNING_CERT_V2, attrValues: [signingCertV2.slice().buffer as ArrayBuffer] }),
  ];
  const info = await signerInfo(attrs, certDer, (signedAttrs) => signDer(signer.keyType, signer.key, signedAttrs));
  const signed = new SignedData({
    version: 3,
    digestAlgorithms: new DigestAlgorithmIdentifiers([new AlgorithmIdentifier({ algorithm: SHA256_ALGORITHM_OID })]),
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_ct_tstInfo, eContent: new EncapsulatedContent({ single: new OctetString(tstDer) }) }),
    signerInfos: new SignerInfos([info]),
  });
  if (req.certReq) signed.certificates = new CertificateSet([new CertificateChoices({ certificate: AsnConvert.parse(certDer, Certificate) })]);
  const token = new TimeStampToken({ contentType: id_signedData, content: AsnConvert.serialize(signed) });
  const resp = new TimeStampResp({ status: new PKIStatusInfo({ status: PKIStatus.granted }), timeStampToken: token as ContentInfo });
  return { granted: true, response: new Uint8Array(AsnConvert.serialize(resp)) };
}

function reject(flag: TspFailure, reason: string): TspOutcome {
  return { granted: false, response: timeStampRejection(flag, reason), reason };
}

function der(tag: number, content: Uint8Array): Uint8Array {
  const n = content.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return concat([new Uint8Array([tag, ...len]), content]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}
