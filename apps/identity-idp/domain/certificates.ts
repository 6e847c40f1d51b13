/**
 * Client certificates as a sign-in (RFC 8705-style mTLS at the login page): an administrator
 * registers a user's certificate (its SHA-256 fingerprint, `x5t#S256`, is the mapping; the
 * subject is kept for display), and a browser presenting that certificate on the idp's mTLS
 * port signs in as the user. The TLS handshake has verified the chain to the listener's CA
 * (`mtls.ca_file`: pki-ca's chain or another configured CA, by default the suite CA), the
 * validity period and possession of the key; certificates that did not chain (`mtls.self_signed`)
 * never sign anyone in. A fingerprint names one certificate, so a re-issued one must be registered again.
 * A tenant may also let certificates of pki-ca's CAs sign in by their e-mail or UPN SAN (`userOf`).
 */
import { randomUUID } from "node:crypto";
import { AppError, notFound } from "../../../src/service/errors.ts";
import { decodePemBlocks, looksLikePem, pemOrBase64Der } from "../../../src/pki/codec.ts";
import { parseClientCertificate, withinValidity, type ClientCertificate } from "../../../src/auth/client-cert.ts";
import type { IdpStore, UserCertificateRow } from "../store.ts";

const view = (r: UserCertificateRow) => ({ id: r.id, name: r.name, x5t_s256: r.x5t_s256, subject: r.subject, not_after: r.not_after, created_at: r.created_at, last_used_at: r.last_used_at });
const MAX_PER_USER = 10;

export class UserCertificates {
  constructor(
    private readonly store: IdpStore,
    private readonly now: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async register(tenant: string, userId: string, input: { certificate: string; name: string }) {
    let cert: ClientCertificate;
    try {
      // A chain is accepted: its first certificate is the user's.
      const der = looksLikePem(input.certificate) ? decodePemBlocks(input.certificate).find((b) => b.label === "CERTIFICATE")?.der : pemOrBase64Der(input.certificate, "CERTIFICATE", "certificate");
      if (!der) throw new AppError("malformed_input", "the certificate must be PEM (a chain: the user's certificate first) or base64 DER");
      cert = await parseClientCertificate(der);
    } catch (e) {
      if (e instanceof AppError) throw e;
      throw new AppError("malformed_input", "the certificate could not be parsed", { cause: e });
    }
    if (!withinValidity(cert)) throw new AppError("validation_failed", "the certificate is outside its validity period");
    if ((await this.store.userCertificates(tenant, userId)).length >= MAX_PER_USER) throw new AppError("conflict", `a user has at most ${MAX_PER_USER} certificates`);
    if (await this.store.userCertificateByX5t(tenant, cert.x5tS256)) throw new AppError("conflict", "this certificate is already registered");
    const row: UserCertificateRow = {
      id: randomUUID(),
      tenant,
      user_id: userId,
      x5t_s256: cert.x5tS256,
      subject: cert.subject.slice(0, 1000),
      name: input.name,
      not_after: Math.floor(cert.notAfter.getTime() / 1000),
      created_at: this.now(),
      last_used_at: null,
    };
    await this.store.insertUserCertificate(row);
    return view(row);
  }

  async list(tenant: string, userId: string) {
    return (await this.store.userCertificates(tenant, userId)).map(view);
  }

  async remove(tenant: string, userId: string, id: string): Promise<void> {
    if (!(await this.store.deleteUserCertificate(tenant, userId, id))) throw notFound("certificate");
  }

  /**
   * The user a handshake-verified certificate signs in, or undefined: the one it is registered
   * to; else, for a certificate of pki-ca's CAs, with `byEmail` (the tenant's `certificate_email`
   * policy) the one user whose verified e-mail address is an e-mail SAN of it, and with `byUpn`
   * (`certificate_upn`) the one user whose username is a UPN SAN of it, compared
   * case-insensitively (usernames are stored in lower case and may contain `@`). SANs naming
   * two different users name nobody. `peek`: a look before signing in, the registered
   * certificate's last use is not recorded.
   */
  async userOf(tenant: string, cert: ClientCertificate | undefined, opts: { byEmail?: boolean; byUpn?: boolean; peek?: boolean } = {}): Promise<string | undefined> {
    if (!cert?.verified) return undefined;
    const row = await this.store.userCertificateByX5t(tenant, cert.x5tS256);
    if (row) {
      if (!opts.peek) await this.store.touchUserCertificate(tenant, row.id, this.now());
      return row.user_id;
    }
    const found = new Set<string>();
    for (const email of opts.byEmail ? cert.emails.slice(0, 10) : []) {
      const user = await this.store.userByVerifiedEmail(tenant, email);
      if (user) found.add(user.id);
    }
    for (const upn of opts.byUpn ? cert.upns.slice(0, 10) : []) {
      const user = upn.length <= 128 ? await this.store.userByName(tenant, upn.toLowerCase()) : undefined;
      if (user) found.add(user.id);
    }
    return found.size === 1 ? [...found][0] : undefined;
  }
}
