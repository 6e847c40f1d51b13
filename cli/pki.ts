/**
 * What the `ca` commands do on the user's machine: key pairs (WebCrypto), PKCS#10 requests
 * (@peculiar/x509), PEM files, and OCSP (RFC 6960) requests and the verification of their
 * answers (@peculiar/asn1-ocsp, signatures checked with node:crypto against the CA chain).
 * Private keys exist only in memory and in the PKCS#8 file written 0600.
 */
import { createPublicKey, verify as nodeVerify } from "node:crypto";
import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, CRLReason, Extension as AsnExtension } from "@peculiar/asn1-x509";
import { BasicOCSPResponse, CertID, id_pkix_ocsp_basic, id_pkix_ocsp_nonce, OCSPRequest, OCSPResponse, OCSPResponseStatus, Request as OcspSingleRequest, TBSRequest } from "@peculiar/asn1-ocsp";
import * as x509 from "../src/pki/x509.ts";
import { toPem } from "../src/pki/keys.ts";
import { issuerHashes, serialHexOf } from "../src/pki/ocsp.ts";
import { canonicalIp } from "../src/pki/sans.ts";
import { FailedError, UsageError } from "./errors.ts";

export interface KeySpec {
  kty: "EC" | "RSA" | "OKP";
  curve?: string;
  size?: number;
}

interface KeyAlg {
  gen: Algorithm;
  sign: Algorithm;
  describe: string;
}

/** The WebCrypto algorithms of `--kty/--curve/--size` (defaults: EC P-256, RSA 3072, OKP Ed25519). */
export function keyAlgorithm(s: KeySpec): KeyAlg {
  const kty = s.kty.toUpperCase();
  if (kty === "EC") {
    const curve = s.curve ?? "P-256";
    if (curve !== "P-256" && curve !== "P-384") throw new UsageError("--curve for EC keys is P-256 or P-384");
    return { gen: { name: "ECDSA", namedCurve: curve } as EcKeyGenParams, sign: { name: "ECDSA", hash: curve === "P-384" ? "SHA-384" : "SHA-256" } as EcdsaParams, describe: `EC ${curve}` };
  }
  if (kty === "RSA") {
    const size = s.size ?? 3072;
    if (![2048, 3072, 4096].includes(size)) throw new UsageError("--size for RSA keys is 2048, 3072 or 4096");
    const gen = { name: "RSASSA-PKCS1-v1_5", modulusLength: size, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" } as RsaHashedKeyGenParams;
    return { gen, sign: gen, describe: `RSA ${size}` };
  }
  if (kty === "OKP") {
    if ((s.curve ?? "Ed25519") !== "Ed25519") throw new UsageError("--curve for OKP keys is Ed25519");
    return { gen: { name: "Ed25519" }, sign: { name: "Ed25519" }, describe: "Ed25519" };
  }
  throw new UsageError("--kty is EC, RSA or OKP");
}

export async function generateKeyPair(alg: KeyAlg): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(alg.gen as EcKeyGenParams, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function privateKeyPem(keys: CryptoKeyPair): Promise<string> {
  return toPem("PRIVATE KEY", new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey)));
}

export async function publicKeyPem(keys: CryptoKeyPair): Promise<string> {
  return toPem("PUBLIC KEY", new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)));
}

/** A SAN by its look: an IP address, an e-mail address, a URI, else a DNS name. */
export function sanOf(value: string): x509.JsonGeneralName {
  if (canonicalIp(value)) return { type: "ip", value };
  if (/^[^@\s]+@[^@\s]+$/.test(value)) return { type: "email", value };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return { type: "url", value };
  if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/.test(value)) throw new UsageError(`'${value}' is not a DNS name, IP address, e-mail address or URI`);
  return { type: "dns", value };
}

/** A PKCS#10 request for `subject` (the CN) and the SANs, signed with the new key. */
export async function makeCsr(subject: string, sans: string[], keys: CryptoKeyPair, alg: KeyAlg): Promise<string> {
  const extensions: x509.Extension[] = [];
  if (sans.length) extensions.push(new x509.SubjectAlternativeNameExtension(sans.map(sanOf)));
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [subject] }], keys, signingAlgorithm: alg.sign, extensions });
  return csr.toString("pem");
}

