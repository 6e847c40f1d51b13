/**
 * pki-ca's SCEP rules (RFC 8894): GetCACaps, GetCACert (the RA certificate and the chain),
 * PKIOperation with PKCSReq, RenewalReq, CertPoll, GetCert and GetCRL. No HTTP here: routes.ts reads
 * the message and writes the answer; this file answers with CertRep messages or throws
 * `AppError`s (4xx) for messages it cannot answer at all (not a verifiable pkiMessage).
 *
 * SCEP is only a front end over the RA: a PKCSReq submits its CSR to `PkiCa.submit` under the
 * path's profile, so the same policy, lint, storage, webhooks, approval queue and revocation
 * apply as to the REST API, ACME and EST.
 *
 * Guarantees: a PKCSReq issues only with a challenge password that matches the profile's static
 * one (config, SHA-256) or an unused, unexpired one-time challenge of the tenant and profile
 * (used up by it); the CSR's key must be the key that signed the message. A RenewalReq must be
 * signed with a valid, unexpired certificate of the tenant and profile, and ask for its subject
 * and SANs. A resent PKCSReq or a CertPoll learns its transaction's state only when signed with
 * the same key. GetCert returns a certificate only to the holder of its key; GetCRL returns the complete CRL of the issuing CA named (CRLs are public). Failures answer
 * pkiStatus FAILURE with failInfo badRequest (badMessageCheck: the envelope does not open;
 * badCertId: no such certificate or transaction); nothing is issued then.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import { IssuerAndSerialNumber } from "@peculiar/asn1-cms";
import type { DataProtector } from "../../../src/service/context.ts";
import { AppError } from "../../../src/service/errors.ts";
import { parseCsr, type ParsedCsr } from "../../../src/pki/csr.ts";
import { pemOrBase64Der } from "../../../src/pki/codec.ts";
import { derChildren, derContent, derOid, derRoot } from "../../../src/pki/der.ts";
import { csrParts } from "../../../src/pki/leaf-signer.ts";
import { certsOnlyPkcs7, crlsOnlyPkcs7 } from "../../../src/pki/pkcs7.ts";
import { Certificate } from "@peculiar/asn1-x509";
import * as x509 from "../../../src/pki/x509.ts";
import { sansOf, type PkiCa } from "../domain.ts";
import type { ScepConfig } from "./config.ts";
import { FAIL_INFO, MESSAGE_TYPE, openEnvelope, parsePkiMessage, PKI_STATUS, sealEnvelope, signPkiMessage, type PkiMessage } from "./cms.ts";
import { loadOrCreateRa, renewRaIfDue, type RaKey, type RaSigningKey, type ScepRa } from "./ra.ts";
import type { ScepStore, ScepTransactionRow } from "./store.ts";

const CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7";
const sha256Hex = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");

/** The tenant and profile a SCEP path names. */
export interface ScepTarget {
  tenant: string;
  profile: string;
}

type Outcome = { status: "issued"; cert: Uint8Array } | { status: "crl"; crl: Uint8Array } | { status: "pending" } | { status: "failed"; failInfo: string };
const fail = (failInfo: string): Outcome => ({ status: "failed", failInfo });

export class ScepAuthority {
  private readonly ras = new Map<string, Promise<ScepRa>>();

  constructor(
    readonly config: ScepConfig,
    readonly ca: PkiCa,
    readonly store: ScepStore,
    private readonly protector: DataProtector,
  ) {}

  /** `/scep/<tenant>/<profile>`, `/scep/<tenant>` (its first profile), `/scep` (the first tenant's first profile); 404 otherwise. */
  target(tenant?: string, profile?: string): ScepTarget {
    const name = tenant ?? Object.keys(this.config.tenants)[0];
    const t = name !== undefined && Object.hasOwn(this.config.tenants, name) ? this.config.tenants[name] : undefined;
    const p = profile ?? (t ? Object.keys(t.profiles)[0] : undefined);
    if (!t || !p || !Object.hasOwn(t.profiles, p)) throw new AppError("not_found", "no SCEP service at this path", { status: 404 });
    return { tenant: name!, profile: p };
  }

