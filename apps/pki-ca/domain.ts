/**
 * pki-ca's rules: the RA (submit, approve, reject), issuance with lint, search,
 * revocation, CRLs and OCSP answers. No HTTP here; routes.ts maps errors to statuses.
 *
 * Guarantees: nothing is signed unless the CSR's proof of possession verifies,
 * the profile's policy passes (or an approver approved a queued request whose
 * policy had passed), and the lint finds no violation. Certificates and requests
 * are read and changed only within the caller's tenant; OCSP and CRLs answer for
 * the whole instance, as relying parties cannot name a tenant. With CRL shards, a
 * certificate's CRLDP names the shard of its serial (decided at issuance and stored), and
 * each shard's CRL lists exactly the revoked certificates of that shard.
 */
import type { WebhookEvent } from "./webhooks.ts";
import type { Notifier } from "../../src/notify/notifier.ts";
import type { ChangeFeed } from "../../src/storage/change-feed.ts";
import { x509Time } from "../../src/pki/time.ts";
import { AppError, notFound } from "../../src/service/errors.ts";
import { decodeCsr, parseCsr, verifyBySpki, verifyPossession, type ParsedCsr } from "../../src/pki/csr.ts";
import { signCrl } from "../../src/pki/crl.ts";
import { ocspErrorResponse, OCSPResponseStatus, parseOcspRequest, signOcspResponse, type OcspAnswer } from "../../src/pki/ocsp.ts";
import { randomSerialHex, uuidV7 } from "../../src/pki/serial.ts";
import { parseTimeStampReq, stamp, timeStampRejection } from "../../src/pki/tsp.ts";
import { toPem } from "../../src/pki/keys.ts";
import { pemOrBase64Der, toBase64 } from "../../src/pki/codec.ts";
import type { CaKeyType } from "../../src/pki/signing.ts";
import { extensionDer, signLeaf, subjectAltNameDer } from "../../src/pki/leaf-signer.ts";
import * as x509 from "../../src/pki/x509.ts";
import type { PkiCaConfig, Profile } from "./config.ts";
import type { Hierarchy, IssuingCa } from "./hierarchy.ts";
import { effectiveDnsNames, evaluate, ipBytes, keyUsageFor, lint, type Reason } from "./policy.ts";
import type { CertificateFilter, CertificateRow, CrlRow, PkiStore, RequestRow } from "./store.ts";
import type { AuditSender } from "../../src/audit/sender.ts";

const DAY_MS = 86_400_000;
/** Bound on cached OCSP responses (about 1 KiB each); a flood of distinct requests only empties it. */
const MAX_CACHED_OCSP = 20_000;
const BACKDATE_MS = 60_000;

/** RFC 5280 CRLReason names accepted by the API (7 is unused by the RFC). */
export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  privilegeWithdrawn: 9,
} as const;
export type RevocationReason = keyof typeof REVOCATION_REASONS;
const REASON_NAME = Object.fromEntries(Object.entries(REVOCATION_REASONS).map(([k, v]) => [v, k])) as Record<number, RevocationReason>;

const KU_FLAGS: Record<string, number> = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  nonRepudiation: x509.KeyUsageFlags.nonRepudiation,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  dataEncipherment: x509.KeyUsageFlags.dataEncipherment,
  keyAgreement: x509.KeyUsageFlags.keyAgreement,
};
const EKU_OIDS: Record<string, string> = {
  serverAuth: x509.ExtendedKeyUsage.serverAuth,
  clientAuth: x509.ExtendedKeyUsage.clientAuth,
  codeSigning: x509.ExtendedKeyUsage.codeSigning,
  emailProtection: x509.ExtendedKeyUsage.emailProtection,
  timeStamping: x509.ExtendedKeyUsage.timeStamping,
};

/** The front end a request came through: the REST API, or an enrollment protocol. */
export type Origin = "api" | "acme" | "est" | "scep" | "cmp" | "cmc";

export interface CertificateView {
  serial: string;
  origin: Origin;
  subject: string;
  sans: string[];
  profile: string;
  issuing_ca: string;
  key_type: string;
  status: "valid" | "revoked";
  not_before: string;
  not_after: string;
  revoked_at: string | null;
  revocation_reason: RevocationReason | null;
  certificate_pem: string;
  chain_pem: string;
}

export interface RequestView {
  id: string;
  origin: Origin;
  status: "pending" | "issued" | "rejected";
  profile: string;
  subject: string;
  sans: string[];
  validity_days: number;
  reasons: Reason[];
  serial: string | null;
  created_at: string;
  decided_at: string | null;
}

const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Storage key suffix of a scope's delta CRL (not a valid CA id, so never a clash). */
const DELTA = "#delta";

/** A CRL scope: an issuing CA's complete CRL, or (shard set) one partition of it. */
interface CrlScope {
  caId: string;
  shard?: number;
}
/** The published name of a scope's CRL (before `.crl`). */
const crlName = (s: CrlScope) => (s.shard === undefined ? s.caId : `${s.caId}-s${s.shard}`);
/** The pki_crls key of a scope's full CRL; complete CRLs keep the CA id, as before sharding. */
const crlStoreKey = (s: CrlScope) => (s.shard === undefined ? s.caId : `${s.caId}#s${s.shard}`);

