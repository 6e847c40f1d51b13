/**
 * OCSP (RFC 6960) encoding: request parsing, CertID matching and signed responses.
 *
 * Guarantees: requests are size-capped and parsed by `@peculiar/asn1-ocsp`; any
 * decoding failure is `malformed_input` (400). Responses are BasicOCSPResponses
 * signed by the caller's (delegated) responder key, identified by key hash; a
 * request nonce is echoed verbatim (RFC 8954 caps it at 32 octets, checked here).
 */
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { x509Time } from "./time.ts";
import { Certificate, CRLReason, Extension as AsnExtension, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import {
  BasicOCSPResponse,
  CertID,
  CertStatus,
  id_pkix_ocsp_basic,
  id_pkix_ocsp_nonce,
  KeyHash,
  OCSPRequest,
  OCSPResponse,
  OCSPResponseStatus,
  ResponderID,
  ResponseBytes,
  ResponseData,
  RevokedInfo,
  SingleResponse,
} from "@peculiar/asn1-ocsp";
import { AppError } from "../service/errors.ts";
import { hashParametersOk, signDer, type CaKeyType } from "./signing.ts";
import * as x509 from "./x509.ts";

export const MAX_OCSP_REQUEST_BYTES = 16 * 1024;
const MAX_REQUESTS = 16;
const SHA1 = "1.3.14.3.2.26";
const SHA256 = "2.16.840.1.101.3.4.2.1";

/** One certificate asked about: the issuer hashes and the serial as lowercase hex without leading zeros. */
export interface OcspQuestion {
  certId: CertID;
  hashAlgorithm: "SHA-1" | "SHA-256";
  issuerNameHash: string;
  issuerKeyHash: string;
  serialHex: string;
}

export interface ParsedOcspRequest {
  questions: OcspQuestion[];
  /** The nonce extension's value (DER of the OCTET STRING), to echo back. */
  nonce?: ArrayBuffer;
}

const hex = (b: ArrayBuffer | Uint8Array) => Array.from(b instanceof Uint8Array ? b : new Uint8Array(b), (x) => x.toString(16).padStart(2, "0")).join("");

/** Normalizes a serial (DER INTEGER content bytes) to lowercase hex without leading zero octets. */
export function serialHexOf(bytes: ArrayBuffer | Uint8Array): string {
  const s = hex(bytes).replace(/^(00)+/, "");
  return s === "" ? "00" : s;
}

/** Parses a DER OCSPRequest. */
export function parseOcspRequest(der: Uint8Array): ParsedOcspRequest {
  if (der.length === 0 || der.length > MAX_OCSP_REQUEST_BYTES) throw new AppError("malformed_input", "the OCSP request is empty or too large");
  let req: OCSPRequest;
  try {
    req = AsnConvert.parse(der.slice().buffer as ArrayBuffer, OCSPRequest);
  } catch (cause) {
    throw new AppError("malformed_input", "the OCSP request is not valid DER", { cause });
  }
  const list = req.tbsRequest?.requestList ?? [];
  if (list.length === 0 || list.length > MAX_REQUESTS) throw new AppError("malformed_input", `an OCSP request must ask about 1 to ${MAX_REQUESTS} certificates`);
  const questions: OcspQuestion[] = list.map((r) => {
    const id = r.reqCert;
    const oid = id?.hashAlgorithm?.algorithm;
    if (oid !== SHA1 && oid !== SHA256) throw new AppError("malformed_input", "the OCSP CertID must use SHA-1 or SHA-256");
    if (!hashParametersOk(id.hashAlgorithm)) throw new AppError("malformed_input", "the OCSP CertID hash algorithm parameters must be absent or NULL");
    const serial = new Uint8Array(id.serialNumber);
    if (serial.length === 0 || serial.length > 21) throw new AppError("malformed_input", "the OCSP CertID serial is out of range");
    return {
      certId: id,
      hashAlgorithm: oid === SHA1 ? "SHA-1" : "SHA-256",
      issuerNameHash: hex(id.issuerNameHash.buffer),
      issuerKeyHash: hex(id.issuerKeyHash.buffer),
      serialHex: serialHexOf(serial),
    };
  });
  let nonce: ArrayBuffer | undefined;
  for (const ext of req.tbsRequest.requestExtensions ?? []) {
    if (ext.extnID !== id_pkix_ocsp_nonce) continue;
    const value = ext.extnValue.buffer;
    // The value is a DER OCTET STRING of 1..32 octets (RFC 8954).
    if (value.byteLength < 3 || value.byteLength > 34) throw new AppError("malformed_input", "the OCSP nonce must be 1 to 32 octets");
    nonce = value;
  }
  return { questions, nonce };
}

/** The CertID hashes of an issuer certificate, for matching requests to an issuing CA. */
export async function issuerHashes(cert: x509.X509Certificate): Promise<Record<"SHA-1" | "SHA-256", { name: string; key: string }>> {
  const asn = AsnConvert.parse(cert.rawData, Certificate);
  const nameDer = AsnConvert.serialize(asn.tbsCertificate.subject);
  const keyBits = asn.tbsCertificate.subjectPublicKeyInfo.subjectPublicKey;
  const out = {} as Record<"SHA-1" | "SHA-256", { name: string; key: string }>;
  for (const h of ["SHA-1", "SHA-256"] as const) {
    out[h] = { name: hex(await crypto.subtle.digest(h, nameDer)), key: hex(await crypto.subtle.digest(h, keyBits)) };
  }
  return out;
}

/** The answer for one certificate. */
export type OcspAnswer =
  | { status: "good" }
  | { status: "unknown" }
  | { status: "revoked"; revokedAt: Date; reason?: number };

export interface OcspSigner {
  keyType: CaKeyType;
  key: CryptoKey;
  cert: x509.X509Certificate;
}

/** Builds and signs a successful OCSP response. */
export async function signOcspResponse(
  signer: OcspSigner,
  answers: Array<{ certId: CertID; answer: OcspAnswer }>,
  opts: { now: Date; nextUpdate: Date; nonce?: ArrayBuffer },
): Promise<Uint8Array> {
  const spki = AsnConvert.parse(signer.cert.publicKey.rawData, SubjectPublicKeyInfo);
  const keyHash = new KeyHash(await crypto.subtle.digest("SHA-1", spki.subjectPublicKey));
  const now = x509Time(opts.now);
  const responses = answers.map(({ certId, answer }) => {
    let certStatus: CertStatus;
    if (answer.status === "good") certStatus = new CertStatus({ good: null });
    else if (answer.status === "unknown") certStatus = new CertStatus({ unknown: null });
    else {
      const info = new RevokedInfo({ revocationTime: x509Time(answer.revokedAt) });
      if (answer.reason !== undefined) info.revocationReason = new CRLReason(answer.reason);
      certStatus = new CertStatus({ revoked: info });
    }
    return new SingleResponse({ certID: certId, certStatus, thisUpdate: now, nextUpdate: x509Time(opts.nextUpdate) });
  });
  const data = new ResponseData({ responderID: new ResponderID({ byKey: keyHash }), producedAt: now, responses });
  if (opts.nonce) data.responseExtensions = [new AsnExtension({ extnID: id_pkix_ocsp_nonce, critical: false, extnValue: new OctetString(opts.nonce) })];
  const { algorithm, signature } = await signDer(signer.keyType, signer.key, AsnConvert.serialize(data));
  const basic = new BasicOCSPResponse({
    tbsResponseData: data,
    signatureAlgorithm: algorithm,
    signature,
    certs: [AsnConvert.parse(signer.cert.rawData, Certificate)],
  });
  const resp = new OCSPResponse({
    responseStatus: OCSPResponseStatus.successful,
    responseBytes: new ResponseBytes({ responseType: id_pkix_ocsp_basic, response: new OctetString(AsnConvert.serialize(basic)) }),
  });
  return new Uint8Array(AsnConvert.serialize(resp));
}

/** An unsigned error response (malformedRequest, internalError, unauthorized...). */
export function ocspErrorResponse(status: OCSPResponseStatus): Uint8Array {
  return new Uint8Array(AsnConvert.serialize(new OCSPResponse({ responseStatus: status })));
}

export { OCSPResponseStatus };
