/**
 * pki-ca's CMP rules (RFC 9810, lightweight profile RFC 9483): ir, cr, p10cr, kur, rr, certConf,
 * pollReq and genm, each answered with a PKIMessage (ip, cp, kup, rp, pkiconf, pollRep, genp, or
 * error). No HTTP here: routes.ts reads the body and writes what this returns.
 *
 * CMP is only a front end over the RA: an enrollment submits a PKCS#10 request to `PkiCa.submit`
 * under the label's profile, so the same policy, lint, storage, webhooks, approval queue and
 * revocation apply as to the REST API, ACME, EST and SCEP. A CRMF request (ir, cr, kur) becomes
 * a CertificationRequest with the template's subject, key and extensions whose proof of
 * possession is the CRMF POPO signature, checked here over the CertRequest (RFC 4211 §4.1).
 *
 * Authentication is the message's protection: a PBM under a shared secret issued per profile
 * through the admin API, or a signature by a valid, unexpired certificate this CA issued (sent
 * first in extraCerts) of the same tenant and profile. Answers are protected the same way: the
 * same secret, or the CMP RA's signature. A message whose protection cannot be checked is
 * answered with an unprotected `error` (RFC 9483 §3.6.4).
 *
 * Guarantees: a shared secret enrolls only in its own tenant and profile; a certificate only for
 * its own subject and SAN set (kur: the certificate being renewed, named by oldCertID, must be
 * the signer's); a transaction id is used once per tenant (transactionIdInUse); certConf and
 * pollReq continue only their own transaction, by the principal that began it; rr revokes only a
 * certificate of the secret's profile, or the signer's own certificate. Every refusal is a
 * PKIStatusInfo with failInfo bits and nothing issued; bad input is never a 5xx.
 */
import { createHash, randomBytes } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Certificate, Name } from "@peculiar/asn1-x509";
import type { DataProtector } from "../../../src/service/context.ts";
import { AppError, notFound } from "../../../src/service/errors.ts";
import { derTlv } from "../../../src/pki/leaf-signer.ts";
import { signatureAlgorithmId } from "../../../src/pki/signing.ts";
import { parseCsr } from "../../../src/pki/csr.ts";
import { pemOrBase64Der } from "../../../src/pki/codec.ts";
import { equalBytes } from "../../../src/crypto/constant-time.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { REVOCATION_REASONS, sansOf, type PkiCa, type RevocationReason, type ValidityWindow } from "../domain.ts";
import type { CertificateRow } from "../store.ts";
import { algorithmOf, bitStringBytes, bytesOf, children, CmpAsnError, contentOf, derOf, explicit, intDer, intOf, NULL_DER, oidDer, oidOf, parseCertTemplate, readTlv, seq, type Tlv } from "./asn1.ts";
import type { CmpConfig } from "./config.ts";
import { BODY, bodyDer, directoryName, FAIL, headerDer, ID_IT, messageDer, parseMessage, PASSWORD_BASED_MAC, STATUS, statusInfo, type CmpMessage, type FailName, type HeaderFields } from "./message.ts";
import { answerPbm, isSignatureAlgorithm, loadOrCreateCmpRa, parsePbm, pbm, pbmAlgorithmDer, pbmValid, renewCmpRaIfDue, signatureValid, spkiSignatureValid, type CmpRa, type PbmParameters } from "./protection.ts";
import type { CmpStore, CmpTransactionRow } from "./store.ts";

/** A refusal answered as a CMP error or a rejected status: failInfo bits and a text. */
export class CmpRefusal extends Error {
  constructor(
    readonly fail: FailName[],
    message: string,
  ) {
    super(message);
  }
}
const refuse = (fail: FailName | FailName[], message: string) => new CmpRefusal(Array.isArray(fail) ? fail : [fail], message);

/** Who a message's protection proved: a shared secret or a certificate, with its tenant and profile. */
export type CmpPrincipal =
  | { kind: "mac"; tenant: string; profile: string; id: string; secret: Uint8Array; pbm: PbmParameters }
  | { kind: "sig"; tenant: string; profile: string; id: string; cert: CertificateRow };

/** The answer to a request: a DER PKIMessage and whether the request was readable at all. */
export interface CmpAnswer {
  der: Uint8Array;
  /** False when the body was not a PKIMessage (routes.ts answers 400 then). */
  wellFormed: boolean;
}

