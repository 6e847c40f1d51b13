/**
 * CMP messages (RFC 9810 §5.1): reading a PKIMessage into its header, body and protection, and
 * writing answers. PKIBody is a CHOICE of [n] EXPLICIT alternatives; the body's type is its tag
 * number and its content is read by domain.ts per type.
 *
 * Guarantees: `parseMessage` keeps the exact bytes of the header and body, so a protection is
 * checked over the ProtectedPart as sent (RFC 9810 §5.1.3); anything that is not a PKIMessage
 * throws `CmpAsnError`. Nonces and transaction ids are at most 64 octets.
 */
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import { algorithmOf, bitString, bitStringBytes, bytesOf, children, CmpAsnError, contentOf, ctx, explicit, generalizedTime, intDer, intOf, namedBits, octets, oidDer, oidOf, readTlv, seq, topLevel, utf8, type Tlv } from "./asn1.ts";

/** PKIBody alternatives by tag number. */
export const BODY = {
  ir: 0, ip: 1, cr: 2, cp: 3, p10cr: 4, kur: 7, kup: 8, rr: 11, rp: 12, pkiconf: 19, genm: 21, genp: 22, error: 23, certConf: 24, pollReq: 25, pollRep: 26,
} as const;
export const BODY_NAME: Record<number, string> = Object.fromEntries(Object.entries(BODY).map(([k, v]) => [v, k]));

/** PKIStatus (RFC 9810 §5.2.3). */
export const STATUS = { accepted: 0, grantedWithMods: 1, rejection: 2, waiting: 3 } as const;

/** PKIFailureInfo bit numbers (RFC 9810 §5.2.3). */
export const FAIL = {
  badAlg: 0, badMessageCheck: 1, badRequest: 2, badTime: 3, badCertId: 4, badDataFormat: 5, wrongAuthority: 6, incorrectData: 7,
  badPOP: 9, certRevoked: 10, certConfirmed: 11, wrongIntegrity: 12, badRecipientNonce: 13, unacceptedPolicy: 15, unacceptedExtension: 16,
  badSenderNonce: 18, badCertTemplate: 19, signerNotTrusted: 20, transactionIdInUse: 21, unsupportedVersion: 22, notAuthorized: 23, systemFailure: 25,
} as const;
export type FailName = keyof typeof FAIL;

export const ID_IT = {
  caProtEncCert: "1.3.6.1.5.5.7.4.1",
  signKeyPairTypes: "1.3.6.1.5.5.7.4.2",
  currentCRL: "1.3.6.1.5.5.7.4.6",
  implicitConfirm: "1.3.6.1.5.5.7.4.13",
  confirmWaitTime: "1.3.6.1.5.5.7.4.14",
  caCerts: "1.3.6.1.5.5.7.4.17",
  rootCaCert: "1.3.6.1.5.5.7.4.20",
} as const;
export const PASSWORD_BASED_MAC = "1.2.840.113533.7.66.13";

/** A received message: the parts a protection covers, the header fields, and the body. */
export interface CmpMessage {
  der: Uint8Array;
  /** DER of ProtectedPart ::= SEQUENCE { header, body }, from the bytes as received. */
  protectedPart: Uint8Array;
  pvno: number;
  /** DER of the sender and recipient GeneralNames. */
  sender: Uint8Array;
  recipient: Uint8Array;
  protectionAlg?: { oid: string; params?: Uint8Array };
  senderKID?: Uint8Array;
  transactionID?: Uint8Array;
  senderNonce?: Uint8Array;
  recipNonce?: Uint8Array;
  /** OIDs of the generalInfo InfoTypeAndValues. */
  generalInfo: string[];
  bodyType: number;
  /** The whole body content element and the buffer it lives in (the message's DER). */
  body: Tlv;
  protection?: Uint8Array;
  /** DER of each extraCerts certificate. */
  extraCerts: Uint8Array[];
}

const nonceOf = (b: Uint8Array, t: Tlv) => {
  const inner = explicit(b, t);
  if (inner.tag !== 0x04 || inner.end - inner.contentStart > 64) throw new CmpAsnError("nonces and transaction ids are OCTET STRINGs of at most 64 octets");
  return contentOf(b, inner).slice();
};

