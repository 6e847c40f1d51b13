/**
 * pki-ca's CMC rules (RFC 5272-5274): Simple PKI Requests (a bare PKCS#10) and Full PKI
 * Requests (a signed PKIData), answered with a Simple PKI Response (certs-only) or a signed
 * Full PKI Response carrying statusInfoV2. No HTTP here: routes.ts reads bodies and headers.
 *
 * CMC is only a front end over the RA: every request is submitted to `PkiCa.submit` under the
 * client's tenant and profile, so the same policy, lint, storage, webhooks, approval queue and
 * revocation apply as to the REST API, ACME, EST and SCEP.
 *
 * Who may enroll:
 * - a CMC credential from the admin API (an identification and a 256-bit shared secret, per
 *   tenant and profile): in a Full PKI Request signed with the requested key, through the
 *   id-cmc-identification and id-cmc-identityProofV2 controls; in a Simple PKI Request, as
 *   HTTP Basic (identification:secret), since a bare PKCS#10 carries no proof of its own;
 * - a certificate this CA issued, valid and unexpired, of a tenant and profile that serve CMC,
 *   signing a Full PKI Request for its own subject and SANs (re-enrollment).
 *
 * Guarantees: Full PKI Requests must carry transactionId and senderNonce; a senderNonce is
 * accepted once within app.cmc.nonce_retention_hours (`sweepNonces` forgets older ones), and a
 * transactionId names one request, for ever (sent again, by the same client with
 * the same CSR and a new nonce, it answers that request's state: how a queued request is
 * collected). Every refusal is a signed Full PKI Response with CMCStatus failed and a
 * CMCFailInfo; nothing is issued then. Secrets are stored barrier-encrypted (identityProofV2
 * keys on the secret itself) and compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import type { Certificate } from "@peculiar/asn1-x509";
import type { DataProtector } from "../../../src/service/context.ts";
import { AppError, notFound } from "../../../src/service/errors.ts";
import { parseCsr, type ParsedCsr } from "../../../src/pki/csr.ts";
import { pemOrBase64Der } from "../../../src/pki/codec.ts";
import { certsOnlyPkcs7 } from "../../../src/pki/pkcs7.ts";
import { csrParts } from "../../../src/pki/leaf-signer.ts";
import { derBytes, derContent } from "../../../src/pki/der.ts";
import type { SignedAttrsSigner } from "../../../src/pki/cms-signer.ts";
import * as x509 from "../../../src/pki/x509.ts";
import { sansOf, type PkiCa } from "../domain.ts";
import type { CmcConfig } from "./config.ts";
import { CMC, CMC_FAIL, CMC_STATUS, control, identityWitness, parseFullRequest, pkiResponse, readIdentityProofV2, signedResponse, verifyRequestSignature, type FullRequest, type ResponseFields } from "./cms.ts";
import type { CmcStore, CmcTransactionRow } from "./store.ts";

/**
 * Deletes the senderNonces older than `config.nonce_retention_hours`. Safe on any number of
 * instances at once (a plain delete by age); returns how many went.
 */
export function sweepNonces(store: CmcStore, config: CmcConfig, now = new Date()): Promise<number> {
  return store.pruneNonces(new Date(now.getTime() - config.nonce_retention_hours * 3_600_000).toISOString());
}

/** An answer: a Simple PKI Response (certs-only PKCS#7) or a Full PKI Response (signed). */
export interface CmcAnswer {
  kind: "certs-only" | "full";
  body: Uint8Array;
}

/** An authenticated CMC client: its tenant and profile, and, for a certificate, its identity. */
export interface CmcClient {
  id: string;
  tenant: string;
  profile: string;
  certificate?: { subject: string; sans: string[] };
}

/** What signs Full PKI Responses for a profile: its issuing CA's registration authority. */
export type ResponseSigner = (profile: string) => Promise<{ cert: x509.X509Certificate; sign: SignedAttrsSigner }>;

type Outcome = { status: "issued"; cert: Uint8Array } | { status: "pending" };