const OLD_CERT_ID = "1.3.6.1.5.5.7.5.1.5";
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
const REASON_CODE = "2.5.29.21";
/** Reasons an end entity may give (not cACompromise, not certificateHold: nothing is ever unrevoked). */
const REASON_BY_CODE = Object.fromEntries(
  Object.entries(REVOCATION_REASONS)
    .filter(([name]) => name !== "cACompromise" && name !== "certificateHold")
    .map(([k, v]) => [v, k]),
) as Record<number, RevocationReason>;
const REP_OF: Record<number, number> = { [BODY.ir]: BODY.ip, [BODY.cr]: BODY.cp, [BODY.p10cr]: BODY.cp, [BODY.kur]: BODY.kup };
const CERT_HASHES = ["sha256", "sha384", "sha512", "sha1"];
const KEY_TYPE_ALGORITHMS: Record<string, string> = { "P-256": "1.2.840.10045.4.3.2", "P-384": "1.2.840.10045.4.3.3", "P-521": "1.2.840.10045.4.3.4", Ed25519: "1.3.101.112" };

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const nameDerOf = (certDer: Uint8Array, which: "subject" | "issuer") => new Uint8Array(AsnConvert.serialize(AsnConvert.parse(certDer.slice().buffer as ArrayBuffer, Certificate).tbsCertificate[which]));
const sameSans = (a: string[], b: string[]) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

export class CmpAuthority {
  private readonly ras = new Map<string, Promise<CmpRa>>();

  constructor(
    readonly config: CmpConfig,
    readonly ca: PkiCa,
    readonly store: CmpStore,
    private readonly protector: DataProtector,
  ) {}

  /** The profile a label names (any tenant's), or the default profile without one; 404 otherwise. */
  profileOf(label: string | undefined): string {
    const listed = Object.values(this.config.tenants).flatMap((t) => t.profiles);
    const name = label ?? this.config.default_profile ?? listed[0];
    if (!name || !listed.includes(name)) throw new AppError("not_found", label ? `no CMP label ${label.slice(0, 64)}` : "CMP is not enabled", { status: 404 });
    return name;
  }

  private serves(tenant: string, profile: string): boolean {
    const t = Object.hasOwn(this.config.tenants, tenant) ? this.config.tenants[tenant] : undefined;
    return !!t?.profiles.includes(profile);
  }

  private issuing(profile: string) {
    const issuing = this.ca.hierarchy.issuing.get(this.ca.profile(profile).issuing_ca);
    if (!issuing) throw new AppError("ca_not_ready", "the profile's issuing CA is not loaded", { status: 503 });
    return issuing;
  }

  /** The CMP RA of a profile's issuing CA, renewed when due. */
  async ra(profile: string): Promise<CmpRa> {
    const issuing = this.issuing(profile);
    let p = this.ras.get(issuing.id);
    if (!p) {
      p = loadOrCreateCmpRa(this.ca.store, this.protector, issuing, this.config.ra_validity_hours);
      this.ras.set(issuing.id, p);
      p.catch(() => this.ras.delete(issuing.id));
    }
    const ra = await p;
    const renewed = await renewCmpRaIfDue(this.ca.store, this.protector, ra, this.config.ra_validity_hours, this.ca.config.signer_renewal_fraction);
    if (renewed) this.ras.set(issuing.id, Promise.resolve(renewed));
    return renewed ?? ra;
  }

  /** Answers one request of the label's profile (a 404 `AppError` when the label serves no CMP). */
  async handle(label: string | undefined, der: Uint8Array): Promise<CmpAnswer> {
    const profile = this.profileOf(label);
    let msg: CmpMessage;
    try {
      msg = parseMessage(der);
    } catch (e) {
      if (!(e instanceof CmpAsnError)) throw e;
      return { der: await this.unprotected(profile, undefined, refuse("badDataFormat", `not a PKIMessage: ${e.message}`)), wellFormed: false };
    }
    let who: CmpPrincipal;
    try {
      if (msg.pvno !== 2 && msg.pvno !== 3) throw refuse("unsupportedVersion", "pvno must be 2 or 3");
      if (!msg.transactionID || !msg.senderNonce || msg.senderNonce.length < 16) throw refuse("badRequest", "transactionID and a senderNonce of at least 16 octets are required");
      who = await this.authenticate(msg, profile);
    } catch (e) {
      if (e instanceof CmpRefusal) return { der: await this.unprotected(profile, msg, e), wellFormed: true };
      if (e instanceof CmpAsnError) return { der: await this.unprotected(profile, msg, refuse("badDataFormat", e.message)), wellFormed: true };
      throw e;
    }
    try {
      return { der: await this.answer(msg, who), wellFormed: true };
    } catch (e) {
      const r = e instanceof CmpRefusal ? e : e instanceof CmpAsnError ? refuse("badDataFormat", e.message) : e instanceof AppError && e.status < 500 ? refuse("badRequest", e.message) : undefined;
      if (!r) throw e;
      return { der: await this.protect(msg, who, BODY.error, seq(statusInfo(STATUS.rejection, r.fail, r.message))), wellFormed: true };
    }
  }

