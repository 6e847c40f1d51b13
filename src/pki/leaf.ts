/**
 * TLS leaf certificates for the services of the suite, issued by the suite CA's
 * intermediate.
 *
 * Guarantees: P-256 key; CN = service name; KU digitalSignature (critical);
 * EKU serverAuth + clientAuth for a server leaf, clientAuth alone for a service's client
 * certificate (mTLS between services, named by a URI SAN); CA:false
 * (critical); SKI/AKI; SANs validated and canonical (sans.ts); validity at most
 * 397 days (CA/Browser Forum limit) and never past the intermediate's notAfter.
 */
import { AppError } from "../service/errors.ts";
import { x509Time } from "./time.ts";
import { ECDSA_SHA256, generateP256 } from "./keys.ts";
import { normalizeSans, type SubjectAltNames } from "./sans.ts";
import { randomSerialHex } from "./serial.ts";
import { BACKDATE_MS, DAY_MS, type SuiteCa } from "./suite-ca.ts";
import * as x509 from "./x509.ts";

/** Longest leaf validity accepted, in days. */
export const MAX_LEAF_VALIDITY_DAYS = 397;

const SERVICE_NAME = /^[a-z][a-z0-9-]{0,62}$/;

/** What a leaf is for: a server (which may also act as a client) or a client only. */
export type LeafUsage = "server" | "client";

/** What `issueLeaf` needs to know about the service. */
export interface LeafRequest extends SubjectAltNames {
  serviceName: string;
  /** Default and maximum 397. */
  validityDays?: number;
  /** "server" (default): serverAuth + clientAuth; "client": clientAuth only. */
  usage?: LeafUsage;
  now?: Date;
}

/** A freshly issued leaf: certificate and its (extractable) key pair. */
export interface IssuedLeaf {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
}

/** Validates a service name (it becomes the CN and part of storage names). */
export function checkServiceName(name: string): string {
  if (!SERVICE_NAME.test(name)) {
    throw new AppError("config_invalid", `tls: "${name}" is not a valid service name (lowercase letters, digits, '-')`);
  }
  return name;
}

/**
 * Issues a TLS server/client leaf for one service from the suite CA's intermediate.
 *
 * @example
 *   const { cert, keys } = await issueLeaf(ca, { serviceName: "jose-ja", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] });
 */
export async function issueLeaf(ca: SuiteCa, req: LeafRequest): Promise<IssuedLeaf> {
  const serviceName = checkServiceName(req.serviceName);
  const sans = normalizeSans(req);
  const days = req.validityDays ?? MAX_LEAF_VALIDITY_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_LEAF_VALIDITY_DAYS) {
    throw new AppError("config_invalid", `tls: leaf validity must be 1..${MAX_LEAF_VALIDITY_DAYS} days, got ${days}`);
  }
  const now = req.now ?? new Date();
  const caEnd = ca.intermediate.cert.notAfter;
  if (caEnd.getTime() <= now.getTime()) {
    throw new AppError("internal", "suite CA intermediate has expired; it must be renewed before leaves can be issued");
  }
  const notAfter = new Date(Math.min(now.getTime() + days * DAY_MS, caEnd.getTime()));

  const keys = await generateP256(true);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerialHex(),
    subject: `CN=${serviceName}, O=cryptoutil`,
    issuer: ca.intermediate.cert.subjectName,
    notBefore: x509Time(now.getTime() - BACKDATE_MS),
    notAfter: x509Time(notAfter),
    publicKey: keys.publicKey,
    signingKey: ca.intermediate.key,
    signingAlgorithm: ECDSA_SHA256,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(
        req.usage === "client" ? [x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      ),
      new x509.SubjectAlternativeNameExtension([
        ...sans.dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...sans.ipAddresses.map((value) => ({ type: "ip" as const, value })),
        ...(sans.uris ?? []).map((value) => ({ type: "url" as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.intermediate.cert.publicKey),
    ],
  });
  return { cert, keys };
}

/** The SANs written in a certificate (DNS names, IPs and URIs), canonical. */
export function sansOf(cert: x509.X509Certificate): SubjectAltNames {
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const items = ext?.names.items ?? [];
  const dnsNames = items.filter((n) => n.type === "dns").map((n) => n.value);
  const ipAddresses = items.filter((n) => n.type === "ip").map((n) => n.value);
  const uris = items.filter((n) => n.type === "url").map((n) => n.value);
  return normalizeSans({ dnsNames, ipAddresses, uris });
}