  /** GetCACaps (RFC 8894 §3.5.2). */
  caps(): string {
    return ["AES", "POSTPKIOperation", "Renewal", "SHA-256", "SCEPStandard"].join("\n") + "\n";
  }

  /**
   * The RA of a profile's issuing CA in `signingKey`'s layout with an RSA key of `rsaKey`'s size
   * (app.scep.ra_signing_key and app.scep.ra_key by default: EST and CMC sign with it too),
   * renewed when due (on the responders' schedule fraction).
   */
  async ra(profile: string, signingKey: RaSigningKey = this.config.ra_signing_key, rsaKey: RaKey = this.config.ra_key): Promise<ScepRa> {
    const issuing = this.ca.hierarchy.issuing.get(this.ca.profile(profile).issuing_ca);
    if (!issuing) throw new AppError("ca_not_ready", "the profile's issuing CA is not loaded", { status: 503 });
    const key = `${issuing.id}|${signingKey}|${rsaKey}`;
    let p = this.ras.get(key);
    if (!p) {
      p = loadOrCreateRa(this.ca.store, this.protector, issuing, this.config.ra_validity_hours, signingKey, rsaKey).then((ra) => this.held(ra));
      this.ras.set(key, p);
      p.catch(() => this.ras.delete(key));
    }
    const ra = await p;
    const renewed = await renewRaIfDue(this.ca.store, this.protector, ra, this.config.ra_validity_hours, this.ca.config.signer_renewal_fraction);
    if (!renewed) return ra;
    // Calls still in the old RA's threads finish on this thread.
    ra.close();
    this.ras.set(key, Promise.resolve(this.held(renewed)));
    return renewed;
  }

  /** `ra`, its decryption threads ended with the CA (at seal and stop). */
  private held(ra: ScepRa): ScepRa {
    this.ca.disposers.push(() => ra.close());
    return ra;
  }

  /** The RA a SCEP path answers with: its profile's layout and RSA key size, else app.scep's. */
  private raOf(t: ScepTarget): Promise<ScepRa> {
    const p = this.config.tenants[t.tenant]!.profiles[t.profile]!;
    return this.ra(t.profile, p.ra_signing_key ?? this.config.ra_signing_key, p.ra_key ?? this.config.ra_key);
  }

  /** GetCACert: the RA certificates (encryption first, then a separate signer), the issuing CA and the root, as a degenerate PKCS#7. */
  async caCert(t: ScepTarget): Promise<Uint8Array> {
    const ra = await this.raOf(t);
    return certsOnlyPkcs7([...ra.certs, ra.issuing.cert, this.ca.hierarchy.root.cert]);
  }

  /** PKIOperation: a CertRep for any verifiable pkiMessage (FAILURE included); 4xx for anything else. */
  async pkiOperation(t: ScepTarget, der: Uint8Array): Promise<Uint8Array> {
    const ra = await this.raOf(t);
    const msg = await parsePkiMessage(der);
    let out: Outcome;
    try {
      out = await this.answer(t, ra, msg);
    } catch (e) {
      // Refusals of the RA (policy, malformed CSR) are failures of the request, never a 5xx.
      if (!(e instanceof AppError) || e.status >= 500) throw e;
      out = fail(e.code === "decryption_failed" || e.code === "malformed_input" ? FAIL_INFO.badMessageCheck : FAIL_INFO.badRequest);
      if (e.code === "policy_rejected" || e.code === "csr_signature_invalid" || e.code === "lint_failed") out = fail(FAIL_INFO.badRequest);
    }
    const status = out.status === "issued" || out.status === "crl" ? PKI_STATUS.SUCCESS : out.status === "pending" ? PKI_STATUS.PENDING : PKI_STATUS.FAILURE;
    const inner = out.status === "issued" ? certsOnlyPkcs7([out.cert]) : out.status === "crl" ? crlsOnlyPkcs7([out.crl]) : undefined;
    const content = inner ? sealEnvelope(inner, msg.signerDer) : new Uint8Array(0);
    return signPkiMessage(
      ra,
      { messageType: MESSAGE_TYPE.CertRep, transactionId: msg.transactionId, senderNonce: randomBytes(16), recipientNonce: msg.senderNonce, pkiStatus: status, failInfo: out.status === "failed" ? out.failInfo : undefined },
      content,
    );
  }