/** The CRL shard of a serial under a sharded CA (serial mod shard count), or undefined. */
export function shardOf(ca: { crlShards: number }, serialHex: string): number | undefined {
  return ca.crlShards > 1 ? Number(BigInt(`0x${serialHex}`) % BigInt(ca.crlShards)) : undefined;
}
/** How far before its base's thisUpdate a delta CRL still lists revocations (clock and commit races). */
const DELTA_OVERLAP_MS = 5 * 60_000;
const toEntry = (e: { serial: string; revoked_at: string | null; revocation_reason: number | null }) => ({
  serialHex: e.serial,
  revokedAt: new Date(e.revoked_at!),
  reason: e.revocation_reason ?? 0,
});

/** The change-feed channel of revocations: each instance then re-checks (checkPeerRevocations). */
export const REVOCATIONS_CHANNEL = "pki-ca.revocations";

/** A certificate validity asked for by the requester (ISO times; either may be absent). */
export interface ValidityWindow {
  not_before?: string;
  not_after?: string;
}

/** A window's times in epoch ms: notBefore now (backdated a minute) when absent, notAfter the default validity after it. */
function resolveWindow(w: ValidityWindow, defaultDays: number): { notBefore: number; notAfter: number } {
  const notBefore = w.not_before ? Date.parse(w.not_before) : Date.now() - BACKDATE_MS;
  const notAfter = w.not_after ? Date.parse(w.not_after) : notBefore + defaultDays * DAY_MS;
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter) || notAfter <= notBefore) throw new AppError("validity_invalid", "the requested validity window is not a valid time span", { status: 422 });
  return { notBefore, notAfter };
}

export type SubmitOutcome = { status: "issued"; request_id: string; certificate: CertificateView } | { status: "pending"; request: RequestView };

export class PkiCa {
  /** Signed answers to nonce-less OCSP requests, by request bytes; re-signed before they go stale. */
  private readonly ocspCache = new Map<string, { der: Uint8Array; request: Uint8Array; expires: number }>();
  private readonly crlLocks = new Map<string, Promise<unknown>>();
  private readonly extensionCache = new Map<string, Uint8Array[]>();
  /** The database's revocation count when this instance last looked (see checkPeerRevocations). */
  private revocationsSeen: number | undefined;

  /** Change notices to the other instances sharing the database (set by the service). */
  changes?: ChangeFeed;
  /** Ends the subscription to other instances' revocation notices (set by the service). */
  unsubscribe?: () => void;

  /** Webhooks for state changes and expiry notices (none configured: events go nowhere). */
  notifier?: Notifier;
  /** The CA's schedules (CRL, OCSP refresh, peer revocations, expiry), ended by dispose(). */
  timers: Array<ReturnType<typeof setInterval>> = [];

  /** What else ends with this CA (its front ends' key-holding threads, say), run by dispose(). */
  readonly disposers: Array<() => void> = [];