const sha256Hex = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const IDENTIFICATION = /^cmc_[A-Za-z0-9_-]{1,64}$/;
const sealContext = (identification: string) => `pki-ca/cmc/${identification}`;

/** A refusal with its CMCFailInfo: answered as a Full PKI Response with status failed. */
export const refuse = (failInfo: number, message: string) => new AppError("cmc_refused", message, { status: 400, details: { failInfo } });

/** The CMCFailInfo of a 4xx AppError raised while answering a request. */
function failInfoOf(e: AppError): number {
  const given = (e.details as { failInfo?: number } | undefined)?.failInfo;
  if (typeof given === "number") return given;
  if (e.code === "signature_invalid") return CMC_FAIL.badMessageCheck;
  if (e.code === "unsupported_algorithm") return CMC_FAIL.badAlg;
  if (e.code === "csr_signature_invalid") return CMC_FAIL.popFailed;
  return CMC_FAIL.badRequest;
}

/** The text of a refusal: its message and any policy reasons. */
function reasonText(e: AppError): string {
  const reasons = (e.details as { reasons?: Array<{ message: string }> } | undefined)?.reasons ?? [];
  return [e.message, ...reasons.map((r) => r.message)].join(": ");
}

export class CmcAuthority {
  constructor(
    readonly config: CmcConfig,
    readonly ca: PkiCa,
    readonly store: CmcStore,
    private readonly protector: DataProtector,
    private readonly responseSigner: ResponseSigner,
  ) {}

  /** True when some tenant serves CMC. */
  get enabled(): boolean {
    return Object.keys(this.config.tenants).length > 0;
  }

  private serves(tenant: string, profile: string): boolean {
    const t = Object.hasOwn(this.config.tenants, tenant) ? this.config.tenants[tenant] : undefined;
    return !!t?.profiles.includes(profile);
  }

  /** The profile whose RA signs an answer to a client not yet known: the first listed one. */
  private get fallbackProfile(): string {
    return Object.values(this.config.tenants)[0]!.profiles[0]!;
  }

  /** A new credential for one of the tenant's CMC profiles; the secret is shown only now. */
  async createCredential(tenant: string, profile: string): Promise<{ identification: string; secret: string; profile: string; created_at: string }> {
    const t = Object.hasOwn(this.config.tenants, tenant) ? this.config.tenants[tenant] : undefined;
    if (!t) throw new AppError("conflict", `tenant ${tenant} does not serve CMC (app.cmc.tenants)`);
    if (!t.profiles.includes(profile)) throw new AppError("conflict", `profile ${profile} is not one of this tenant's CMC profiles (${t.profiles.join(", ")})`);
    const identification = `cmc_${randomBytes(12).toString("base64url")}`;
    const secret = randomBytes(32).toString("base64url");
    const created_at = new Date().toISOString();
    const secret_sealed = await this.protector.encrypt(new TextEncoder().encode(secret), sealContext(identification));
    await this.store.insertCredential({ identification, tenant, profile, secret_sealed, created_at, last_used_at: null });
    return { identification, secret, profile, created_at };
  }

  async deleteCredential(tenant: string, identification: string): Promise<void> {
    if (!(await this.store.deleteCredential(tenant, identification))) throw notFound("CMC credential");
  }

  /** The shared secret of an identification, or a random one for an unknown identification (so both cost the same). */
  private async secretOf(identification: string): Promise<{ secret: Uint8Array; row?: { tenant: string; profile: string } }> {
    const row = IDENTIFICATION.test(identification) ? await this.store.credential(identification) : undefined;
    if (!row) return { secret: randomBytes(43) };
    return { secret: await this.protector.decrypt(new Uint8Array(row.secret_sealed), sealContext(identification)), row };
  }