  /** Checks the message's protection; the principal it proves, or a refusal. */
  private async authenticate(msg: CmpMessage, profile: string): Promise<CmpPrincipal> {
    if (!msg.protectionAlg || !msg.protection) throw refuse("badMessageCheck", "the message is not protected");
    if (msg.protectionAlg.oid === PASSWORD_BASED_MAC) {
      const params = parsePbm(msg.protectionAlg.params);
      const kid = msg.senderKID ? new TextDecoder().decode(msg.senderKID) : "";
      const row = /^cmp_[A-Za-z0-9_-]{1,64}$/.test(kid) ? await this.store.credential(kid) : undefined;
      // A MAC is computed for an unknown key id too, so timing tells nothing about which part was wrong.
      const secret = row ? await this.protector.decrypt(row.secret_sealed, sealContext(row.kid)) : new Uint8Array(32);
      const ok = pbmValid(secret, params, msg.protectedPart, msg.protection) && row !== undefined;
      if (!ok || !row) throw refuse("badMessageCheck", "the PBM does not verify under a shared secret of this CA");
      if (!this.serves(row.tenant, row.profile)) throw refuse("notAuthorized", "this shared secret's tenant or profile no longer serves CMP");
      if (row.profile !== profile) throw refuse("notAuthorized", `this shared secret enrolls under label ${row.profile}, not ${profile}`);
      void this.store.touchCredential(row.kid, new Date().toISOString()).catch(() => undefined);
      return { kind: "mac", tenant: row.tenant, profile, id: `kid:${row.kid}`, secret, pbm: params };
    }
    if (!isSignatureAlgorithm(msg.protectionAlg.oid)) throw refuse("badAlg", "unsupported protection algorithm");
    const first = msg.extraCerts[0];
    if (!first) throw refuse("badMessageCheck", "a signed message carries its signer's certificate first in extraCerts");
    let signer: x509.X509Certificate;
    try {
      signer = new x509.X509Certificate(first.slice().buffer as ArrayBuffer);
    } catch {
      throw refuse("badDataFormat", "the signer's certificate cannot be read");
    }
    if (!(await signatureValid(msg.protectionAlg.oid, signer, msg.protectedPart, msg.protection))) throw refuse("badMessageCheck", "the protection signature does not verify");
    const row = await this.certificateBySerial(undefined, signer.serialNumber);
    if (!row || !equalBytes(new Uint8Array(row.cert_der), first)) throw refuse("signerNotTrusted", "the signer's certificate was not issued by this CA");
    if (row.status !== "valid") throw refuse("certRevoked", "the signer's certificate is revoked");
    if (row.not_after <= new Date().toISOString()) throw refuse("signerNotTrusted", "the signer's certificate has expired");
    if (!this.serves(row.tenant, row.profile)) throw refuse("notAuthorized", "the signer's tenant or profile does not serve CMP");
    if (row.profile !== profile) throw refuse("notAuthorized", `the signer's certificate enrolls under label ${row.profile}, not ${profile}`);
    return { kind: "sig", tenant: row.tenant, profile, id: `cert:${row.serial}`, cert: row };
  }

  private async answer(msg: CmpMessage, who: CmpPrincipal): Promise<Uint8Array> {
    switch (msg.bodyType) {
      case BODY.ir:
      case BODY.cr:
      case BODY.kur:
      case BODY.p10cr:
        return this.enroll(msg, who);
      case BODY.certConf:
        return this.confirm(msg, who);
      case BODY.pollReq:
        return this.poll(msg, who);
      case BODY.rr:
        return this.revoke(msg, who);
      case BODY.genm:
        return this.general(msg, who);
      default:
        throw refuse("badRequest", "this CA answers ir, cr, p10cr, kur, rr, certConf, pollReq and genm");
    }
  }

