/**
 * Certificate policy: decides whether a CSR may be issued under a profile, and
 * lints the exact certificate parameters before the CA signs them.
 *
 * Guarantees: a request passes only when every name (CN, DNS, IP, email) is
 * allowed by the profile and none is denied (deny wins), the key type is allowed
 * (RSA below 2048 bits never), and the validity is within the cap. URI SANs are
 * refused (no profile rule admits them yet). Lint enforces RFC 5280 rules the
 * issuance code could get wrong: serial positive 1..20 octets, notBefore <
 * notAfter within the cap, SAN present, no CA flag, key usage fits the key.
 */
import type { ParsedCsr } from "../../src/pki/csr.ts";
import type { Profile } from "./config.ts";

export interface Reason {
  code: string;
  message: string;
}

const DNS_NAME = /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** True when `name` (possibly a wildcard) falls under `pattern` ("example.com" exact, "*.example.com" any subdomain). */
export function dnsMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith("*.")) return name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1;
  return name === pattern;
}

/** Parses an IPv4 or IPv6 address to 4 or 16 bytes, or undefined. */
export function ipBytes(ip: string): Uint8Array | undefined {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(ip)) {
    const parts = ip.split(".").map(Number);
    return parts.every((p) => p <= 255) ? new Uint8Array(parts) : undefined;
  }
  if (!/^[0-9a-fA-F:.]+$/.test(ip) || ip.split("::").length > 2) return undefined;
  let [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const parse = (s: string | undefined) => (s ? s.split(":") : []);
  let h = parse(head);
  let t = parse(tail);
  const v4 = (arr: string[]) => {
    const last = arr[arr.length - 1];
    if (last?.includes(".")) {
      const b = ipBytes(last);
      if (!b || b.length !== 4) return undefined;
      arr.splice(arr.length - 1, 1, ((b[0]! << 8) | b[1]!).toString(16), ((b[2]! << 8) | b[3]!).toString(16));
    }
    return arr;
  };
  if (tail === undefined) h = v4(h) ?? [];
  else t = v4(t) ?? [];
  const groups = tail === undefined ? h : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  if (groups.length !== 8 || (tail !== undefined && h.length + t.length > 7)) return undefined;
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(groups[i]!)) return undefined;
    const n = parseInt(groups[i]!, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  }
  return out;
}

/** True when `ip` lies in the CIDR range. */
export function ipInRange(range: string, ip: string): boolean {
  const [base, bitsText] = range.split("/");
  const a = ipBytes(base!);
  const b = ipBytes(ip);
  const bits = Number(bitsText);
  if (!a || !b || a.length !== b.length || bits > a.length * 8) return false;
  for (let i = 0; i < bits; i++) {
    const mask = 0x80 >> i % 8;
    if ((a[i >> 3]! & mask) !== (b[i >> 3]! & mask)) return false;
  }
  return true;
}

/** The names a certificate for this CSR would carry: its SANs, plus a DNS-like CN when not already listed. */
export function effectiveDnsNames(p: ParsedCsr): string[] {
  const dns = [...p.dns];
  const cn = p.commonName?.toLowerCase();
  if (cn && DNS_NAME.test(cn) && cn.includes(".") && !dns.includes(cn)) dns.push(cn);
  return dns;
}