  private async answer(t: ScepTarget, ra: ScepRa, msg: PkiMessage): Promise<Outcome> {
    const signerKey = sha256Hex(msg.signerSpki);
    switch (msg.messageType) {
      case MESSAGE_TYPE.PKCSReq:
      case MESSAGE_TYPE.RenewalReq:
        return this.enroll(t, ra, msg, signerKey);
      case MESSAGE_TYPE.CertPoll: {
        const tx = await this.store.transaction(t.tenant, msg.transactionId);
        if (!tx || tx.key_sha256 !== signerKey) return fail(FAIL_INFO.badCertId);
        return this.stateOf(t, tx);
      }
      case MESSAGE_TYPE.GetCert: {
        const ias = this.issuerAndSerial(await openEnvelope(msg.content, ra.encryption.cert, ra.decrypt));
        const row = await this.certificateBySerial(t.tenant, Buffer.from(ias.serialNumber).toString("hex"));
        if (!row) return fail(FAIL_INFO.badCertId);
        const cert = new x509.X509Certificate(row.cert_der.slice().buffer as ArrayBuffer);
        if (sha256Hex(new Uint8Array(cert.publicKey.rawData)) !== signerKey) return fail(FAIL_INFO.badCertId);
        return { status: "issued", cert: row.cert_der };
      }
      case MESSAGE_TYPE.GetCRL: {
        // The issuing CA's complete CRL, for the issuer named (the serial only says which certificate asks).
        const ias = this.issuerAndSerial(await openEnvelope(msg.content, ra.encryption.cert, ra.decrypt));
        const issuer = Buffer.from(AsnConvert.serialize(ias.issuer));
        const ca = [...this.ca.hierarchy.issuing.values()].find((c) => Buffer.from(AsnConvert.serialize(AsnConvert.parse(c.cert.rawData, Certificate).tbsCertificate.subject)).equals(issuer));
        if (!ca) return fail(FAIL_INFO.badCertId);
        return { status: "crl", crl: await this.ca.currentCrl(ca.id) };
      }
      default:
        return fail(FAIL_INFO.badRequest);
    }
  }

  private issuerAndSerial(der: Uint8Array): IssuerAndSerialNumber {
    try {
      return AsnConvert.parse(der.slice().buffer as ArrayBuffer, IssuerAndSerialNumber);
    } catch (cause) {
      throw new AppError("malformed_input", "the message content is not an IssuerAndSerialNumber", { cause });
    }
  }

  private async enroll(t: ScepTarget, ra: ScepRa, msg: PkiMessage, signerKey: string): Promise<Outcome> {
    const csrDer = await openEnvelope(msg.content, ra.encryption.cert, ra.decrypt);
    const csrHash = sha256Hex(csrDer);
    // A resent request (after PENDING, or a lost answer) learns its transaction's state.
    const known = await this.store.transaction(t.tenant, msg.transactionId);
    if (known) return known.key_sha256 === signerKey && known.csr_sha256 === csrHash ? this.stateOf(t, known) : fail(FAIL_INFO.badRequest);
    const parsed = parseCsr(csrDer);
    if (sha256Hex(csrParts(csrDer).spki) !== signerKey) return fail(FAIL_INFO.badRequest);
    const allowed = msg.messageType === MESSAGE_TYPE.PKCSReq ? await this.checkChallenge(t, csrDer) : await this.checkRenewal(t, msg.signer, parsed);
    if (!allowed) return fail(FAIL_INFO.badRequest);
    const out = await this.ca.submit(t.tenant, { csr: Buffer.from(csrDer).toString("base64"), profile: t.profile }, { origin: "scep" });
    const requestId = out.status === "issued" ? out.request_id : out.request.id;
    await this.store.insertTransaction({ tenant: t.tenant, transaction_id: msg.transactionId, profile: t.profile, key_sha256: signerKey, csr_sha256: csrHash, request_id: requestId, created_at: new Date().toISOString() });
    if (out.status === "pending") return { status: "pending" };
    return { status: "issued", cert: pemOrBase64Der(out.certificate.certificate_pem, "CERTIFICATE", "certificate") };
  }