  /** Records a new transaction; refuses a transaction id used before in this tenant. */
  private async begin(msg: CmpMessage, who: CmpPrincipal, state: CmpTransactionRow["state"], certReqId: number, implicit: boolean): Promise<void> {
    const ok = await this.store.insertTransaction({
      tenant: who.tenant,
      transaction_id: hex(msg.transactionID!),
      body_type: msg.bodyType,
      profile: who.profile,
      principal: who.id,
      state,
      request_id: null,
      serial: null,
      cert_req_id: certReqId,
      implicit_confirm: implicit ? 1 : 0,
      created_at: new Date().toISOString(),
    });
    if (!ok) throw refuse("transactionIdInUse", "this transactionID was used before");
  }

  /** ir, cr, kur (CRMF) and p10cr: a PKCS#10 request submitted to the RA. */
  private async enroll(msg: CmpMessage, who: CmpPrincipal): Promise<Uint8Array> {
    const der = msg.der;
    const implicit = msg.generalInfo.includes(ID_IT.implicitConfirm);
    let csrDer: Uint8Array;
    let certReqId = 0;
    let oldCert: { issuer: Uint8Array; serial: string } | undefined;
    let window: ValidityWindow | undefined;
    if (msg.bodyType === BODY.p10cr) {
      csrDer = bytesOf(der, msg.body).slice();
    } else {
      const crmf = readOrRefuse(() => this.readCertReq(der, msg.body), "badCertTemplate");
      certReqId = crmf.certReqId;
      csrDer = crmf.csr;
      oldCert = crmf.oldCert;
      window = crmf.window;
      if (!(await spkiSignatureValid(crmf.popo.alg, crmf.popo.spki, crmf.popo.data, crmf.popo.signature))) throw refuse("badPOP", "the POPO signature does not verify under the template's key");
    }
    if (msg.bodyType === BODY.kur) {
      if (who.kind !== "sig") throw refuse("notAuthorized", "kur is authenticated by the certificate being renewed (signature protection)");
      if (oldCert && (oldCert.serial !== who.cert.serial.replace(/^0+(?=.)/, "") || !equalBytes(oldCert.issuer, nameDerOf(who.cert.cert_der, "issuer")))) throw refuse("badCertId", "oldCertID must name the signer's certificate");
    }
    let parsed;
    try {
      parsed = parseCsr(csrDer);
    } catch (e) {
      throw refuse(msg.bodyType === BODY.p10cr ? "badDataFormat" : "badCertTemplate", `the request cannot be read: ${(e as Error).message}`);
    }
    if (who.kind === "sig" && (parsed.subject !== who.cert.subject || !sameSans(sansOf(parsed), JSON.parse(who.cert.sans) as string[]))) {
      throw refuse("notAuthorized", "a certificate enrolls only for its own subject and subjectAltName");
    }
    await this.begin(msg, who, "pending", certReqId, implicit);
    const tid = hex(msg.transactionID!);
    const rep = REP_OF[msg.bodyType]!;
    let out;
    try {
      out = await this.ca.submit(who.tenant, { csr: Buffer.from(csrDer).toString("base64"), profile: who.profile, window }, { possessionVerified: msg.bodyType !== BODY.p10cr, origin: "cmp" });
    } catch (e) {
      if (!(e instanceof AppError) || e.status >= 500) throw e;
      await this.store.advance(who.tenant, tid, "pending", { state: "rejected" });
      const reasons = (e.details as { reasons?: Array<{ message: string }> } | undefined)?.reasons ?? [];
      const text = [e.message, ...reasons.map((r) => r.message)].join(": ");
      const fail: FailName = e.code === "csr_signature_invalid" ? "badPOP" : e.code === "malformed_input" ? "badDataFormat" : "badCertTemplate";
      return this.protect(msg, who, rep, this.certRep(certReqId, statusInfo(STATUS.rejection, [fail], text)));
    }
    if (out.status === "pending") {
      await this.store.advance(who.tenant, tid, "pending", { request_id: out.request.id });
      return this.protect(msg, who, rep, this.certRep(certReqId, statusInfo(STATUS.waiting, [], "the request awaits approval; poll with pollReq")));
    }
    const certDer = pemOrBase64Der(out.certificate.certificate_pem, "CERTIFICATE", "certificate");
    await this.store.advance(who.tenant, tid, "pending", { state: implicit ? "confirmed" : "issued", request_id: out.request_id, serial: out.certificate.serial });
    return this.issued(msg, who, rep, certReqId, certDer, implicit);
  }