  /** Ends this CA's schedules and drops its caches (at seal and stop). */
  async dispose(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const d of this.disposers.splice(0)) d();
    this.unsubscribe?.();
    this.ocspCache.clear();
    this.extensionCache.clear();
    // The notifier is the service's (it outlives a seal); the template stops it at shutdown.
  }

  constructor(
    readonly config: PkiCaConfig,
    readonly store: PkiStore,
    readonly hierarchy: Hierarchy,
  ) {}

  /** Security events (issuance, revocation, decisions on requests) to the audit service, when configured. */
  audit?: AuditSender;

  private async emit(type: WebhookEvent, tenant: string, data: Record<string, unknown>): Promise<void> {
    this.notifier?.emit(type, tenant, data);
    if (!this.audit || type === "certificate.expiring") return;
    const text = (x: unknown) => (typeof x === "string" ? x.slice(0, 512) : undefined);
    const details = Object.fromEntries(
      Object.entries({ serial: text(data.serial), profile: text(data.profile), issuing_ca: text(data.issuing_ca), subject: text(data.subject), not_after: text(data.not_after), reason: text(data.reason), request_id: text(data.request_id) }).filter(
        (e): e is [string, string] => e[1] !== undefined,
      ),
    );
    await this.audit.record({ tenant, actor: text(data.decided_by) || "pki-ca", action: type, resource: text(data.serial) ?? text(data.request_id) ?? "", result: "ok", details });
  }

  private certEvent(c: CertificateRow) {
    return { serial: c.serial, subject: c.subject, sans: JSON.parse(c.sans) as string[], profile: c.profile, issuing_ca: c.ca_id, not_after: c.not_after, request_id: c.request_id };
  }

  /**
   * Sends `certificate.expiring` once per threshold (90, 30, 7 days) for valid certificates:
   * a certificate that crosses several thresholds between checks gets only the smallest.
   */
  async expirySweep(now = new Date()): Promise<number> {
    const THRESHOLDS = [7, 30, 90];
    const horizon = new Date(now.getTime() + 90 * 86_400_000).toISOString();
    const rows = await this.store.db
      .selectFrom("pki_certificates")
      .select(["serial", "tenant", "subject", "sans", "profile", "ca_id", "not_after", "request_id", "expiry_notified"])
      .where("status", "=", "valid")
      .where("not_after", "<=", horizon)
      .where("not_after", ">", now.toISOString())
      .execute();
    let sent = 0;
    for (const r of rows) {
      const daysLeft = (Date.parse(r.not_after) - now.getTime()) / 86_400_000;
      const threshold = THRESHOLDS.find((t) => daysLeft <= t)!;
      if (r.expiry_notified != null && r.expiry_notified <= threshold) continue;
      // Claimed by a conditional update: of instances sweeping at once, one sends the notice.
      const claim = await this.store.db
        .updateTable("pki_certificates")
        .set({ expiry_notified: threshold })
        .where("serial", "=", r.serial)
        .where((eb) => eb.or([eb("expiry_notified", "is", null), eb("expiry_notified", ">", threshold)]))
        .executeTakeFirst();
      if (claim.numUpdatedRows === 0n) continue;
      await this.emit("certificate.expiring", r.tenant, { ...this.certEvent(r as CertificateRow), days_left: Math.ceil(daysLeft), threshold_days: threshold });
      sent++;
    }
    return sent;
  }

  profile(name: string): Profile {
    const p = this.config.profiles[name];
    if (!p) throw new AppError("unknown_profile", `no certificate profile named ${name}`, { status: 404 });
    return p;
  }

  private issuer(t: CaKeyType): IssuingCa {
    const ca = this.hierarchy.issuing.get(t);
    if (!ca) throw new AppError("internal", `issuing CA ${t} is not loaded`, { status: 500 });
    return ca;
  }

  /**
   * RA entry point: checks the CSR and the policy, then issues, queues, or refuses with reasons.
   * `csr` is the request as the API takes it (base64 DER or PEM), or one a front end has parsed
   * already (`parseCsr`) to check it against its own rules first; its signature is verified here either way.
   */
  async submit(tenant: string, input: { csr: string | ParsedCsr; profile: string; validity_days?: number; window?: ValidityWindow }, opts: { possessionVerified?: boolean; origin?: Origin } = {}): Promise<SubmitOutcome> {
    const profile = this.profile(input.profile);
    const parsed = typeof input.csr === "string" ? parseCsr(decodeCsr(input.csr)) : input.csr;
    // A front end that proved possession another way (CMP's CRMF POPO) submits a request without a signature of its own.
    if (!opts.possessionVerified && !(await verifyPossession(parsed))) {
      throw new AppError("csr_signature_invalid", "the CSR's signature does not verify: no proof of possession", {
        status: 400,
        details: { reasons: [{ code: "csr_signature_invalid", message: "the CSR signature does not verify under its public key" }] },
      });
    }
    const window = input.window ? resolveWindow(input.window, profile.default_validity_days) : undefined;
    if (window && profile.approval === "manual") throw new AppError("validity_not_allowed", "a requested validity window needs a profile that issues without approval", { status: 422 });
    // A window's span in days as asked for (the minute a start of "now" is backdated not counted); stored rounded up.
    const span = window ? (window.notAfter - window.notBefore - (input.window?.not_before ? 0 : BACKDATE_MS)) / DAY_MS : undefined;
    const validity = span !== undefined ? Math.ceil(span) : (input.validity_days ?? profile.default_validity_days);
    const reasons = evaluate(profile, parsed, span ?? validity);
    if (reasons.length > 0) throw new AppError("policy_rejected", "the request does not meet the profile's policy", { status: 422, details: { reasons } });

    const now = new Date().toISOString();
    const row: RequestRow = {
      id: uuidV7(),
      tenant,
      profile: input.profile,
      status: "pending",
      subject: parsed.subject,
      sans: JSON.stringify(sansOf(parsed)),
      validity_days: validity,
      csr_der: parsed.der,
      reasons: "[]",
      serial: null,
      decided_by: null,
      origin: opts.origin ?? "api",
      created_at: now,
      decided_at: null,
    };
    if (profile.approval === "manual") {
      await this.store.insertRequest(row);
      await this.emit("request.pending", tenant, { request_id: row.id, subject: row.subject, sans: JSON.parse(row.sans), profile: row.profile });
      return { status: "pending", request: requestView(row) };
    }
    const cert = await this.issue(tenant, row.id, row.origin, input.profile, profile, parsed, validity, undefined, window);
    await this.store.insertIssued(cert, { ...row, status: "issued", serial: cert.serial, decided_by: "policy", decided_at: now });
    await this.emit("certificate.issued", tenant, { ...this.certEvent(cert), decided_by: "policy" });
    return { status: "issued", request_id: row.id, certificate: this.view(cert) };
  }

  async listRequests(tenant: string, status: RequestRow["status"], limit: number): Promise<RequestView[]> {
    return (await this.store.listRequests(tenant, status, limit)).map(requestView);
  }

  async getRequest(tenant: string, id: string): Promise<RequestView> {
    const r = await this.store.request(tenant, id);
    if (!r) throw notFound("request");
    return requestView(r);
  }

  /** Approves a queued request: the policy is evaluated again (config may have changed), then the certificate is issued. */
  async approve(tenant: string, id: string, approver: string): Promise<CertificateView> {
    const r = await this.store.request(tenant, id);
    if (!r) throw notFound("request");
    if (r.status !== "pending") throw new AppError("conflict", `the request is already ${r.status}`);
    const profile = this.profile(r.profile);
    const parsed = parseCsr(r.csr_der);
    const reasons = evaluate(profile, parsed, r.validity_days);
    if (reasons.length > 0) {
      await this.store.decide(tenant, id, { status: "rejected", decided_by: "policy", decided_at: new Date().toISOString(), reasons: JSON.stringify(reasons) });
      await this.emit("request.rejected", tenant, { request_id: id, decided_by: "policy", reasons });
      throw new AppError("policy_rejected", "the request no longer meets the profile's policy", { status: 422, details: { reasons } });
    }
    // Claim the request first so two approvers cannot issue twice.
    const serial = randomSerialHex();
    if (!(await this.store.decide(tenant, id, { status: "issued", decided_by: approver, decided_at: new Date().toISOString(), serial }))) {
      throw new AppError("conflict", "the request was decided concurrently");
    }
    try {
      const cert = await this.issue(tenant, id, r.origin, r.profile, profile, parsed, r.validity_days, serial);
      await this.store.insertCertificate(cert);
      await this.emit("certificate.issued", tenant, { ...this.certEvent(cert), decided_by: approver });
      return this.view(cert);
    } catch (e) {
      // Nothing was stored: give the request back to the queue rather than leave it "issued" without a certificate.
      await this.store.reopen(tenant, id, serial);
      throw e;
    }
  }

  async reject(tenant: string, id: string, approver: string, reason: string): Promise<RequestView> {
    const ok = await this.store.decide(tenant, id, {
      status: "rejected",
      decided_by: approver,
      decided_at: new Date().toISOString(),
      reasons: JSON.stringify([{ code: "rejected_by_approver", message: reason }]),
    });
    if (!ok) {
      const r = await this.store.request(tenant, id);
      if (!r) throw notFound("request");
      throw new AppError("conflict", `the request is already ${r.status}`);
    }
    await this.emit("request.rejected", tenant, { request_id: id, decided_by: approver, reasons: [{ code: "rejected_by_approver", message: reason }] });
    return this.getRequest(tenant, id);
  }

  /** Lints and signs; the caller stores the returned row (with its request, when new). */
  private async issue(tenant: string, requestId: string, origin: string, profileName: string, profile: Profile, p: ParsedCsr, validityDays: number, presetSerial?: string, window?: { notBefore: number; notAfter: number }): Promise<CertificateRow> {
    const ca = this.issuer(profile.issuing_ca);
    // Whole seconds (x509Time), so the stored times are the certificate's.
    const now = x509Time(Date.now()).getTime();
    const notBefore = x509Time(window ? window.notBefore : now - BACKDATE_MS);
    const notAfter = x509Time(Math.min(window ? window.notAfter : now + validityDays * DAY_MS, ca.cert.notAfter.getTime()));
    // 127 random bits; the primary key on serial turns the never-expected duplicate into a failed insert.
    const serial = presetSerial ?? randomSerialHex();
    const shard = shardOf(ca, serial);
    const dns = effectiveDnsNames(p);
    const keyUsage = keyUsageFor(profile, p.keyType);
    const violations = lint({
      serialHex: serial,
      notBefore,
      notAfter,
      maxValidityDays: profile.max_validity_days,
      sanCount: dns.length + p.ips.length + p.emails.length + p.uris.length + p.upns.length,
      commonName: p.commonName,
      isCa: false,
      keyType: p.keyType,
      keyUsage,
    });
    if (violations.length > 0) throw new AppError("lint_failed", "the certificate failed lint and was not signed", { status: 422, details: { reasons: violations } });

    const names: x509.JsonGeneralName[] = [...dns.map((value) => ({ type: "dns" as const, value })), ...p.ips.map((value) => ({ type: "ip" as const, value })), ...p.emails.map((value) => ({ type: "email" as const, value })), ...p.uris.map((value) => ({ type: "url" as const, value })), ...p.upns.map((value) => ({ type: "upn" as const, value }))];
    const der = await signLeaf(ca, {
      serialHex: serial,
      csrDer: p.der,
      notBefore,
      notAfter,
      extensions: [...(await this.fixedExtensions(ca, profileName, profile, keyUsage, shard)), subjectAltNameDer({ dns, ips: p.ips.map((ip) => ipBytes(ip)!), emails: p.emails, uris: p.uris, upns: p.upns })],
    });
    const row: CertificateRow = {
      serial,
      tenant,
      ca_id: ca.id,
      profile: profileName,
      subject: p.subject,
      sans: JSON.stringify(names.map((n) => `${n.type === "url" ? "uri" : n.type}:${n.value}`)),
      key_type: p.keyType,
      status: "valid",
      not_before: notBefore.toISOString(),
      not_after: notAfter.toISOString(),
      revoked_at: null,
      revocation_reason: null,
      request_id: requestId,
      origin,
      cert_der: der,
      created_at: new Date().toISOString(),
      crl_shard: shard ?? null,
    };
    return row;
  }

  /** The extensions every certificate of a profile, key usage and CRL shard shares, encoded once. */
  private async fixedExtensions(ca: IssuingCa, profileName: string, profile: Profile, keyUsage: string[], shard: number | undefined): Promise<Uint8Array[]> {
    const key = `${ca.id}|${profileName}|${keyUsage.join(",")}|${shard ?? ""}`;
    let exts = this.extensionCache.get(key);
    if (!exts) {
      const list: x509.Extension[] = [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(keyUsage.reduce((f, u) => f | KU_FLAGS[u]!, 0), true),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey),
        new x509.CRLDistributionPointsExtension([this.crlUrl(ca.id, shard)]),
        new x509.AuthorityInfoAccessExtension({ ocsp: this.ocspUrl(), caIssuers: this.caIssuersUrl(ca.id) }),
      ];
      if (profile.extended_key_usage.length > 0) list.push(new x509.ExtendedKeyUsageExtension(profile.extended_key_usage.map((e) => EKU_OIDS[e]!), false));
      exts = list.map(extensionDer);
      this.extensionCache.set(key, exts);
    }
    return exts;
  }

  /** The URL of an issuing CA's complete CRL, or of one shard's partitioned CRL. */
  crlUrl(caId: string, shard?: number): string {
    return `${this.config.base_url}/pki/crl/${crlName({ caId, shard })}.crl`;
  }
  ocspUrl(): string {
    return `${this.config.base_url}/pki/ocsp`;
  }
  caIssuersUrl(caId: string): string {
    return `${this.config.base_url}/pki/ca/${caId}.crt`;
  }

  private view(r: CertificateRow): CertificateView {
    const ca = [...this.hierarchy.issuing.values()].find((c) => c.id === r.ca_id);
    return {
      serial: r.serial,
      origin: r.origin as Origin,
      subject: r.subject,
      sans: JSON.parse(r.sans),
      profile: r.profile,
      issuing_ca: r.ca_id,
      key_type: r.key_type,
      status: r.status,
      not_before: r.not_before,
      not_after: r.not_after,
      revoked_at: r.revoked_at,
      revocation_reason: r.revocation_reason === null ? null : (REASON_NAME[r.revocation_reason] ?? "unspecified"),
      certificate_pem: toPem("CERTIFICATE", r.cert_der),
      chain_pem: ca?.chainPem ?? "",
    };
  }

  async getCertificate(tenant: string, serial: string): Promise<CertificateView> {
    const r = await this.store.certificate(tenant, serial.toLowerCase());
    if (!r) throw notFound("certificate");
    return this.view(r);
  }

  async search(tenant: string, f: CertificateFilter): Promise<CertificateView[]> {
    return (await this.store.searchCertificates(tenant, { ...f, serial: f.serial?.toLowerCase() })).map((r) => this.view(r));
  }

  /** Revokes a certificate of the tenant; the CRL is regenerated and cached OCSP answers dropped. */
  async revoke(tenant: string, serial: string, reason: RevocationReason): Promise<CertificateView> {
    const s = serial.toLowerCase();
    const r = await this.store.certificate(tenant, s);
    if (!r) throw notFound("certificate");
    if (r.status === "revoked") throw new AppError("conflict", "the certificate is already revoked");
    const count = await this.store.revoke(tenant, s, new Date().toISOString(), REVOCATION_REASONS[reason]);
    if (count === undefined) throw new AppError("conflict", "the certificate is already revoked");
    // Only this revocation since the last look: the re-signing below covers it. Otherwise the
    // next checkPeerRevocations() also sees the others'.
    if (this.revocationsSeen === count - 1) this.revocationsSeen = count;
    // The other instances on the database re-sign their cached OCSP answers when this arrives.
    void this.changes?.publish(REVOCATIONS_CHANNEL);
    const shard = r.crl_shard ?? undefined;
    if (this.config.crl_full_on_revoke) await this.regenerateCrl(r.ca_id, shard);
    else await this.regenerateDelta(r.ca_id, shard);
    // Sharded: the complete CRL (named only by the TSA certificate) learns of it through its delta.
    if (shard !== undefined) await this.regenerateDelta(r.ca_id);
    // Every cached answer is re-signed now, so none says "good" for this certificate.
    await this.refreshOcsp({ all: true });
    await this.emit("certificate.revoked", tenant, { ...this.certEvent(r), reason });
    return this.getCertificate(tenant, s);
  }

  /** The URL of a CRL scope's delta CRLs (named in its full CRLs). */
  private deltaUrl(scope: CrlScope): string {
    return `${this.config.base_url}/pki/crl/${crlName(scope)}-delta.crl`;
  }

  /** Serializes CRL signing per scope, so its full and delta CRL numbers only grow. */
  private withCrlLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.crlLocks.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.crlLocks.set(key, next);
    return next;
  }

  /**
   * The next number of a scope's CRLs (full and delta share one sequence), from a counter the
   * instances of the database share; the stored CRLs give the floor for databases older than it.
   * Taken before the revoked certificates are read: a CRL with a higher number then never
   * misses a revocation that one with a lower number lists, so keeping the highest is safe.
   */
  private async nextCrlNumber(key: string): Promise<number> {
    const [full, delta] = await Promise.all([this.store.crl(key), this.store.crl(`${key}${DELTA}`)]);
    return this.store.allocateCrlNumber(key, Math.max(full?.number ?? 0, delta?.number ?? 0) + 1);
  }

  /** Stores a CRL just signed; when another instance stored a newer one meanwhile, that one is current. */
  private async storeCrl(row: CrlRow): Promise<Uint8Array> {
    if (await this.store.putCrl(row)) return row.der;
    return (await this.store.crl(row.ca_id))?.der ?? row.der;
  }

  /**
   * Revocation for key compromise, proven with the certificate's own private key (no account
   * needed, as ACME allows): `signature` is over `revoke:<serial hex>:<timestamp>` with the
   * certificate's key (ECDSA with SHA-256 for P-256 and SHA-384 for P-384, DER-encoded;
   * RSASSA-PKCS1-v1_5 with SHA-256; Ed25519), and the timestamp must be within 5 minutes.
   * The certificate must be one this CA issued, byte for byte.
   */
  async revokeByKeyProof(certificatePem: string, timestamp: string, signature: Uint8Array): Promise<CertificateView> {
    let cert: x509.X509Certificate;
    const der = pemOrBase64Der(certificatePem, "CERTIFICATE", "certificate");
    try {
      cert = new x509.X509Certificate(der.slice().buffer as ArrayBuffer);
    } catch {
      throw new AppError("malformed_input", "certificate is not a PEM or base64 DER certificate");
    }
    const serial = cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, "");
    const row = (await this.store.certificateBySerial(serial)) ?? (await this.store.certificateBySerial(cert.serialNumber.toLowerCase()));
    if (!row || !bytesEqual(row.cert_der, new Uint8Array(cert.rawData))) throw notFound("certificate");
    const t = Date.parse(timestamp);
    if (!Number.isFinite(t) || Math.abs(Date.now() - t) > 5 * 60_000) {
      throw new AppError("bad_request", "timestamp must be an ISO time within 5 minutes of now");
    }
    const keyAlg = cert.publicKey.algorithm as Algorithm & { namedCurve?: string };
    const kind = keyAlg.name === "ECDSA" ? "ecdsa" : keyAlg.name === "Ed25519" ? "ed25519" : "rsa";
    const hash = keyAlg.namedCurve === "P-384" ? "SHA-384" : "SHA-256";
    const message = new TextEncoder().encode(`revoke:${row.serial}:${timestamp}`);
    const ok = await verifyBySpki(cert.publicKey.rawData, keyAlg, { kind, hash }, message.slice().buffer, signature.slice().buffer);
    if (!ok) throw new AppError("forbidden", "the signature does not prove possession of the certificate's private key");
    return this.revoke(row.tenant, row.serial, "keyCompromise");
  }

  /**
   * Signs a fresh full CRL for one issuing CA (its complete CRL, or with `shard` that shard's
   * partitioned CRL), then a fresh delta over it.
   */
  async regenerateCrl(caId: string, shard?: number): Promise<Uint8Array> {
    const scope = { caId, shard };
    const key = crlStoreKey(scope);
    const der = await this.withCrlLock(key, async () => {
      const ca = this.issuingById(caId);
      // thisUpdate is taken before the read: a delta over this base re-lists anything revoked near it.
      const thisUpdate = new Date();
      const number = await this.nextCrlNumber(key);
      const revoked = await this.store.revokedOf(caId, { shard });
      const nextUpdate = new Date(thisUpdate.getTime() + this.config.crl_validity_hours * 3_600_000);
      const crl = await signCrl(ca, revoked.map(toEntry), { number, thisUpdate, nextUpdate, freshestUrl: this.deltaUrl(scope), scopeUrl: shard === undefined ? undefined : this.crlUrl(caId, shard) });
      return this.storeCrl({ ca_id: key, number, der: new Uint8Array(crl.rawData), this_update: thisUpdate.toISOString(), next_update: nextUpdate.toISOString() });
    });
    await this.regenerateDelta(caId, shard);
    return der;
  }

  /** Signs a delta CRL of a scope: revocations since its current full CRL (with a margin), over its number. */
  async regenerateDelta(caId: string, shard?: number): Promise<Uint8Array> {
    const scope = { caId, shard };
    const key = crlStoreKey(scope);
    const base = await this.store.crl(key);
    if (!base) return (await this.regenerateCrl(caId, shard), (await this.store.crl(`${key}${DELTA}`))!.der);
    return this.withCrlLock(key, async () => {
      const ca = this.issuingById(caId);
      const current = (await this.store.crl(key))!;
      const since = new Date(new Date(current.this_update).getTime() - DELTA_OVERLAP_MS).toISOString();
      const number = await this.nextCrlNumber(key);
      const revoked = await this.store.revokedOf(caId, { shard, since });
      const thisUpdate = new Date();
      // A delta never outlives its base.
      const nextUpdate = new Date(Math.min(thisUpdate.getTime() + this.config.crl_validity_hours * 3_600_000, new Date(current.next_update).getTime()));
      const crl = await signCrl(ca, revoked.map(toEntry), { number, thisUpdate, nextUpdate, deltaOf: current.number, scopeUrl: shard === undefined ? undefined : this.crlUrl(caId, shard) });
      return this.storeCrl({ ca_id: `${key}${DELTA}`, number, der: new Uint8Array(crl.rawData), this_update: thisUpdate.toISOString(), next_update: nextUpdate.toISOString() });
    });
  }

  private issuingById(caId: string) {
    const ca = [...this.hierarchy.issuing.values()].find((c) => c.id === caId);
    if (!ca) throw notFound("issuing CA");
    return ca;
  }

  /**
   * A CRL by its published name: `<ca>` (complete), `<ca>-s<k>` (shard k of a sharded CA),
   * each with a `-delta` form. Full CRLs are regenerated when missing or past their refresh time.
   */
  async currentCrl(name: string): Promise<Uint8Array> {
    const m = /^([a-z0-9-]+?)(?:-s(0|[1-9]\d{0,2}))?(-delta)?$/.exec(name);
    const ca = m ? [...this.hierarchy.issuing.values()].find((c) => c.id === m[1]) : undefined;
    const shard = m?.[2] === undefined ? undefined : Number(m[2]);
    if (!m || !ca || (shard !== undefined && (ca.crlShards <= 1 || shard >= ca.crlShards))) throw notFound("CRL");
    const isDelta = m[3] !== undefined;
    const key = crlStoreKey({ caId: ca.id, shard });
    const row = await this.store.crl(isDelta ? `${key}${DELTA}` : key);
    const refreshAt = row ? new Date(row.this_update).getTime() + this.config.crl_refresh_minutes * 60_000 : 0;
    if (row && Date.now() < refreshAt && Date.now() < new Date(row.next_update).getTime()) return row.der;
    return isDelta ? this.regenerateDelta(ca.id, shard) : this.regenerateCrl(ca.id, shard);
  }

  /** Regenerates every issuing CA's CRLs that are due: the complete one and each shard's (the schedule). */
  async refreshCrls(): Promise<void> {
    for (const ca of this.hierarchy.issuing.values()) {
      await this.currentCrl(ca.id);
      for (let k = 0; ca.crlShards > 1 && k < ca.crlShards; k++) await this.currentCrl(crlName({ caId: ca.id, shard: k }));
    }
  }

  /** Renewal of responder and TSA certificates (wired by the service; none without it). */
  signerRenewal?: (now: number) => Promise<string[]>;
  /** Runs when the hierarchy gains certificates (an offline root's ceremony): the service trusts them for EST. */
  onHierarchyChange?: () => void;

  /** Renews responder and TSA certificates nearing expiry; after a responder renewal, every cached OCSP answer is re-signed. */
  async renewSigners(now = Date.now()): Promise<string[]> {
    const ids = (await this.signerRenewal?.(now)) ?? [];
    if (ids.some((id) => id !== "tsa")) await this.refreshOcsp({ all: true });
    return ids;
  }

  /**
   * Looks for revocations made by other instances sharing the database (run every
   * `revocation_check_ms`): when there were any, cached OCSP answers are dropped at once and
   * re-signed. Resolves to whether there were.
   */
  async checkPeerRevocations(): Promise<boolean> {
    const count = await this.store.revocationCount();
    const seen = this.revocationsSeen;
    this.revocationsSeen = count;
    if (seen === undefined || seen === count) return false;
    await this.refreshOcsp({ all: true });
    return true;
  }

  /**
   * Answers a DER OCSP request. Malformed input gives a `malformedRequest` response with status 400;
   * certificates of an issuer this instance does not run are `unknown`.
   */
  async ocsp(der: Uint8Array): Promise<{ status: number; body: Uint8Array }> {
    // Keyed by the request's bytes: a repeated nonce-less request is answered without parsing.
    // Only nonce-less requests are ever stored, so a request with a nonce always misses.
    const key = der.length <= 512 ? toBase64(der) : undefined;
    if (key) {
      const hit = this.ocspCache.get(key);
      if (hit && hit.expires > Date.now()) return { status: 200, body: hit.der };
    }
    return this.answerOcsp(der, key);
  }

  /**
   * Re-signs cached OCSP answers: those within a quarter of their validity of going stale
   * (the schedule), or every one (`all`, after a revocation), so relying parties get
   * pre-signed, current answers and never wait for a signature.
   */
  async refreshOcsp(opts: { all?: boolean; now?: number } = {}): Promise<number> {
    const now = opts.now ?? Date.now();
    const margin = (this.config.ocsp_validity_minutes * 60_000) / 4;
    let n = 0;
    const entries = [...this.ocspCache];
    // After a revocation no old answer may be served while the new ones are being signed.
    if (opts.all) this.ocspCache.clear();
    for (const [key, entry] of entries) {
      if (!opts.all && entry.expires - now > margin) continue;
      await this.answerOcsp(entry.request, key);
      n++;
    }
    return n;
  }

  private async answerOcsp(der: Uint8Array, key: string | undefined): Promise<{ status: number; body: Uint8Array }> {
    let req;
    try {
      req = parseOcspRequest(der);
    } catch (e) {
      if (e instanceof AppError && e.status < 500) return { status: 400, body: ocspErrorResponse(OCSPResponseStatus.malformedRequest) };
      throw e;
    }
    const answers: Array<{ certId: (typeof req.questions)[number]["certId"]; answer: OcspAnswer }> = [];
    let signer: IssuingCa | undefined;
    for (const q of req.questions) {
      const ca = [...this.hierarchy.issuing.values()].find((c) => c.hashes[q.hashAlgorithm].name === q.issuerNameHash && c.hashes[q.hashAlgorithm].key === q.issuerKeyHash);
      signer ??= ca;
      let answer: OcspAnswer = { status: "unknown" };
      if (ca && ca === signer) {
        const row = await this.store.certificateBySerial(q.serialHex);
        if (row && row.ca_id === ca.id) {
          answer = row.status === "revoked" ? { status: "revoked", revokedAt: new Date(row.revoked_at!), reason: row.revocation_reason ?? undefined } : { status: "good" };
        }
      }
      answers.push({ certId: q.certId, answer });
    }
    // No issuer of ours was named: RFC 6960 §2.3 "unauthorized".
    if (!signer) return { status: 200, body: ocspErrorResponse(OCSPResponseStatus.unauthorized) };
    const now = new Date();
    const validity = this.config.ocsp_validity_minutes * 60_000;
    const responder = { keyType: signer.responder.keyType, key: signer.responder.key, cert: signer.responder.cert };
    // An answer never claims to be fresh beyond its responder certificate (renewed before that).
    const nextUpdate = new Date(Math.min(now.getTime() + validity, responder.cert.notAfter.getTime()));
    const body = await signOcspResponse(responder, answers, { now, nextUpdate, nonce: req.nonce });
    // Refreshed well before nextUpdate so relying parties never see a stale answer.
    if (key && !req.nonce) {
      if (this.ocspCache.size >= MAX_CACHED_OCSP) this.ocspCache.clear();
      this.ocspCache.set(key, { der: body, request: der, expires: now.getTime() + validity / 2 });
    }
    return { status: 200, body };
  }
}

