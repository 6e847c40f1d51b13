/**
 * The CMS and ASN.1 of CMC (RFC 5272): reading a Full PKI Request (a SignedData around a
 * PKIData) and writing a Full PKI Response (a SignedData around a PKIResponse). Parsing and
 * building both directions are here, so the server and its tests agree on one encoding.
 *
 * Guarantees: a parsed request's SignerInfo verifies over its signed attributes (whose
 * messageDigest matches the content and whose contentType is id-cct-PKIData) with the key the
 * caller names; anything else is `malformed_input` or `signature_invalid`, both 4xx.
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import type { Certificate } from "@peculiar/asn1-x509";
import { ContentInfo, id_signedData, SignedData, type SignerInfo } from "@peculiar/asn1-cms";
import { AppError } from "../../../src/service/errors.ts";
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import { derBytes, derChildren, derContent, derOid, derRoot, derSmallInt, intDer, oidDer, utf8Der, type DerNode } from "../../../src/pki/der.ts";
import { CMS_DIGESTS, signedContent, verifySignerInfo, type ContentSigner } from "../../../src/pki/cms-signer.ts";
import type * as x509 from "../../../src/pki/x509.ts";

/** Content types and controls (RFC 5272 §3.2, §6). */
export const CMC = {
  pkiData: "1.3.6.1.5.5.7.12.2",
  pkiResponse: "1.3.6.1.5.5.7.12.3",
  identification: "1.3.6.1.5.5.7.7.2",
  transactionId: "1.3.6.1.5.5.7.7.5",
  senderNonce: "1.3.6.1.5.5.7.7.6",
  recipientNonce: "1.3.6.1.5.5.7.7.7",
  statusInfoV2: "1.3.6.1.5.5.7.7.25",
  identityProofV2: "1.3.6.1.5.5.7.7.34",
} as const;

/** CMCStatus (RFC 5272 §6.1.4). */
export const CMC_STATUS = { success: 0, failed: 2, pending: 3, noSupport: 4 } as const;
/** CMCFailInfo (RFC 5272 §6.1.4). */
export const CMC_FAIL = { badAlg: 0, badMessageCheck: 1, badRequest: 2, badTime: 3, badCertId: 4, unsupportedExt: 5, badIdentity: 7, popFailed: 9, internalCAError: 11, tryLater: 12, authDataFail: 13 } as const;

/** RSA signatures a Full PKI Request may carry: rsaEncryption and PKCS#1 v1.5 with SHA-1/256/384/512. */
const RSA_PKCS1_V15 = ["1.2.840.113549.1.1.1", "1.2.840.113549.1.1.5", "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13"];
/** HMACs of identityProofV2's macAlgId (RFC 4231 / RFC 8018 OIDs), as WebCrypto hashes. */
const HMACS: Record<string, string> = {
  "1.2.840.113549.2.7": "SHA-1",
  "1.2.840.113549.2.9": "SHA-256",
  "1.2.840.113549.2.10": "SHA-384",
  "1.2.840.113549.2.11": "SHA-512",
};

const malformed = (m: string, cause?: unknown) => new AppError("malformed_input", m, { cause });
const ab = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;

/** One control of a PKIData: its body part, type, and the DER of each value. */
export interface TaggedAttribute {
  bodyPartId: number;
  type: string;
  values: DerNode[];
}

/** The parts of a PKIData this CA reads. */
export interface PkiData {
  controls: TaggedAttribute[];
  /** PKCS#10 requests (TaggedCertificationRequest) with their body part ids. */
  requests: Array<{ bodyPartId: number; csr: Uint8Array }>;
  /** CRMF and other requests, which this CA does not take. */
  otherRequests: number;
  /** The DER of reqSequence: what identityProofV2 MACs. */
  reqSequence: Uint8Array;
  /** Nested CMS content and other messages, which this CA does not take. */
  nested: number;
}

/** Parses a PKIData (RFC 5272 §3.2.1). */
export function parsePkiData(der: Uint8Array): PkiData {
  const what = "the PKIData";
  const [controlSeq, reqSeq, cmsSeq, otherSeq, ...rest] = derChildren(derRoot(der, 0x30, what), what, [0x30]);
  if (!controlSeq || !reqSeq || !cmsSeq || !otherSeq || rest.length) throw malformed(`${what} must have four sequences`);
  const controls = derChildren(controlSeq, what, [0x30]).map((a) => {
    const [id, type, values, ...more] = derChildren(a, what);
    if (!id || !type || !values || more.length || values.tag !== 0x31) throw malformed("a control is not a TaggedAttribute");
    return { bodyPartId: derSmallInt(id, what), type: derOid(type, what), values: derChildren(values, what) };
  });
  const requests: PkiData["requests"] = [];
  let otherRequests = 0;
  for (const r of derChildren(reqSeq, what)) {
    if (r.tag !== 0xa0) {
      otherRequests++;
      continue;
    }
    const [id, csr, ...more] = derChildren(r, what);
    if (!id || !csr || more.length || csr.tag !== 0x30) throw malformed("a TaggedCertificationRequest is not as expected");
    requests.push({ bodyPartId: derSmallInt(id, what), csr: derBytes(csr).slice() });
  }
  return { controls, requests, otherRequests, reqSequence: derBytes(reqSeq).slice(), nested: derChildren(cmsSeq, what).length + derChildren(otherSeq, what).length };
}