/** Every reason the profile refuses this request; empty when it may be issued. */
export function evaluate(profile: Profile, p: ParsedCsr, validityDays: number): Reason[] {
  const reasons: Reason[] = [];
  const rsa = /^RSA-(\d+)$/.exec(p.keyType);
  if (rsa && Number(rsa[1]) < 2048) reasons.push({ code: "weak_key", message: `${p.keyType} is too weak; RSA keys need at least 2048 bits` });
  else if (!(profile.key_types as string[]).includes(p.keyType)) reasons.push({ code: "key_type_not_allowed", message: `key type ${p.keyType} is not allowed by this profile` });
  if (validityDays > profile.max_validity_days) reasons.push({ code: "validity_too_long", message: `validity of ${validityDays} days exceeds the profile's ${profile.max_validity_days}` });

  const dns = effectiveDnsNames(p);
  const cn = p.commonName;
  if (cn !== undefined && !dns.includes(cn.toLowerCase()) && !p.emails.includes(cn) && !p.ips.includes(cn) && cn.length > 64) {
    reasons.push({ code: "subject_invalid", message: "the common name is longer than 64 characters" });
  }
  for (const name of dns) {
    if (!DNS_NAME.test(name)) reasons.push({ code: "dns_invalid", message: `${name} is not a valid DNS name` });
    else if (profile.dns.deny.some((d) => dnsMatches(d, name) || (name.startsWith("*.") && dnsMatches(d, name.slice(2))))) reasons.push({ code: "dns_denied", message: `${name} is denied by the profile` });
    else if (!profile.dns.allow.some((a) => dnsMatches(a, name))) reasons.push({ code: "dns_not_allowed", message: `${name} is not in the profile's allowed names` });
  }
  for (const ip of p.ips) if (!profile.ip_ranges.some((r) => ipInRange(r, ip))) reasons.push({ code: "ip_not_allowed", message: `${ip} is outside the profile's IP ranges` });
  for (const e of p.emails) {
    const domain = e.split("@")[1]?.toLowerCase();
    // rfc822Name is an IA5String: printable ASCII only.
    if (!/^[!-~]+@[!-~]+$/.test(e)) reasons.push({ code: "email_invalid", message: `${e} is not an ASCII email address` });
    else if (!domain || !profile.email_domains.includes(domain)) reasons.push({ code: "email_not_allowed", message: `${e} is not in an allowed email domain` });
  }
  for (const u of p.uris) reasons.push({ code: "uri_not_allowed", message: `URI SAN ${u} is not allowed by this profile` });
  if (dns.length + p.ips.length + p.emails.length === 0) reasons.push({ code: "san_missing", message: "the request names no DNS name, IP address or email address" });
  return reasons;
}

/** The parameters about to be signed, as the linter sees them. */
export interface TbsSummary {
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
  maxValidityDays: number;
  sanCount: number;
  commonName?: string;
  isCa: boolean;
  keyType: string;
  keyUsage: string[];
}

/** RFC 5280 lint of the certificate about to be signed; returns the violations. */
export function lint(t: TbsSummary): Reason[] {
  const out: Reason[] = [];
  const octets = t.serialHex.length / 2;
  if (!/^[0-9a-f]+$/.test(t.serialHex) || t.serialHex.length % 2 !== 0) out.push({ code: "lint_serial", message: "serial is not whole octets of hex" });
  else if (octets < 1 || octets > 20) out.push({ code: "lint_serial", message: "serial must be 1..20 octets" });
  else if (parseInt(t.serialHex.slice(0, 2), 16) & 0x80) out.push({ code: "lint_serial", message: "serial must be positive" });
  else if (/^0+$/.test(t.serialHex)) out.push({ code: "lint_serial", message: "serial must be non-zero" });
  if (!(t.notBefore < t.notAfter)) out.push({ code: "lint_validity", message: "notBefore must precede notAfter" });
  if (t.notAfter.getTime() - t.notBefore.getTime() > (t.maxValidityDays + 1) * 86_400_000) out.push({ code: "lint_validity", message: "validity exceeds the profile cap" });
  if (t.sanCount === 0) out.push({ code: "lint_san", message: "a leaf certificate must carry a subjectAltName" });
  if (t.commonName && DNS_NAME.test(t.commonName.toLowerCase()) && t.commonName.includes(".") && t.sanCount === 0) out.push({ code: "lint_san", message: "CN is a DNS name but no SAN is present" });
  if (t.isCa) out.push({ code: "lint_ca_flag", message: "leaf certificates must not be CAs" });
  const rsa = t.keyType.startsWith("RSA-");
  if (!rsa && (t.keyUsage.includes("keyEncipherment") || t.keyUsage.includes("dataEncipherment"))) out.push({ code: "lint_key_usage", message: `${t.keyType} keys cannot encipher` });
  if ((rsa || t.keyType === "Ed25519") && t.keyUsage.includes("keyAgreement")) out.push({ code: "lint_key_usage", message: `${t.keyType} keys cannot do key agreement` });
  if (t.keyUsage.length === 0) out.push({ code: "lint_key_usage", message: "key usage is empty" });
  return out;
}

/** The profile's key usages that fit the key type (encipherment for RSA, agreement for EC). */
export function keyUsageFor(profile: Profile, keyType: string): string[] {
  const rsa = keyType.startsWith("RSA-");
  const ec = /^P-\d+$/.test(keyType);
  return profile.key_usage.filter((u) => (u === "keyEncipherment" || u === "dataEncipherment" ? rsa : u === "keyAgreement" ? ec : true));
}
