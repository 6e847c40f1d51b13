/**
 * Subject alternative names for a service's TLS leaf.
 *
 * Guarantees: every DNS name is checked against RFC 1123 host syntax (no
 * wildcards) and lowercased; every IP is parsed and put in canonical form, so two
 * spellings of one address compare equal. Bad input gives AppError("config_invalid").
 */
import { AppError } from "../service/errors.ts";

/** The names a leaf certificate is valid for. */
export interface SubjectAltNames {
  dnsNames: string[];
  ipAddresses: string[];
  /** URI names, e.g. a service's SPIFFE ID `spiffe://cryptoutil/sm-kms` (client certificates). */
  uris?: string[];
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Lowercased DNS name, or AppError("config_invalid"). */
export function normalizeDnsName(name: string): string {
  const n = name.trim().toLowerCase().replace(/\.$/, "");
  if (n.length === 0 || n.length > 253 || !n.split(".").every((l) => LABEL.test(l))) {
    throw new AppError("config_invalid", `tls: "${name}" is not a valid DNS host name`);
  }
  return n;
}

/** Canonical text of an IPv4 or IPv6 address, or undefined when `ip` is not one. */
export function canonicalIp(ip: string): string | undefined {
  const s = ip.trim();
  if (IPV4.test(s)) return s;
  if (!s.includes(":") || s.includes("%")) return undefined;
  try {
    // The WHATWG URL parser implements RFC 5952 canonical IPv6 text.
    const host = new URL(`http://[${s}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return undefined;
  }
}

/** Canonical IP, or AppError("config_invalid"). */
export function normalizeIp(ip: string): string {
  const c = canonicalIp(ip);
  if (c === undefined) throw new AppError("config_invalid", `tls: "${ip}" is not a valid IP address`);
  return c;
}

const URI_NAME = /^[a-z][a-z0-9+.-]*:\/\/[!-~]{1,2000}$/;

/** A URI name as written in a certificate: absolute, printable ASCII, no spaces. */
export function normalizeUri(uri: string): string {
  if (!URI_NAME.test(uri)) throw new AppError("config_invalid", `tls: "${uri}" is not a valid URI name`);
  return uri;
}

/** Sorted, de-duplicated, validated copy of `sans` (`uris` only when there are some). */
export function normalizeSans(sans: SubjectAltNames): SubjectAltNames {
  const dns = [...new Set(sans.dnsNames.map(normalizeDnsName))].sort();
  const ips = [...new Set(sans.ipAddresses.map(normalizeIp))].sort();
  const uris = [...new Set((sans.uris ?? []).map(normalizeUri))].sort();
  if (dns.length + ips.length + uris.length === 0) {
    throw new AppError("config_invalid", "tls: a leaf certificate needs at least one DNS name, IP address or URI");
  }
  return uris.length > 0 ? { dnsNames: dns, ipAddresses: ips, uris } : { dnsNames: dns, ipAddresses: ips };
}

/** True when both sets of names are the same after normalization. */
export function sameSans(a: SubjectAltNames, b: SubjectAltNames): boolean {
  const x = normalizeSans(a);
  const y = normalizeSans(b);
  return (
    x.dnsNames.join(",") === y.dnsNames.join(",") &&
    x.ipAddresses.join(",") === y.ipAddresses.join(",") &&
    (x.uris ?? []).join(",") === (y.uris ?? []).join(",")
  );
}

const LOOPBACK: SubjectAltNames = { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] };

function isLoopbackOrWildcard(ip: string): boolean {
  return ip.startsWith("127.") || ip === "::1" || ip === "0.0.0.0" || ip === "::";
}

/**
 * The SANs a service's servers need, from their bind addresses and configured host names:
 * loopback names when a server listens on loopback (or on every interface, which includes it),
 * the bind address itself when it is a concrete IP, and every configured host name or IP.
 *
 * @example
 *   serverSans({ bindAddresses: ["0.0.0.0", "127.0.0.1"], hostnames: ["kms.example.org"] })
 *   // { dnsNames: ["kms.example.org", "localhost"], ipAddresses: ["127.0.0.1", "::1"] }
 */
export function serverSans(opts: { bindAddresses: string[]; hostnames?: string[] }): SubjectAltNames {
  const dns: string[] = [];
  const ips: string[] = [];
  // Configured "host names" may also be IP addresses (e.g. a node's external IP): sort them out.
  for (const h of opts.hostnames ?? []) {
    const ip = canonicalIp(h.trim().replace(/^\[(.*)\]$/, "$1"));
    if (ip === undefined) dns.push(h);
    else ips.push(ip);
  }
  for (const bind of opts.bindAddresses) {
    const b = bind.trim().replace(/^\[(.*)\]$/, "$1");
    const ip = canonicalIp(b);
    if (ip === undefined) {
      // A host name as bind address: "localhost" means loopback, anything else is served under that name.
      const name = normalizeDnsName(b);
      if (name === "localhost") dns.push(...LOOPBACK.dnsNames), ips.push(...LOOPBACK.ipAddresses);
      else dns.push(name);
      continue;
    }
    if (isLoopbackOrWildcard(ip)) dns.push(...LOOPBACK.dnsNames), ips.push(...LOOPBACK.ipAddresses);
    if (ip !== "0.0.0.0" && ip !== "::") ips.push(ip);
  }
  return normalizeSans({ dnsNames: dns, ipAddresses: ips });
}