/** `24h`, `30d` or a date (`2027-01-01`, ISO 8601): the validity in whole days the CA takes. */
export function validityDays(notAfter: string, now = Date.now()): number {
  const rel = /^(\d{1,6})([hd])$/.exec(notAfter);
  let ms: number;
  if (rel) ms = Number(rel[1]) * (rel[2] === "h" ? 3_600_000 : 86_400_000);
  else {
    const t = Date.parse(notAfter);
    if (Number.isNaN(t)) throw new UsageError(`--not-after takes 24h, 30d or a date such as 2027-01-01, not '${notAfter}'`);
    ms = t - now;
  }
  if (ms <= 0) throw new UsageError("--not-after is in the past");
  return Math.max(1, Math.ceil(ms / 86_400_000));
}

/** Every certificate in a PEM text, in order. */
export function certificatesIn(pem: string, what: string): x509.X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new UsageError(`${what} holds no PEM certificate`);
  try {
    return blocks.map((b) => new x509.X509Certificate(b));
  } catch {
    throw new UsageError(`${what} holds a certificate that does not parse`);
  }
}

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
    serialNumber: Buffer.from(cert.serialNumber, "hex").buffer as ArrayBuffer,
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
 * certificate. Any failure is a FailedError.
 */
export async function verifyOcspResponse(body: Uint8Array, cert: x509.X509Certificate, issuer: x509.X509Certificate, nonce: ArrayBuffer): Promise<OcspStatus> {
  let basic: BasicOCSPResponse;
  try {
    const resp = AsnConvert.parse(body, OCSPResponse);
    if (resp.responseStatus !== OCSPResponseStatus.successful) throw new FailedError(`the OCSP responder answered ${OCSPResponseStatus[resp.responseStatus] ?? resp.responseStatus}`);
    if (!resp.responseBytes || resp.responseBytes.responseType !== id_pkix_ocsp_basic) throw new FailedError("the OCSP answer is not a basic response");
    basic = AsnConvert.parse(resp.responseBytes.response.buffer, BasicOCSPResponse);
  } catch (e) {
    if (e instanceof FailedError) throw e;
    throw new FailedError("the OCSP answer does not parse");
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
    if (!ok) throw new FailedError("the OCSP responder's certificate is not authorized by the issuing CA");
    signer = delegated;
  }
  const hash = SIG_HASH[basic.signatureAlgorithm.algorithm];
  if (hash === undefined) throw new FailedError(`the OCSP answer is signed with an unknown algorithm ${basic.signatureAlgorithm.algorithm}`);
  const tbs = new Uint8Array(basic.tbsResponseDataRaw ?? AsnConvert.serialize(basic.tbsResponseData));
  const key = createPublicKey({ key: Buffer.from(signer.publicKey.rawData), format: "der", type: "spki" });
  if (!nodeVerify(hash, tbs, key, new Uint8Array(basic.signature))) throw new FailedError("the OCSP answer's signature does not verify");

  const echoed = basic.tbsResponseData.responseExtensions?.find((e) => e.extnID === id_pkix_ocsp_nonce);
  if (!echoed || !sameBytes(echoed.extnValue.buffer, nonce)) throw new FailedError("the OCSP answer does not carry our nonce (a replay?)");
  const serial = serialOf(cert);
  const single = basic.tbsResponseData.responses.find((r) => serialHexOf(r.certID.serialNumber) === serial);
  if (!single) throw new FailedError("the OCSP answer is not about this certificate");
  const now = Date.now();
  if (single.thisUpdate.getTime() > now + 300_000 || (single.nextUpdate && single.nextUpdate.getTime() < now - 300_000)) throw new FailedError("the OCSP answer is not current");
  const base = { serial, this_update: single.thisUpdate.toISOString(), next_update: single.nextUpdate?.toISOString() ?? null, responder: signer.subject };
  const st = single.certStatus;
  if (st.revoked) {
    const reason = st.revoked.revocationReason instanceof CRLReason ? REASONS[st.revoked.revocationReason.reason] : undefined;
    return { status: "revoked", ...base, revoked_at: st.revoked.revocationTime.toISOString(), reason: reason || undefined };
  }
  if (st.unknown !== undefined) return { status: "unknown", ...base };
  return { status: "good", ...base };
}