/**
 * Answers a DER TimeStampReq (RFC 3161). Malformed DER gives a rejection with status 400;
 * a well-formed request the TSA refuses (algorithm, policy, extension) a rejection with 200.
 */
export async function timestamp(ca: PkiCa, der: Uint8Array): Promise<{ status: number; body: Uint8Array }> {
  let req;
  try {
    req = parseTimeStampReq(der);
  } catch (e) {
    if (e instanceof AppError && e.status < 500) return { status: 400, body: timeStampRejection("badDataFormat", e.message) };
    throw e;
  }
  const t = ca.hierarchy.tsa;
  const out = await stamp({ keyType: t.keyType, key: t.key, cert: t.cert }, req, {
    policy: ca.config.tsa_policy,
    serialHex: randomSerialHex(),
    now: new Date(),
    accuracySeconds: ca.config.tsa_accuracy_seconds,
  });
  return { status: 200, body: out.response };
}

/** A CSR's SANs as pki_certificates stores them (`dns:`, `ip:`, `email:`, `uri:`, `upn:`; CN-derived DNS names included). */
export function sansOf(p: ParsedCsr): string[] {
  return [...effectiveDnsNames(p).map((d) => `dns:${d}`), ...p.ips.map((i) => `ip:${i}`), ...p.emails.map((e) => `email:${e}`), ...p.uris.map((u) => `uri:${u}`), ...p.upns.map((u) => `upn:${u}`)];
}

function requestView(r: RequestRow): RequestView {
  return {
    id: r.id,
    origin: r.origin as Origin,
    status: r.status,
    profile: r.profile,
    subject: r.subject,
    sans: JSON.parse(r.sans),
    validity_days: r.validity_days,
    reasons: JSON.parse(r.reasons),
    serial: r.serial,
    created_at: r.created_at,
    decided_at: r.decided_at,
  };
}
