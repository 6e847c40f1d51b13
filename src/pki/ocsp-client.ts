/**
 * The relying party's side of OCSP (RFC 6960): a request for one certificate with a fresh nonce,
 * and the verification of the answer (signed by the issuer or by a responder it delegated to,
 * current, our nonce echoed, about our certificate). Signatures are checked with node:crypto
 * against the issuer's public key. Used by the CLI (`ca ocsp check`) and by services that check
 * a client certificate's status before trusting it.
 */
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, CRLReason, Extension as AsnExtension } from "@peculiar/asn1-x509";
import { BasicOCSPResponse, CertID, id_pkix_ocsp_basic, id_pkix_ocsp_nonce, OCSPRequest, OCSPResponse, OCSPResponseStatus, Request as OcspSingleRequest, TBSRequest } from "@peculiar/asn1-ocsp";
import * as x509 from "./x509.ts";
import { issuerHashes, serialHexOf } from "./ocsp.ts";

/** An OCSP answer that cannot be trusted (unsigned, stale, replayed, about another certificate); the message says which. */
export class OcspCheckError extends Error {}

/** A certificate's serial as OCSP compares it: lowercase hex without leading zero octets. */
export const serialOf = (cert: x509.X509Certificate) => serialHexOf(Buffer.from(cert.serialNumber, "hex"));

const REASONS = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold", "", "removeFromCRL", "privilegeWithdrawn", "aACompromise"];
const OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";
const SHA1 = "1.3.14.3.2.26";
const SIG_HASH: Record<string, string | null> = {
  "1.2.840.10045.4.3.2": "sha256",
  "1.2.840.10045.4.3.3": "sha384",
  "1.2.840.10045.4.3.4": "sha512",
  "1.2.840.113549.1.1.11": "sha256",
  "1.2.840.113549.1.1.12": "sha384",
  "1.3.101.112": null,
};

export interface OcspStatus {
  status: "good" | "revoked" | "unknown";
  serial: string;
  this_update: string;
  next_update: string | null;
  revoked_at?: string;
  reason?: string;
  responder: string;
}

/** A DER OCSP request for `cert` issued by `issuer`, with a fresh nonce. */
export async function ocspRequest(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<{ der: Uint8Array; nonce: ArrayBuffer }> {
  const h = (await issuerHashes(issuer))["SHA-1"];
  const certId = new CertID({
    hashAlgorithm: new AlgorithmIdentifier({ algorithm: SHA1, parameters: null }),
    issuerNameHash: new OctetString(Buffer.from(h.name, "hex")),
    issuerKeyHash: new OctetString(Buffer.from(h.key, "hex")),
    // A copy: a small Buffer may be a view into a shared pool (Node, Deno), whose `.buffer` is the whole pool.
    serialNumber: new Uint8Array(Buffer.from(cert.serialNumber, "hex")).buffer,
  });
  const nonce = AsnConvert.serialize(new OctetString(crypto.getRandomValues(new Uint8Array(16))));
  const req = new OCSPRequest({
    tbsRequest: new TBSRequest({ requestList: [new OcspSingleRequest({ reqCert: certId })], requestExtensions: [new AsnExtension({ extnID: id_pkix_ocsp_nonce, critical: false, extnValue: new OctetString(nonce) })] }),
  });
  return { der: new Uint8Array(AsnConvert.serialize(req)), nonce };
}

const sameBytes = (a: ArrayBuffer | Uint8Array, b: ArrayBuffer | Uint8Array) => Buffer.from(a as ArrayBuffer).equals(Buffer.from(b as ArrayBuffer));

/**
 * Checks an OCSP answer: successful, signed by the issuer or by a responder certificate the
 * issuer signed for OCSP signing and valid now, our nonce echoed, current, and about our
 * certificate. Any failure is a OcspCheckError.
 */
export async function verifyOcspResponse(body: Uint8Array, cert: x509.X509Certificate, issuer: x509.X509Certificate, nonce: ArrayBuffer): Promise<OcspStatus> {
  let basic: BasicOCSPResponse;
  try {
    const resp = AsnConvert.parse(body, OCSPResponse);
    if (resp.responseStatus !== OCSPResponseStatus.successful) throw new OcspCheckError(`the OCSP responder answered ${OCSPResponseStatus[resp.responseStatus] ?? resp.responseStatus}`);
    if (!resp.responseBytes || resp.responseBytes.responseType !== id_pkix_ocsp_basic) throw new OcspCheckError("the OCSP answer is not a basic response");
    basic = AsnConvert.parse(resp.responseBytes.response.buffer, BasicOCSPResponse);
  } catch (e) {
    if (e instanceof OcspCheckError) throw e;
    throw new OcspCheckError("the OCSP answer does not parse");
  }
  let signer = issuer;
  if (basic.certs?.length) {
    const delegated = new x509.X509Certificate(AsnConvert.serialize(basic.certs[0]!));
    const now = new Date();
    const eku = delegated.getExtension(x509.ExtendedKeyUsageExtension);
    const ok =
      delegated.issuer === issuer.subject &&
      (await delegated.verify({ publicKey: issuer.publicKey, signatureOnly: true })) &&
      delegated.notBefore <= now &&
      now <= delegated.notAfter &&
      !!eku?.usages.map(String).includes(OCSP_SIGNING);
    if (!ok) throw new OcspCheckError("the OCSP responder's certificate is not authorized by the issuing CA");
    signer = delegated;
  }
  const hash = SIG_HASH[basic.signatureAlgorithm.algorithm];
  if (hash === undefined) throw new OcspCheckError(`the OCSP answer is signed with an unknown algorithm ${basic.signatureAlgorithm.algorithm}`);
  const tbs = new Uint8Array(basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData));
  const key = createPublicKey({ key: Buffer.from(signer.publicKey.rawData), format: "der", type: "spki" });
  if (!nodeVerify(hash, tbs, key, new Uint8Array(basic.signature))) throw new OcspCheckError("the OCSP answer's signature does not verify");

  const echoed = basic.tbsResponseData.responseExtensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
  if (!echoed || !sameBytes(echoed.extnValue.buffer, nonce)) throw new OcspCheckError("the OCSP answer does not carry our nonce (a replay?)");
  const serial = serialOf(cert);
  const single = basic.tbsResponseData.responses.find((r) => serialHexOf(r.certID.serialNumber) === serial);
  if (!single) throw new OcspCheckError("the OCSP answer is not about this certificate");
  const now = Date.now();
  if (single.thisUpdate.getTime() > now + 300_000 || (single.nextUpdate && single.nextUpdate.getTime() < now - 300_000)) throw new OcspCheckError("the OCSP answer is not current");
  const base = { serial, this_update: single.thisUpdate.toISOString(), next_update: single.nextUpdate?.toISOString() ?? null, responder: signer.subject };
  const st = single.certStatus;
  if (st.revoked) {
    const reason = st.revoked.revocationReason instanceof CRLReason ? REASONS[st.revoked.revocationReason.reason] : undefined;
    return { status: "revoked", ...base, revoked_at: st.revoked.revocationTime.toISOString(), reason: reason || undefined };
  }
  if (st.unknown !== undefined) return { status: "unknown", ...base };
  return { status: "good", ...base };
}
