/**
 * CMP requests built in the test (for what `openssl cmp` 3.0 cannot send: a requested validity
 * in the past, and fresh transaction ids for the fuzz): a PBM-protected ir with a CRMF template
 * and a POPO signature by a fresh P-256 key, and a reader for the certificate of an ip.
 */
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { bitString, children, ctx, generalizedTime, intDer, oidDer, seq } from "../../apps/pki-ca/cmp/asn1.ts";
import { BODY, bodyDer, directoryName, headerDer, messageDer, parseMessage } from "../../apps/pki-ca/cmp/message.ts";
import { pbm, pbmAlgorithmDer } from "../../apps/pki-ca/cmp/protection.ts";
import { derTlv } from "../../src/pki/leaf-signer.ts";
import * as x509 from "../../src/pki/x509.ts";

export interface BuiltIr {
  der: Uint8Array;
  keyPem: string;
}

/** A PBM-protected ir for `cn` (SAN dNSName `cn`), optionally asking for a validity window. */
export function buildIr(kid: string, secret: string, cn: string, validity?: { notBefore: Date; notAfter: Date }, transactionID = new Uint8Array(randomBytes(16))): BuiltIr {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const name = new Uint8Array(new x509.Name(`CN=${cn}`).toArrayBuffer());
  const san = new Uint8Array(new x509.SubjectAlternativeNameExtension([{ type: "dns", value: cn }]).rawData);
  const inner = (tlv: Uint8Array) => tlv.subarray(tlv[1]! & 0x80 ? 2 + (tlv[1]! & 0x7f) : 2);
  const template = seq(
    ...(validity ? [derTlv(0xa4, ctx(0, generalizedTime(validity.notBefore)), ctx(1, generalizedTime(validity.notAfter)))] : []),
    derTlv(0xa5, name),
    derTlv(0xa6, inner(spki)),
    derTlv(0xa9, san),
  );
  const certReq = seq(intDer(0), template);
  const popo = derTlv(0xa1, seq(oidDer("1.2.840.10045.4.3.2")), bitString(new Uint8Array(sign("sha256", certReq, { key: privateKey, dsaEncoding: "der" }))));
  return { der: pbmMessage(kid, secret, BODY.ir, seq(seq(certReq, popo)), transactionID), keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}

/** The CertReqMessages of a built ir (its body's content), to wrap around mutations. */
export function irBodyOf(der: Uint8Array): Uint8Array {
  const m = parseMessage(der);
  return m.der.slice(m.body.start, m.body.end);
}

/** A PKIMessage of any body content, PBM-protected under `secret` (implicit confirmation asked for). */
export function pbmMessage(kid: string, secret: string, type: number, content: Uint8Array, transactionID: Uint8Array = new Uint8Array(randomBytes(16))): Uint8Array {
  const params = { salt: new Uint8Array(randomBytes(16)), owf: "2.16.840.1.101.3.4.2.1", iterations: 500, mac: "1.2.840.113549.2.9" };
  const header = headerDer({ pvno: 2, sender: directoryName(seq()), recipient: directoryName(seq()), transactionID, senderKID: new TextEncoder().encode(kid), protectionAlg: pbmAlgorithmDer(params), implicitConfirm: true }, new Uint8Array(randomBytes(16)));
  const pp = seq(header, bodyDer(type, content));
  return messageDer(pp, pbm(new TextEncoder().encode(secret), params, pp));
}

/** The certificate DER of an accepting ip/cp/kup, or undefined. */
export function certificateOf(der: Uint8Array): Uint8Array | undefined {
  const m = parseMessage(der);
  if (![BODY.ip, BODY.cp, BODY.kup].includes(m.bodyType as 1)) return undefined;
  const b = m.der;
  const parts = children(b, m.body);
  const response = children(b, children(b, parts[parts.length - 1]!)[0]!);
  const ckp = response[2];
  if (!ckp) return undefined;
  const certOrEnc = children(b, ckp)[0]!;
  const cert = children(b, certOrEnc)[0]!;
  return b.slice(cert.start, cert.end);
}