/** The one value of a control, or undefined when absent; several values or several controls of the type are malformed. */
export function control(data: PkiData, type: string): DerNode | undefined {
  const found = data.controls.filter((c) => c.type === type);
  if (found.length === 0) return undefined;
  if (found.length > 1 || found[0]!.values.length !== 1) throw malformed(`control ${type} must appear once with one value`);
  return found[0]!.values[0];
}

export interface IdentityProofV2 {
  proofHash: string;
  macHash: string;
  witness: Uint8Array;
}

/** identityProofV2 (RFC 5272 §6.2.1): proofAlgID (a hash), macAlgId (an HMAC), witness. */
export function readIdentityProofV2(n: DerNode): IdentityProofV2 {
  const what = "identityProofV2";
  const [proofAlg, macAlg, witness, ...more] = derChildren(n, what);
  if (!proofAlg || !macAlg || !witness || more.length) throw malformed(`${what} is not as expected`);
  const algOid = (a: DerNode) => derOid(derChildren(a, what, undefined)[0] ?? a, what);
  const proofHash = CMS_DIGESTS[algOid(proofAlg)];
  const macHash = HMACS[algOid(macAlg)];
  if (!proofHash || !macHash) throw new AppError("unsupported_algorithm", "identityProofV2: unsupported hash or MAC algorithm");
  return { proofHash, macHash, witness: derContent(witness, what, 0x04) };
}

/** The witness of identityProofV2: HMAC over DER(reqSequence), keyed by the hash of the shared secret (RFC 5272 §6.2.1). */
export async function identityWitness(secret: Uint8Array, reqSequence: Uint8Array, proofHash: string, macHash: string): Promise<Uint8Array> {
  const key = new Uint8Array(await crypto.subtle.digest(proofHash, ab(secret)));
  const hmac = await crypto.subtle.importKey("raw", ab(key), { name: "HMAC", hash: macHash }, false, ["sign"]);
  key.fill(0);
  return new Uint8Array(await crypto.subtle.sign("HMAC", hmac, ab(reqSequence)));
}

/** A parsed Full PKI Request: its one SignerInfo, the certificates it carries, and the PKIData. */
export interface FullRequest {
  signer: SignerInfo;
  certificates: Certificate[];
  pkiData: PkiData;
  /** The DER of the PKIData (the signed content). */
  content: Uint8Array;
}

/** Reads a Full PKI Request: a ContentInfo of a SignedData with one signer whose content is a PKIData. Not yet verified. */
export function parseFullRequest(der: Uint8Array): FullRequest {
  let signed: SignedData;
  try {
    const ci = AsnConvert.parse(ab(der), ContentInfo);
    if (ci.contentType !== id_signedData) throw new Error("not SignedData");
    signed = AsnConvert.parse(ci.content, SignedData);
  } catch (cause) {
    throw malformed("a Full PKI Request is a CMS SignedData", cause);
  }
  if (signed.encapContentInfo.eContentType !== CMC.pkiData) throw malformed("the SignedData's content type must be id-cct-PKIData");
  if (signed.signerInfos.length !== 1) throw malformed("a Full PKI Request has exactly one signer");
  const e = signed.encapContentInfo.eContent;
  const content = e?.single ? new Uint8Array(e.single.buffer) : e?.any ? octetStringValue(new Uint8Array(e.any)) : undefined;
  if (!content?.length) throw malformed("the SignedData carries no PKIData");
  const certificates = (signed.certificates ?? []).map((c) => c.certificate).filter((c): c is Certificate => !!c);
  return { signer: signed.signerInfos[0]!, certificates, pkiData: parsePkiData(content), content };
}

/** The value of an OCTET STRING, primitive or constructed (BER segments, as pkijs writes eContent). */
function octetStringValue(der: Uint8Array): Uint8Array {
  const what = "the encapsulated content";
  const n = derRoot(der, der[0] === 0x24 ? 0x24 : 0x04, what);
  if (n.tag === 0x04) return derContent(n, what).slice();
  return new Uint8Array(Buffer.concat(derChildren(n, what, [0x04]).map((c) => derContent(c, what))));
}

