/**
 * RFC 8705 client authentication by TLS certificate, on the mTLS endpoints only.
 *
 * `tls_client_auth` (PKI method, §2.1): the certificate chained to the listener's CA in the
 * handshake, and carries the one name the client registered: its subject DN (compared as
 * DER after parsing both, so spacing and case of attribute names do not matter) or a DNS,
 * URI, IP address or email SAN (exact; DNS in lower case).
 * `self_signed_tls_client_auth` (§2.2): any certificate (the handshake proved the client holds
 * its key) whose public key is one of the client's registered JWKs, compared by RFC 7638
 * thumbprint.
 */
import { X509Certificate } from "node:crypto";
import { calculateJwkThumbprint, type JWK } from "jose";
import * as x509 from "../../../src/pki/x509.ts";
import type { ClientCertificate } from "../../../src/auth/client-cert.ts";
import type { RegisteredClient } from "./registry.ts";

/** `type=value` pairs joined by `,` or `+` (RFC 4514), values with backslash escapes. */
const ATTR = String.raw`\s*(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)+)\s*=(?:\\.|[^,+\\])*`;
const RFC4514 = new RegExp(`^${ATTR}(?:[,+]${ATTR})*$`);

/** The DER of a distinguished name in RFC 4514 form, or null when it does not parse (the parser itself accepts anything). */
function dnDer(dn: string): Buffer | null {
  if (!RFC4514.test(dn)) return null;
  try {
    const der = Buffer.from(new x509.Name(dn).toArrayBuffer());
    return der.length > 2 ? der : null;
  } catch {
    return null;
  }
}

export const subjectDnParses = (dn: string) => dnDer(dn) !== null;

/** Whether a certificate that chained to the CA carries the name a tls_client_auth client registered. */
export function matchesTlsClientAuth(c: RegisteredClient, cert: ClientCertificate): boolean {
  if (!cert.verified) return false;
  if (c.tls_client_auth_subject_dn) {
    const want = dnDer(c.tls_client_auth_subject_dn);
    const got = Buffer.from(new x509.X509Certificate(cert.der as Uint8Array<ArrayBuffer>).subjectName.toArrayBuffer());
    return want !== null && want.equals(got);
  }
  if (c.tls_client_auth_san_dns) return cert.dnsNames.includes(c.tls_client_auth_san_dns.toLowerCase());
  if (c.tls_client_auth_san_uri) return cert.uris.includes(c.tls_client_auth_san_uri);
  if (c.tls_client_auth_san_ip) return cert.ipAddresses.includes(c.tls_client_auth_san_ip);
  if (c.tls_client_auth_san_email) return cert.emails.includes(c.tls_client_auth_san_email);
  return false;
}

/** The RFC 7638 SHA-256 thumbprint of a certificate's public key. */
export async function certificateKeyThumbprint(cert: ClientCertificate): Promise<string> {
  const jwk = new X509Certificate(cert.der).publicKey.export({ format: "jwk" }) as JWK;
  return calculateJwkThumbprint(jwk, "sha256");
}

/** Whether one of `keys` is the certificate's public key. */
export async function holdsRegisteredKey(cert: ClientCertificate, keys: readonly JWK[]): Promise<boolean> {
  const want = await certificateKeyThumbprint(cert);
  for (const k of keys) {
    try {
      if ((await calculateJwkThumbprint(k, "sha256")) === want) return true;
    } catch {
      // a registered key of a type without a thumbprint here: not this certificate's
    }
  }
  return false;
}