  /** The client of an `Authorization: Basic identification:secret` header (Simple PKI Requests); 401 otherwise. */
  async authenticateBasic(header: string | null): Promise<CmcClient> {
    const unauthenticated = () => new AppError("unauthenticated", "a Simple PKI Request needs HTTP Basic authentication with a CMC identification and secret", { headers: { "WWW-Authenticate": 'Basic realm="cmc", charset="UTF-8"' } });
    const m = /^Basic\s+([A-Za-z0-9+/=]{1,512})$/i.exec(header?.trim() ?? "");
    if (!m) throw unauthenticated();
    const text = Buffer.from(m[1]!, "base64").toString("utf8");
    const colon = text.indexOf(":");
    if (colon <= 0) throw unauthenticated();
    const identification = text.slice(0, colon);
    const { secret, row } = await this.secretOf(identification);
    const ok = timingSafeEqual(createHash("sha256").update(secret).digest(), createHash("sha256").update(text.slice(colon + 1)).digest());
    secret.fill(0);
    if (!ok || !row) throw unauthenticated();
    if (!this.serves(row.tenant, row.profile)) throw new AppError("forbidden", "this credential's tenant or profile no longer serves CMC", { status: 403 });
    void this.store.touchCredential(identification, new Date().toISOString()).catch(() => undefined);
    return { id: identification, tenant: row.tenant, profile: row.profile };
  }

  /**
   * A Simple PKI Request (RFC 5272 §3.1): the CSR under the client's profile. Issued: a Simple
   * PKI Response. Queued or refused: a Full PKI Response (pending, or failed with its reason).
   * The same CSR sent again by the same client answers the queued request's state.
   */
  async simple(client: CmcClient, body: Uint8Array): Promise<CmcAnswer> {
    const fields = { senderNonce: randomBytes(16), bodyList: [1] };
    try {
      const der = body[0] === 0x30 ? body : pemOrBase64Der(new TextDecoder().decode(body), "CERTIFICATE REQUEST", "CSR");
      const out = await this.enroll(client, der, `simple:${client.id}:${sha256Hex(der)}`);
      if (out.status === "issued") return { kind: "certs-only", body: certsOnlyPkcs7(this.chainOf(client.profile, out.cert)) };
      return this.full(client.profile, { ...fields, status: CMC_STATUS.pending, statusString: "the request awaits approval; send it again later" });
    } catch (e) {
      return this.failure(e, client.profile, fields);
    }
  }

  /** A Full PKI Request (RFC 5272 §3.2): always answered with a signed Full PKI Response. */
  async fullRequest(der: Uint8Array): Promise<CmcAnswer> {
    const fields: Omit<ResponseFields, "status"> = { senderNonce: randomBytes(16), bodyList: [] };
    let profile = this.fallbackProfile;
    try {
      const req = parseFullRequest(der);
      fields.bodyList = req.pkiData.requests.map((r) => r.bodyPartId);
      const tx = control(req.pkiData, CMC.transactionId);
      const nonce = control(req.pkiData, CMC.senderNonce);
      if (tx) fields.transactionId = derBytes(tx).slice();
      if (nonce) fields.recipientNonce = derContent(nonce, "senderNonce", 0x04).slice();
      if (req.pkiData.requests.length !== 1 || req.pkiData.otherRequests || req.pkiData.nested) throw refuse(CMC_FAIL.badRequest, "a Full PKI Request here carries exactly one PKCS#10 request (no CRMF, no nested content)");
      const csr = req.pkiData.requests[0]!.csr;
      const parsed = parseCsr(csr);
      const client = await this.authenticateFull(req, parsed);
      profile = client.profile;
      if (!tx || tx.tag !== 0x02 || !fields.recipientNonce?.length) throw refuse(CMC_FAIL.badRequest, "a Full PKI Request needs the transactionId and senderNonce controls");
      if (!(await this.store.useNonce(sha256Hex(fields.recipientNonce), new Date().toISOString()))) throw refuse(CMC_FAIL.badRequest, "this senderNonce was used before: a replayed request");
      const out = await this.enroll(client, csr, `tx:${Buffer.from(derContent(tx, "transactionId")).toString("hex")}`);
      if (out.status === "pending") return this.full(profile, { ...fields, status: CMC_STATUS.pending, statusString: "the request awaits approval; send it again with a new senderNonce" });
      return this.full(profile, { ...fields, status: CMC_STATUS.success }, out.cert);
    } catch (e) {
      return this.failure(e, profile, fields);
    }
  }