  private async stateOf(t: ScepTarget, tx: ScepTransactionRow): Promise<Outcome> {
    const r = await this.ca.getRequest(t.tenant, tx.request_id);
    if (r.status === "pending") return { status: "pending" };
    if (r.status !== "issued" || !r.serial) return fail(FAIL_INFO.badRequest);
    const row = await this.ca.store.certificate(t.tenant, r.serial);
    return row ? { status: "issued", cert: row.cert_der } : fail(FAIL_INFO.badCertId);
  }

  /** A certificate of the tenant by serial (hex as the DER INTEGER has it, or without leading zeros). */
  private async certificateBySerial(tenant: string, hex: string) {
    const s = hex.toLowerCase();
    return (await this.ca.store.certificate(tenant, s)) ?? (await this.ca.store.certificate(tenant, s.replace(/^0+(?=.)/, "")));
  }

  /** The CSR's challengePassword: the profile's static one, or a one-time challenge (used up here). */
  private async checkChallenge(t: ScepTarget, csrDer: Uint8Array): Promise<boolean> {
    const password = challengeOf(csrDer);
    if (password === undefined) return false;
    const hash = sha256Hex(password);
    const fixed = this.config.tenants[t.tenant]!.profiles[t.profile]!.challenge_sha256;
    if (fixed && timingSafeEqual(Buffer.from(fixed, "hex"), Buffer.from(hash, "hex"))) return true;
    return this.store.consumeChallenge(t.tenant, t.profile, hash, new Date().toISOString());
  }

  /** RenewalReq: signed with a valid, unexpired certificate of this tenant and profile, asking for its subject and SANs. */
  private async checkRenewal(t: ScepTarget, signer: x509.X509Certificate, p: ParsedCsr): Promise<boolean> {
    const row = await this.certificateBySerial(t.tenant, signer.serialNumber);
    if (!row || !Buffer.from(row.cert_der).equals(Buffer.from(signer.rawData))) return false;
    if (row.status !== "valid" || row.profile !== t.profile || row.not_after <= new Date().toISOString()) return false;
    return row.subject === p.subject && JSON.stringify((JSON.parse(row.sans) as string[]).sort()) === JSON.stringify(sansOf(p).sort());
  }

  /** A one-time challenge password for one of the tenant's SCEP profiles: shown only now, stored as SHA-256. */
  async createChallenge(tenant: string, profile: string): Promise<{ challenge: string; profile: string; expires_at: string }> {
    const t = Object.hasOwn(this.config.tenants, tenant) ? this.config.tenants[tenant] : undefined;
    if (!t) throw new AppError("conflict", `tenant ${tenant} does not serve SCEP (app.scep.tenants)`);
    if (!Object.hasOwn(t.profiles, profile)) throw new AppError("conflict", `profile ${profile} is not one of this tenant's SCEP profiles (${Object.keys(t.profiles).join(", ")})`);
    const challenge = randomBytes(24).toString("base64url");
    const now = new Date();
    const expires_at = new Date(now.getTime() + this.config.challenge_ttl_minutes * 60_000).toISOString();
    await this.store.insertChallenge({ secret_sha256: sha256Hex(challenge), tenant, profile, created_at: now.toISOString(), expires_at, used_at: null });
    return { challenge, profile, expires_at };
  }
}

/** The challengePassword attribute of a CSR (a DirectoryString), or undefined. */
function challengeOf(csrDer: Uint8Array): string | undefined {
  const what = "the CSR";
  try {
    const [info] = derChildren(derRoot(csrDer, 0x30, what), what);
    const attributes = info ? derChildren(info, what).find((n) => n.tag === 0xa0) : undefined;
    for (const attr of attributes ? derChildren(attributes, what, [0x30]) : []) {
      const [type, values] = derChildren(attr, what);
      if (!type || values?.tag !== 0x31 || derOid(type, what) !== CHALLENGE_PASSWORD) continue;
      // PrintableString, UTF8String, IA5String or T61String.
      const [v] = derChildren(values, what, [0x13, 0x0c, 0x16, 0x14]);
      return v ? new TextDecoder().decode(derContent(v, what)) : undefined;
    }
  } catch {
    // not a readable request: no challenge
  }
  return undefined;
}