/**
 * Verifies the request's SignerInfo with a public key: signed attributes required, their
 * contentType id-cct-PKIData and messageDigest the content's hash, the signature over their
 * DER SET OF as received (RFC 5652 §5.4). Throws `signature_invalid` (400) when it does not verify.
 */
export async function verifyRequestSignature(req: FullRequest, spki: ArrayBuffer, keyAlg: Algorithm & { namedCurve?: string }): Promise<void> {
  const failure = await verifySignerInfo(req.signer, req.content, spki, keyAlg, { contentType: CMC.pkiData, rsaSignatureOids: RSA_PKCS1_V15 });
  if (failure === "unsupported_digest") throw malformed("unsupported digest algorithm");
  if (failure === "no_signed_attributes") throw malformed("the SignerInfo must sign attributes");
  if (failure === "content_type") throw malformed("the signed contentType must be id-cct-PKIData");
  if (failure === "unsupported_signature") throw new AppError("unsupported_algorithm", "RSA signatures are PKCS#1 v1.5 here");
  if (failure) throw new AppError("signature_invalid", "the Full PKI Request's signature does not verify", { status: 400 });
}

/** One TaggedAttribute's DER. */
const taggedAttribute = (bodyPartId: number, type: string, value: Uint8Array) => derTlv(0x30, intDer(bodyPartId), oidDer(type), derTlv(0x31, value));

/** What a Full PKI Response says. */
export interface ResponseFields {
  status: number;
  /** The body parts the status is about (the request's, or the PKIData's when none could be read). */
  bodyList: number[];
  statusString?: string;
  failInfo?: number;
  /** Echoed controls: the request's transactionId (INTEGER DER) and senderNonce. */
  transactionId?: Uint8Array;
  recipientNonce?: Uint8Array;
  senderNonce: Uint8Array;
}

/** The PKIResponse DER (RFC 5272 §3.2.2): statusInfoV2 and the echoed controls; no nested content. */
export function pkiResponse(f: ResponseFields): Uint8Array {
  const status = derTlv(
    0x30,
    intDer(f.status),
    derTlv(0x30, ...(f.bodyList.length ? f.bodyList : [1]).map(intDer)),
    ...(f.statusString ? [utf8Der(f.statusString.slice(0, 512))] : []),
    ...(f.failInfo !== undefined ? [intDer(f.failInfo)] : []),
  );
  let id = 1;
  const controls = [taggedAttribute(id++, CMC.statusInfoV2, status)];
  if (f.transactionId) controls.push(taggedAttribute(id++, CMC.transactionId, f.transactionId));
  if (f.recipientNonce) controls.push(taggedAttribute(id++, CMC.recipientNonce, derTlv(0x04, f.recipientNonce)));
  controls.push(taggedAttribute(id++, CMC.senderNonce, derTlv(0x04, f.senderNonce)));
  return derTlv(0x30, derTlv(0x30, ...controls), derTlv(0x30), derTlv(0x30));
}

/** A Full PKI Response: the PKIResponse signed by `signer`, with `certs` (issued certificate and chain) in the SignedData. */
export const signedResponse = (content: Uint8Array, signer: ContentSigner, certs: x509.X509Certificate[]) => signedContent(CMC.pkiResponse, content, signer, certs);

/** Reads a PKIResponse's statusInfoV2 (for tests and clients): status, body list, string, failInfo. */
export function readStatusInfoV2(pkiResponseDer: Uint8Array): { status: number; bodyList: number[]; statusString?: string; failInfo?: number; controls: TaggedAttribute[] } {
  const what = "the PKIResponse";
  const [controlSeq] = derChildren(derRoot(pkiResponseDer, 0x30, what), what, [0x30]);
  if (!controlSeq) throw malformed(`${what} has no controls`);
  const controls = derChildren(controlSeq, what, [0x30]).map((a) => {
    const [id, type, values] = derChildren(a, what);
    return { bodyPartId: derSmallInt(id!, what), type: derOid(type!, what), values: derChildren(values!, what) };
  });
  const info = controls.find((c) => c.type === CMC.statusInfoV2)?.values[0];
  if (!info) throw malformed(`${what} has no statusInfoV2`);
  const [status, bodyList, ...rest] = derChildren(info, what);
  const text = rest.find((n) => n.tag === 0x0c);
  const fail = rest.find((n) => n.tag === 0x02);
  return {
    status: derSmallInt(status!, what),
    bodyList: derChildren(bodyList!, what).map((n) => derSmallInt(n, what)),
    statusString: text ? new TextDecoder().decode(derContent(text, what)) : undefined,
    failInfo: fail ? derSmallInt(fail, what) : undefined,
    controls,
  };
}