  /** The answer carrying an issued certificate (and its chain in extraCerts and, MAC-protected, caPubs). */
  private issued(msg: CmpMessage, who: CmpPrincipal, rep: number, certReqId: number, certDer: Uint8Array, implicit: boolean): Promise<Uint8Array> {
    const issuing = this.issuing(who.profile);
    const chain = [new Uint8Array(issuing.cert.rawData), new Uint8Array(this.ca.hierarchy.root.cert.rawData)];
    const body = this.certRep(certReqId, statusInfo(STATUS.accepted), certDer, who.kind === "mac" ? chain : undefined);
    return this.protect(msg, who, rep, body, { implicitConfirm: implicit, extraCerts: chain });
  }

  /** CertRepMessage with one CertResponse. */
  private certRep(certReqId: number, status: Uint8Array, certDer?: Uint8Array, caPubs?: Uint8Array[]): Uint8Array {
    const response = seq(intDer(certReqId), status, ...(certDer ? [seq(derTlv(0xa0, certDer))] : []));
    return seq(...(caPubs ? [derTlv(0xa1, seq(...caPubs))] : []), seq(response));
  }

  /** Reads the one CertReqMsg of ir, cr or kur into a PKCS#10 request, after checking its POPO signature. */
  private readCertReq(der: Uint8Array, body: Tlv): { certReqId: number; csr: Uint8Array; window?: ValidityWindow; oldCert?: { issuer: Uint8Array; serial: string }; popo: { data: Uint8Array; alg: string; spki: Uint8Array; signature: Uint8Array } } {
    const msgs = children(der, body);
    if (body.tag !== 0x30 || msgs.length !== 1) throw refuse("badRequest", "exactly one CertReqMsg is accepted");
    const [certReq, popo, ...rest] = children(der, msgs[0]!);
    if (!certReq || certReq.tag !== 0x30 || rest.length > 1) throw refuse("badDataFormat", "a CertReqMsg is certReq, popo, regInfo");
    const [idT, templateT, controlsT] = children(der, certReq);
    if (!idT || !templateT) throw refuse("badDataFormat", "a CertRequest has certReqId and certTemplate");
    const certReqId = intOf(der, idT);
    const template = parseCertTemplate(bytesOf(der, templateT));
    if (!template.publicKey) throw refuse("badCertTemplate", "the template must name the public key");
    let oldCert: { issuer: Uint8Array; serial: string } | undefined;
    if (controlsT) {
      for (const c of children(der, controlsT)) {
        const [type, value] = children(der, c);
        if (type && value && oidOf(der, type) === OLD_CERT_ID) {
          // CertId ::= SEQUENCE { issuer GeneralName, serialNumber INTEGER }; issuer a directoryName.
          const [issuer, serial] = children(der, value);
          if (!issuer || !serial || issuer.tag !== 0xa4 || serial.tag !== 0x02) throw refuse("badCertId", "oldCertID must name its issuer by directoryName and a serial number");
          oldCert = { issuer: bytesOf(der, explicit(der, issuer)).slice(), serial: hex(contentOf(der, serial)).replace(/^0+(?=.)/, "") };
        }
      }
    }
    // POPO: only a signature by the new key over the CertRequest (RFC 4211 §4.1, poposkInput absent).
    if (!popo || popo.tag !== 0xa1) throw refuse("badPOP", "proof of possession by signature is required");
    const [algT, sigT, ...more] = children(der, popo);
    if (!algT || !sigT || algT.tag !== 0x30 || more.length) throw refuse("badPOP", "POPOSigningKey without poposkInput expected (the template names subject and key)");
    const popoAlg = algorithmOf(der, algT).oid;
    const spki = derOf(template.publicKey);
    const subject = template.subject ? derOf(template.subject) : seq();
    const exts = template.extensions ?? [];
    const attrs = exts.length ? derTlv(0xa0, seq(oidDer(EXTENSION_REQUEST), derTlv(0x31, derOf(exts)))) : derTlv(0xa0);
    const info = seq(new Uint8Array([0x02, 0x01, 0x00]), subject, spki, attrs);
    // A requested validity (OptionalValidity) becomes the RA's validity window, checked against the profile there.
    const v = template.validity;
    const window = v && (v.notBefore || v.notAfter) ? { not_before: v.notBefore?.getTime().toISOString(), not_after: v.notAfter?.getTime().toISOString() } : undefined;
    return {
      certReqId,
      oldCert,
      window,
      // The POPO was checked over the CertRequest, so this request carries no signature of its own.
      csr: seq(info, bytesOf(der, algT), derTlv(0x03, new Uint8Array([0x00]), bitStringBytes(der, sigT))),
      popo: { data: bytesOf(der, certReq).slice(), alg: popoAlg, spki, signature: bitStringBytes(der, sigT).slice() },
    };
  }