  /**
   * The client of a Full PKI Request, its signature verified: signed with the requested key
   * (signer named by subjectKeyIdentifier) and proven by identification + identityProofV2, or
   * signed by a certificate this CA issued (issuerAndSerialNumber) for its own identity.
   */
  private async authenticateFull(req: FullRequest, parsed: ParsedCsr): Promise<CmcClient> {
    const sid = req.signer.sid;
    if (sid.subjectKeyIdentifier) {
      const ski = new Uint8Array(sid.subjectKeyIdentifier.buffer);
      const ext = parsed.csr.getExtension("2.5.29.14") as x509.SubjectKeyIdentifierExtension | null;
      const fromKey = createHash("sha1").update(csrParts(parsed.der).keyBits).digest();
      const named = Buffer.from(ski).equals(fromKey) || (!!ext && Buffer.from(ski).toString("hex") === ext.keyId.toLowerCase());
      if (!named) throw refuse(CMC_FAIL.badMessageCheck, "the signer's subjectKeyIdentifier does not name the requested key");
      await verifyRequestSignature(req, parsed.csr.publicKey.rawData, parsed.csr.publicKey.algorithm);
      return this.proveIdentity(req);
    }
    const ias = sid.issuerAndSerialNumber;
    if (!ias) throw refuse(CMC_FAIL.badMessageCheck, "the signer is named neither by subjectKeyIdentifier nor by issuer and serial");
    const serial = Buffer.from(ias.serialNumber).toString("hex");
    const issuer = Buffer.from(AsnConvert.serialize(ias.issuer));
    const certAsn = req.certificates.find((c: Certificate) => Buffer.from(c.tbsCertificate.serialNumber).toString("hex") === serial && Buffer.from(AsnConvert.serialize(c.tbsCertificate.issuer)).equals(issuer));
    if (!certAsn) throw refuse(CMC_FAIL.badCertId, "the signer's certificate is not in the request");
    const certDer = new Uint8Array(AsnConvert.serialize(certAsn));
    const cert = new x509.X509Certificate(certDer.slice().buffer as ArrayBuffer);
    await verifyRequestSignature(req, cert.publicKey.rawData, cert.publicKey.algorithm);
    const row = (await this.ca.store.certificateBySerial(cert.serialNumber.toLowerCase())) ?? (await this.ca.store.certificateBySerial(cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, "")));
    const refused = (why: string) => refuse(CMC_FAIL.badIdentity, `the signing certificate does not authorize CMC: ${why}`);
    if (!row || !Buffer.from(row.cert_der).equals(Buffer.from(certDer))) throw refused("this CA did not issue it");
    if (row.status !== "valid") throw refused("it is revoked");
    if (row.not_after <= new Date().toISOString()) throw refused("it has expired");
    if (!this.serves(row.tenant, row.profile)) throw refused("its tenant or profile does not serve CMC");
    const own = JSON.stringify((JSON.parse(row.sans) as string[]).sort());
    if (row.subject !== parsed.subject || own !== JSON.stringify([...sansOf(parsed)].sort())) throw refused("a certificate signs requests for its own subject and subjectAltName only");
    return { id: `cert:${row.serial}`, tenant: row.tenant, profile: row.profile, certificate: { subject: row.subject, sans: JSON.parse(row.sans) as string[] } };
  }

  /** identification + identityProofV2 (RFC 5272 §6.2): the witness recomputed with the identification's secret. */
  private async proveIdentity(req: FullRequest): Promise<CmcClient> {
    const idNode = control(req.pkiData, CMC.identification);
    const proofNode = control(req.pkiData, CMC.identityProofV2);
    if (!idNode || !proofNode) throw refuse(CMC_FAIL.badIdentity, "a request signed with the requested key needs the identification and identityProofV2 controls");
    const identification = new TextDecoder().decode(derContent(idNode, "identification", 0x0c));
    const proof = readIdentityProofV2(proofNode);
    const { secret, row } = await this.secretOf(identification);
    const witness = await identityWitness(secret, req.pkiData.reqSequence, proof.proofHash, proof.macHash);
    secret.fill(0);
    const ok = witness.length === proof.witness.length && timingSafeEqual(witness, proof.witness);
    if (!ok || !row) throw refuse(CMC_FAIL.badIdentity, "the identity proof does not verify for this identification");
    if (!this.serves(row.tenant, row.profile)) throw refuse(CMC_FAIL.badIdentity, "this credential's tenant or profile no longer serves CMC");
    void this.store.touchCredential(identification, new Date().toISOString()).catch(() => undefined);
    return { id: identification, tenant: row.tenant, profile: row.profile };
  }

  /** Submits the CSR, or, for a transaction seen before, answers its state (same client and CSR only). */
  private async enroll(client: CmcClient, csrDer: Uint8Array, transactionId: string): Promise<Outcome> {
    const csrHash = sha256Hex(csrDer);
    const known = await this.store.transaction(client.tenant, transactionId);
    if (known) {
      if (known.client !== client.id || known.csr_sha256 !== csrHash) throw refuse(CMC_FAIL.badRequest, "this transactionId belongs to another request");
      return this.stateOf(client.tenant, known);
    }
    const out = await this.ca.submit(client.tenant, { csr: Buffer.from(csrDer).toString("base64"), profile: client.profile }, { origin: "cmc" });
    const requestId = out.status === "issued" ? out.request_id : out.request.id;
    if (!(await this.store.insertTransaction({ tenant: client.tenant, transaction_id: transactionId, client: client.id, csr_sha256: csrHash, request_id: requestId, created_at: new Date().toISOString() }))) {
      throw refuse(CMC_FAIL.badRequest, "this transactionId was used concurrently");
    }
    if (out.status === "pending") return { status: "pending" };
    return { status: "issued", cert: pemOrBase64Der(out.certificate.certificate_pem, "CERTIFICATE", "certificate") };
  }

  private async stateOf(tenant: string, tx: CmcTransactionRow): Promise<Outcome> {
    const r = await this.ca.getRequest(tenant, tx.request_id);
    if (r.status === "pending") return { status: "pending" };
    if (r.status !== "issued" || !r.serial) throw refuse(CMC_FAIL.badRequest, `the request was rejected: ${r.reasons.map((x) => x.message).join("; ") || "by an approver"}`);
    const row = await this.ca.store.certificate(tenant, r.serial);
    if (!row) throw refuse(CMC_FAIL.badCertId, "the issued certificate is not found");
    return { status: "issued", cert: new Uint8Array(row.cert_der) };
  }

  /** The issued certificate (when given), the profile's issuing CA and the root. */
  private chainOf(profile: string, cert?: Uint8Array): x509.X509Certificate[] {
    const issuing = this.ca.hierarchy.issuing.get(this.ca.profile(profile).issuing_ca);
    return [...(cert ? [new x509.X509Certificate(cert.slice().buffer as ArrayBuffer)] : []), ...(issuing ? [issuing.cert] : []), this.ca.hierarchy.root.cert];
  }

  /** A Full PKI Response signed by the profile's RA, with the issued certificate (if any), the issuing CA and the root. */
  private async full(profile: string, fields: ResponseFields, issued?: Uint8Array): Promise<CmcAnswer> {
    const signer = await this.responseSigner(profile);
    return { kind: "full", body: await signedResponse(pkiResponse(fields), signer, this.chainOf(profile, issued)) };
  }

  /** A refusal as a Full PKI Response (failed); a 5xx stays an error. */
  private failure(e: unknown, profile: string, fields: Omit<ResponseFields, "status">): Promise<CmcAnswer> {
    if (!(e instanceof AppError) || e.status >= 500) throw e;
    return this.full(profile, { ...fields, status: CMC_STATUS.failed, failInfo: failInfoOf(e), statusString: reasonText(e) });
  }
}