/** Reads a PKIMessage; throws `CmpAsnError` for anything else. */
export function parseMessage(der: Uint8Array): CmpMessage {
  const top = topLevel(der, 0x30);
  const parts = children(der, top);
  const [header, body, ...rest] = parts;
  if (!header || header.tag !== 0x30 || !body) throw new CmpAsnError("a PKIMessage is a header and a body");
  if (body.tag < 0xa0 || body.tag > 0xba) throw new CmpAsnError("unknown PKIBody type");
  let protection: Uint8Array | undefined;
  const extraCerts: Uint8Array[] = [];
  for (const r of rest) {
    if (r.tag === 0xa0 && protection === undefined) protection = bitStringBytes(der, explicit(der, r)).slice();
    else if (r.tag === 0xa1 && extraCerts.length === 0) {
      const list = explicit(der, r);
      if (list.tag !== 0x30) throw new CmpAsnError("extraCerts is a SEQUENCE OF certificates");
      for (const c of children(der, list)) {
        if (c.tag !== 0x30) throw new CmpAsnError("extraCerts holds certificates");
        extraCerts.push(bytesOf(der, c).slice());
      }
      if (extraCerts.length === 0 || extraCerts.length > 16) throw new CmpAsnError("extraCerts has 1 to 16 certificates here");
    } else throw new CmpAsnError("unexpected element after the body");
  }
  const h = children(der, header);
  if (h.length < 3) throw new CmpAsnError("a PKIHeader has pvno, sender and recipient");
  const pvno = intOf(der, h[0]!);
  const msg: CmpMessage = {
    der,
    protectedPart: seq(bytesOf(der, header), bytesOf(der, body)),
    pvno,
    sender: bytesOf(der, h[1]!).slice(),
    recipient: bytesOf(der, h[2]!).slice(),
    generalInfo: [],
    bodyType: body.tag & 0x1f,
    body: explicit(der, body),
    protection,
    extraCerts,
  };
  let last = -1;
  for (const f of h.slice(3)) {
    const n = f.tag & 0x1f;
    if ((f.tag & 0xe0) !== 0xa0 || n <= last || n > 8) throw new CmpAsnError("unexpected PKIHeader field");
    last = n;
    if (n === 1) {
      const a = algorithmOf(der, explicit(der, f));
      msg.protectionAlg = { oid: a.oid, params: a.params ? bytesOf(der, a.params).slice() : undefined };
    } else if (n === 2) msg.senderKID = nonceOf(der, f);
    else if (n === 4) msg.transactionID = nonceOf(der, f);
    else if (n === 5) msg.senderNonce = nonceOf(der, f);
    else if (n === 6) msg.recipNonce = nonceOf(der, f);
    else if (n === 8) {
      const list = explicit(der, f);
      for (const itav of children(der, list)) {
        const [type] = children(der, itav);
        if (!type) throw new CmpAsnError("an InfoTypeAndValue has a type");
        msg.generalInfo.push(oidOf(der, type));
      }
    } else explicit(der, f); // messageTime, recipKID, freeText: read, not used
  }
  return msg;
}

/** PKIStatusInfo DER. */
export function statusInfo(status: number, fail: FailName[] = [], text?: string): Uint8Array {
  return seq(intDer(status), ...(text ? [seq(utf8(text.slice(0, 200)))] : []), ...(fail.length ? [namedBits(fail.map((f) => FAIL[f]))] : []));
}

/** What an answer's header says, besides what the protection adds. */
export interface HeaderFields {
  pvno: number;
  /** DER of the sender GeneralName (directoryName of the RA or CA). */
  sender: Uint8Array;
  recipient: Uint8Array;
  transactionID?: Uint8Array;
  recipNonce?: Uint8Array;
  senderKID?: Uint8Array;
  implicitConfirm?: boolean;
  /** DER of the protection AlgorithmIdentifier, when the answer is protected. */
  protectionAlg?: Uint8Array;
}

/** DER of a PKIHeader. */
export function headerDer(h: HeaderFields, senderNonce: Uint8Array): Uint8Array {
  return seq(
    intDer(h.pvno),
    h.sender,
    h.recipient,
    ctx(0, generalizedTime(new Date())),
    ...(h.protectionAlg ? [ctx(1, h.protectionAlg)] : []),
    ...(h.senderKID ? [ctx(2, octets(h.senderKID))] : []),
    ...(h.transactionID ? [ctx(4, octets(h.transactionID))] : []),
    ctx(5, octets(senderNonce)),
    ...(h.recipNonce ? [ctx(6, octets(h.recipNonce))] : []),
    ...(h.implicitConfirm ? [ctx(8, seq(seq(oidDer(ID_IT.implicitConfirm), new Uint8Array([0x05, 0x00]))))] : []),
  );
}

/** DER of a body alternative: [type] EXPLICIT content. */
export const bodyDer = (type: number, content: Uint8Array) => derTlv(0xa0 | type, content);

/** A PKIMessage from its protected part, protection bits and extraCerts. */
export function messageDer(protectedPart: Uint8Array, protection?: Uint8Array, extraCerts: Uint8Array[] = []): Uint8Array {
  const pp = readTlv(protectedPart, 0, protectedPart.length);
  const inner = protectedPart.subarray(pp.contentStart, pp.end);
  return seq(inner, ...(protection ? [ctx(0, bitString(protection))] : []), ...(extraCerts.length ? [ctx(1, seq(...extraCerts))] : []));
}

/** The directoryName GeneralName ([4] EXPLICIT Name) of a Name's DER. */
export const directoryName = (nameDer: Uint8Array) => derTlv(0xa4, nameDer);