  private async confirm(msg: CmpMessage, who: CmpPrincipal): Promise<Uint8Array> {
    const tx = await this.ownTransaction(msg, who);
    const der = msg.der;
    const statuses = children(der, msg.body);
    if (msg.body.tag !== 0x30 || statuses.length > 1) throw refuse("badRequest", "certConf confirms the one certificate of its transaction");
    if (tx.state === "confirmed") return this.protect(msg, who, BODY.pkiconf, NULL_DER);
    if (tx.state !== "issued" || !tx.serial) throw refuse("badRequest", "this transaction has no certificate awaiting confirmation");
    const row = await this.ca.store.certificate(who.tenant, tx.serial);
    if (!row) throw refuse("badCertId", "the transaction's certificate is gone");
    let accepted = true;
    const s = statuses[0];
    if (s) {
      const [hashT, , info] = children(der, s);
      if (!hashT || hashT.tag !== 0x04) throw refuse("badDataFormat", "CertStatus starts with certHash");
      const got = contentOf(der, hashT);
      if (!CERT_HASHES.some((h) => equalBytes(new Uint8Array(createHash(h).update(row.cert_der).digest()), got))) throw refuse("badCertId", "certHash does not match the issued certificate");
      if (info && info.tag === 0x30) {
        const [st] = children(der, info);
        accepted = !!st && intOf(der, st) !== STATUS.rejection;
      }
    }
    if (!(await this.store.advance(who.tenant, tx.transaction_id, "issued", { state: accepted ? "confirmed" : "rejected" }))) throw refuse("badRequest", "the transaction was confirmed concurrently");
    // A certificate the client rejects is revoked (RFC 9810 §5.3.18).
    if (!accepted && row.status === "valid") await this.ca.revoke(who.tenant, row.serial, "cessationOfOperation");
    return this.protect(msg, who, BODY.pkiconf, NULL_DER);
  }

  private async poll(msg: CmpMessage, who: CmpPrincipal): Promise<Uint8Array> {
    const tx = await this.ownTransaction(msg, who);
    const rep = REP_OF[tx.body_type] ?? BODY.ip;
    if (tx.state !== "pending" || !tx.request_id) throw refuse("badRequest", "this transaction awaits no decision");
    const r = await this.ca.getRequest(who.tenant, tx.request_id);
    if (r.status === "pending") return this.protect(msg, who, BODY.pollRep, seq(seq(intDer(tx.cert_req_id), intDer(this.config.check_after_seconds))));
    if (r.status !== "issued" || !r.serial) {
      await this.store.advance(who.tenant, tx.transaction_id, "pending", { state: "rejected" });
      const why = r.reasons.map((x) => x.message).join("; ") || "rejected by an approver";
      return this.protect(msg, who, rep, this.certRep(tx.cert_req_id, statusInfo(STATUS.rejection, ["badCertTemplate"], why)));
    }
    const row = await this.ca.store.certificate(who.tenant, r.serial);
    if (!row) throw refuse("badCertId", "the issued certificate is gone");
    const implicit = tx.implicit_confirm === 1;
    await this.store.advance(who.tenant, tx.transaction_id, "pending", { state: implicit ? "confirmed" : "issued", serial: row.serial });
    return this.issued(msg, who, rep, tx.cert_req_id, new Uint8Array(row.cert_der), implicit);
  }

