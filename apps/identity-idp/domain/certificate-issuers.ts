/**
 * pki-ca's CAs as issuers of sign-in certificates. Their certificates (`/pki/ca/<id>.pem`, the
 * CA and its chain to the root) are fetched from pki-ca (`federation.ca`) at start, retried
 * until pki-ca answers, then refreshed; each chain is added to the mTLS listener's trust, so
 * pki-ca may start after the idp and the idp needs no CA file on disk. A certificate one of
 * them issued is checked at pki-ca's OCSP responder before it signs anyone in: revoked,
 * unknown, or no trustworthy answer (pki-ca unreachable, an unsigned or stale answer) refuses
 * the sign-in. Only these certificates may sign in by their e-mail SAN (the CA vouched for it
 * under its profile's `email_domains`); certificates of other trusted CAs (`mtls.ca_file`, the
 * suite CA) sign in only when registered, and are not revocation-checked here.
 */
import * as x509 from "../../../src/pki/x509.ts";
import { ocspRequest, OcspCheckError, verifyOcspResponse } from "../../../src/pki/ocsp-client.ts";
import { AppError } from "../../../src/service/errors.ts";
import type { FederatedClient } from "../../../src/federation/client.ts";
import type { ClientCertificate } from "../../../src/auth/client-cert.ts";
import type { Logger } from "../../../src/service/log.ts";

/** The first retry after a failed fetch; doubles up to the refresh interval. */
const FIRST_RETRY_MS = 1000;

export interface CertificateIssuersOptions {
  /** pki-ca, when `federation.ca.url` is set; without it there are no such issuers. */
  ca?: FederatedClient;
  /** The CA ids to fetch (`app.certificate_cas`). */
  ids: string[];
  refreshMs: number;
  /** Adds a PEM chain to the mTLS listener's trust (`ServiceContext.addClientCa`). */
  trust: (pem: string) => void;
  logger: Logger;
}

export class CertificateIssuers {
  private readonly cas = new Map<string, x509.X509Certificate>();
  private timer?: ReturnType<typeof setTimeout>;
  private stopped = false;

  constructor(private readonly opts: CertificateIssuersOptions) {}

  /** Fetches the CAs now and keeps them fresh; a failure is retried with backoff. */
  start(): void {
    if (!this.opts.ca || this.opts.ids.length === 0) return;
    const run = async (retryMs: number) => {
      const ok = await this.refresh();
      if (this.stopped) return;
      const next = ok ? this.opts.refreshMs : retryMs;
      this.timer = setTimeout(() => void run(ok ? FIRST_RETRY_MS : Math.min(2 * retryMs, this.opts.refreshMs)), next);
      (this.timer as { unref?: () => void }).unref?.();
    };
    void run(FIRST_RETRY_MS);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** Fetches every configured CA once; true when all of them came. */
  async refresh(): Promise<boolean> {
    let all = true;
    for (const id of this.opts.ids) {
      try {
        const res = await this.opts.ca!.request(`/pki/ca/${id}.pem`);
        if (!res.ok) throw new Error(`pki-ca answered ${res.status}`);
        const pem = await res.text();
        const chain = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
        if (chain.length === 0) throw new Error("the answer holds no certificate");
        const cert = new x509.X509Certificate(chain[0]!);
        const known = this.cas.get(id);
        if (known?.equal(cert)) continue;
        this.opts.trust(chain.join("\n") + "\n");
        this.cas.set(id, cert);
        this.opts.logger.info("trusting pki-ca's CA for certificate sign-in", { ca: id, subject: cert.subject, not_after: cert.notAfter.toISOString() });
      } catch (e) {
        all = false;
        if (!this.stopped) this.opts.logger.warn("fetching pki-ca's CA failed; retrying", { ca: id, error: e });
      }
    }
    return all;
  }

  /** The pki-ca CA that signed `cert`, or undefined when another CA did. */
  async issuerOf(cert: ClientCertificate): Promise<x509.X509Certificate | undefined> {
    if (!cert.verified || this.cas.size === 0) return undefined;
    const leaf = new x509.X509Certificate(cert.der as Uint8Array<ArrayBuffer>);
    for (const ca of this.cas.values()) {
      if (ca.subject === leaf.issuer && (await leaf.verify({ publicKey: ca.publicKey, signatureOnly: true }))) return ca;
    }
    return undefined;
  }

  /**
   * Refuses a certificate of a pki-ca CA unless pki-ca's OCSP responder says it is good: 401
   * `certificate_revoked` (revoked or unknown), 503 `unavailable` (no trustworthy answer).
   * Certificates of other CAs pass.
   */
  async assertNotRevoked(cert: ClientCertificate): Promise<void> {
    const issuer = await this.issuerOf(cert);
    if (!issuer) return;
    const leaf = new x509.X509Certificate(cert.der as Uint8Array<ArrayBuffer>);
    const { der, nonce } = await ocspRequest(leaf, issuer);
    let status: string;
    try {
      const res = await this.opts.ca!.request("/pki/ocsp", { method: "POST", idempotent: true, headers: { "content-type": "application/ocsp-request" }, body: der.slice().buffer as ArrayBuffer });
      if (!res.ok) throw new OcspCheckError(`the OCSP responder answered ${res.status}`);
      status = (await verifyOcspResponse(new Uint8Array(await res.arrayBuffer()), leaf, issuer, nonce)).status;
    } catch (e) {
      this.opts.logger.warn("no trustworthy OCSP answer for a sign-in certificate", { serial: cert.serialNumber, error: e });
      throw new AppError("unavailable", "The certificate's revocation status could not be checked; try again later.", { cause: e });
    }
    if (status !== "good") throw new AppError("certificate_revoked", `This certificate is ${status === "revoked" ? "revoked" : "unknown to its CA"}.`, { status: 401 });
  }
}
