/**
 * Client certificates as principals, for `/service/**` on the mTLS port.
 *
 * The TLS handshake has already verified the certificate's chain to the configured CA (the
 * suite CA by default), its validity period and the client's possession of its key; this file
 * only names it. A certificate becomes a principal when one configured mapping matches one of
 * its names exactly: a URI SAN (a service's SPIFFE ID, `spiffe://cryptoutil/<service>`) or a
 * DNS SAN. The subject DN is never used: names in SANs are what the CA vouches for. A verified
 * certificate that no mapping names is refused with 403 by the caller.
 *
 * With `mtls.self_signed`, the listener also completes handshakes with certificates that do
 * not chain to the CA (RFC 8705 §2.2 self-signed certificates, proven by the handshake to be
 * the client's): those are `verified: false`, never become a principal here, and serve only
 * to bind access tokens and to authenticate `self_signed_tls_client_auth` OAuth clients.
 */
import * as v from "valibot";
import { AppError } from "../service/errors.ts";
import * as x509 from "../pki/x509.ts";
import type { Principal } from "./bearer.ts";

/** The SPIFFE ID in the client certificate the suite CA issues each service. */
export function serviceSpiffeId(service: string): string {
  return `spiffe://cryptoutil/${service}`;
}

const name = v.pipe(v.string(), v.minLength(1), v.maxLength(2000));

/** One allowed client certificate: the SAN that names it, and the principal it becomes. */
export const MtlsPrincipalConfig = v.pipe(
  v.strictObject({
    /** Exact URI SAN, e.g. `spiffe://cryptoutil/sm-kms`. */
    uri: v.optional(name),
    /** Exact DNS SAN (compared in lower case). */
    dns: v.optional(name),
    tenant: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,64}$/)),
    /** The principal's subject; default the matched name. */
    subject: v.optional(name),
    scopes: v.array(v.pipe(v.string(), v.minLength(1))),
  }),
  v.check((p) => (p.uri === undefined) !== (p.dns === undefined), "give exactly one of uri and dns"),
);
export type MtlsPrincipalConfig = v.InferOutput<typeof MtlsPrincipalConfig>;

/** What the pipeline knows of a verified client certificate (no secrets). */
export interface ClientCertificate {
  /** DER, for RFC 8705 certificate-bound tokens. */
  der: Uint8Array;
  /** base64url SHA-256 of the DER: RFC 8705's `x5t#S256` confirmation value. */
  x5tS256: string;
  serialNumber: string;
  subject: string;
  uris: string[];
  dnsNames: string[];
  ipAddresses: string[];
  emails: string[];
  /** Microsoft User Principal Names (SAN otherName), as written. */
  upns: string[];
  notBefore: Date;
  notAfter: Date;
  /** Whether the handshake chained it to the listener's CA (false: a self-signed certificate). */
  verified: boolean;
}

/**
 * Parses a certificate the TLS layer has accepted; `verified` says whether it chained to the
 * CA. An unchained certificate outside its validity period is refused here (nothing else
 * checked its dates).
 */
export async function parseClientCertificate(der: Uint8Array, verified = true): Promise<ClientCertificate> {
  const cert = new x509.X509Certificate(der as Uint8Array<ArrayBuffer>);
  const items = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? [];
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der as Uint8Array<ArrayBuffer>));
  return {
    der,
    x5tS256: Buffer.from(digest).toString("base64url"),
    serialNumber: cert.serialNumber.toLowerCase(),
    subject: cert.subject,
    uris: items.filter((n) => n.type === "url").map((n) => n.value),
    dnsNames: items.filter((n) => n.type === "dns").map((n) => n.value.toLowerCase()),
    ipAddresses: items.filter((n) => n.type === "ip").map((n) => n.value),
    emails: items.filter((n) => n.type === "email").map((n) => n.value),
    upns: items.filter((n) => n.type === "upn").map((n) => n.value),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    verified,
  };
}

/** Whether a certificate is inside its validity period now. */
export function withinValidity(cert: Pick<ClientCertificate, "notBefore" | "notAfter">, now = new Date()): boolean {
  return cert.notBefore.getTime() <= now.getTime() && now.getTime() <= cert.notAfter.getTime();
}

/** The configured mappings from client certificate names to principals. */
export class CertificatePrincipals {
  private readonly byUri = new Map<string, Principal>();
  private readonly byDns = new Map<string, Principal>();

  constructor(mappings: readonly MtlsPrincipalConfig[]) {
    for (const m of mappings) {
      const key = m.uri ?? m.dns!.toLowerCase();
      const principal: Principal = { kind: "service", tenant: m.tenant, subject: m.subject ?? key, scopes: new Set(m.scopes) };
      (m.uri !== undefined ? this.byUri : this.byDns).set(key, principal);
    }
  }

  /** The principal of a verified certificate; URI names are tried before DNS names. */
  principalOf(cert: ClientCertificate): Principal | undefined {
    if (!cert.verified) return undefined;
    for (const u of cert.uris) {
      const p = this.byUri.get(u);
      if (p) return p;
    }
    for (const d of cert.dnsNames) {
      const p = this.byDns.get(d);
      if (p) return p;
    }
    return undefined;
  }

  /**
   * Authenticates a `/service/api` request on the mTLS port that carries no access token: the
   * certificate is the credential. (A request with a token is the bearer verifier's: the token
   * must then be bound to this certificate.)
   */
  authenticate(cert: ClientCertificate | undefined): Principal {
    if (!cert) throw new AppError("unauthenticated", "a client certificate is required");
    const p = this.principalOf(cert);
    if (!p) throw new AppError("forbidden", "the client certificate is not allowed on this service");
    return p;
  }
}