  /** rr: one RevDetails naming a certificate by issuer and serial number. */
  private async revoke(msg: CmpMessage, who: CmpPrincipal): Promise<Uint8Array> {
    const der = msg.der;
    const list = children(der, msg.body);
    if (msg.body.tag !== 0x30 || list.length !== 1) throw refuse("badRequest", "exactly one RevDetails is accepted");
    const [templateT, extsT] = children(der, list[0]!);
    if (!templateT) throw refuse("badDataFormat", "RevDetails starts with certDetails");
    const template = parseCertTemplate(bytesOf(der, templateT));
    if (!template.serialNumber || !template.issuer) throw refuse("badCertId", "certDetails must name issuer and serialNumber");
    const issuerDer = readOrRefuse(() => derOf(template.issuer!), "badCertId");
    await this.begin(msg, who, "done", 0, false);
    const serial = hex(new Uint8Array(template.serialNumber));
    const row = await this.certificateBySerial(who.tenant, serial);
    const rp = (status: Uint8Array) => this.protect(msg, who, BODY.rp, seq(seq(status)));
    if (!row || !equalBytes(issuerDer, nameDerOf(row.cert_der, "issuer"))) return rp(statusInfo(STATUS.rejection, ["badCertId"], "no such certificate of this tenant"));
    const allowed = who.kind === "mac" ? row.profile === who.profile : row.serial === who.cert.serial;
    if (!allowed) return rp(statusInfo(STATUS.rejection, ["notAuthorized"], "this shared secret revokes only its profile's certificates; a certificate only itself"));
    if (row.status !== "valid") return rp(statusInfo(STATUS.rejection, ["certRevoked"], "the certificate is already revoked"));
    let reason: RevocationReason = "unspecified";
    if (extsT) {
      for (const e of children(der, extsT)) {
        const [oid, value] = children(der, e);
        if (oid && value && oidOf(der, oid) === REASON_CODE) {
          const v = readTlv(der, value.contentStart, value.end);
          const code = v.tag === 0x0a ? intOf(der, { ...v, tag: 0x02 }) : -1;
          const name = REASON_BY_CODE[code];
          if (!name) return rp(statusInfo(STATUS.rejection, ["badRequest"], "unsupported revocation reason"));
          reason = name;
        }
      }
    }
    await this.ca.revoke(who.tenant, row.serial, reason);
    return rp(statusInfo(STATUS.accepted));
  }

  /** genm: CA certificates (caCerts, caProtEncCert, rootCaCert) and the profile's key types (signKeyPairTypes). */
  private async general(msg: CmpMessage, who: CmpPrincipal): Promise<Uint8Array> {
    const der = msg.der;
    await this.begin(msg, who, "done", 0, false);
    const issuing = this.issuing(who.profile);
    const issuingDer = new Uint8Array(issuing.cert.rawData);
    const rootDer = new Uint8Array(this.ca.hierarchy.root.cert.rawData);
    const asked = msg.body.tag === 0x30 ? children(der, msg.body).map((itav) => {
      const [type] = children(der, itav);
      if (!type) throw refuse("badDataFormat", "an InfoTypeAndValue has a type");
      return oidOf(der, type);
    }) : [];
    const answers: Uint8Array[] = [];
    for (const oid of asked.length ? asked : [ID_IT.caCerts]) {
      if (oid === ID_IT.caCerts) answers.push(seq(oidDer(oid), seq(issuingDer, rootDer)));
      else if (oid === ID_IT.caProtEncCert) answers.push(seq(oidDer(oid), issuingDer));
      else if (oid === ID_IT.rootCaCert) answers.push(seq(oidDer(oid), rootDer));
      else if (oid === ID_IT.signKeyPairTypes) {
        const algs = this.ca.profile(who.profile).key_types.map((k) => (k.startsWith("RSA") ? seq(oidDer("1.2.840.113549.1.1.1"), NULL_DER) : seq(oidDer(KEY_TYPE_ALGORITHMS[k] ?? "1.2.840.10045.2.1"))));
        answers.push(seq(oidDer(oid), seq(...algs)));
      }
      // Other info types are left out of the answer (RFC 9810 §5.3.19: the CA MAY omit what it does not support).
    }
    return this.protect(msg, who, BODY.genp, seq(...answers));
  }

  /** The transaction certConf or pollReq continues; only its own principal may. */
  private async ownTransaction(msg: CmpMessage, who: CmpPrincipal): Promise<CmpTransactionRow> {
    const tx = await this.store.transaction(who.tenant, hex(msg.transactionID!));
    if (!tx || tx.principal !== who.id) throw refuse("badRequest", "no such transaction of this client");
    return tx;
  }

  /** A certificate of the tenant (any tenant when undefined) by serial hex, with or without leading zeros. */
  private async certificateBySerial(tenant: string | undefined, serialHex: string): Promise<CertificateRow | undefined> {
    const s = serialHex.toLowerCase();
    const find = (x: string) => (tenant === undefined ? this.ca.store.certificateBySerial(x) : this.ca.store.certificate(tenant, x));
    return (await find(s)) ?? (await find(s.replace(/^0+(?=.)/, "")));
  }

  /** An answer protected as the request was: the same shared secret, or the CMP RA's signature. */
  private async protect(msg: CmpMessage, who: CmpPrincipal, type: number, content: Uint8Array, opts: { implicitConfirm?: boolean; extraCerts?: Uint8Array[] } = {}): Promise<Uint8Array> {
    const nonce = new Uint8Array(randomBytes(16));
    const base = { pvno: msg.pvno, recipient: msg.sender, transactionID: msg.transactionID, recipNonce: msg.senderNonce, implicitConfirm: opts.implicitConfirm };
    if (who.kind === "mac") {
      const params = answerPbm(who.pbm);
      const h: HeaderFields = { ...base, sender: directoryName(nameDerOf(new Uint8Array(this.issuing(who.profile).cert.rawData), "subject")), protectionAlg: pbmAlgorithmDer(params), senderKID: msg.senderKID };
      const pp = seq(headerDer(h, nonce), bodyDer(type, content));
      return messageDer(pp, pbm(who.secret, params, pp), opts.extraCerts);
    }
    const ra = await this.ra(who.profile);
    const raDer = new Uint8Array(ra.signer.cert.rawData);
    const h: HeaderFields = { ...base, sender: directoryName(nameDerOf(raDer, "subject")), protectionAlg: new Uint8Array(AsnConvert.serialize(signatureAlgorithmId(ra.signer.keyType))) };
    const pp = seq(headerDer(h, nonce), bodyDer(type, content));
    const { signature } = await ra.sign(pp);
    const chain = [raDer, new Uint8Array(ra.issuing.cert.rawData), new Uint8Array(this.ca.hierarchy.root.cert.rawData)];
    const extra = [...chain, ...(opts.extraCerts ?? []).filter((c) => !chain.some((x) => equalBytes(x, c)))];
    return messageDer(pp, signature, extra);
  }

  /** An unprotected error (the request's protection could not be checked, RFC 9483 §3.6.4). */
  private async unprotected(profile: string, msg: CmpMessage | undefined, r: CmpRefusal): Promise<Uint8Array> {
    const sender = directoryName(nameDerOf(new Uint8Array(this.issuing(profile).cert.rawData), "subject"));
    const h: HeaderFields = { pvno: 2, sender, recipient: msg?.sender ?? directoryName(seq()), transactionID: msg?.transactionID, recipNonce: msg?.senderNonce };
    return messageDer(seq(headerDer(h, new Uint8Array(randomBytes(16))), bodyDer(BODY.error, seq(statusInfo(STATUS.rejection, r.fail, r.message)))));
  }

  /** A PBM shared secret for one of the tenant's CMP profiles: shown only now, stored barrier-encrypted. */
  async createCredential(tenant: string, profile: string): Promise<{ kid: string; secret: string; profile: string; created_at: string }> {
    const t = Object.hasOwn(this.config.tenants, tenant) ? this.config.tenants[tenant] : undefined;
    if (!t) throw new AppError("conflict", `tenant ${tenant} does not serve CMP (app.cmp.tenants)`);
    if (!t.profiles.includes(profile)) throw new AppError("conflict", `profile ${profile} is not one of this tenant's CMP profiles (${t.profiles.join(", ")})`);
    const kid = `cmp_${randomBytes(12).toString("base64url")}`;
    const secret = randomBytes(32).toString("base64url");
    const created_at = new Date().toISOString();
    const sealed = await this.protector.encrypt(new TextEncoder().encode(secret), sealContext(kid));
    await this.store.insertCredential({ kid, tenant, profile, secret_sealed: sealed, created_at, last_used_at: null });
    return { kid, secret, profile, created_at };
  }

  async deleteCredential(tenant: string, kid: string): Promise<void> {
    if (!(await this.store.deleteCredential(tenant, kid))) throw notFound("CMP credential");
  }
}

/**
 * Runs a read of request structures; a failure of the ASN.1 library on a value it parsed but
 * cannot write back (a string that is not valid in its type, say) is the request's fault:
 * a refusal with `fail`, not a 5xx.
 */
function readOrRefuse<T>(read: () => T, fail: FailName): T {
  try {
    return read();
  } catch (e) {
    if (e instanceof CmpRefusal || e instanceof CmpAsnError) throw e;
    throw refuse(fail, `the request cannot be read: ${(e as Error).message}`);
  }
}

/** The barrier context a shared secret is sealed under (bound to its key id). */
const sealContext = (kid: string) => `pki-ca/cmp-credential/${kid}`;
