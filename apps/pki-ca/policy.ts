/**
 * Certificate policy: decides whether a CSR may be issued under a profile, and
 * lints the exact certificate parameters before the CA signs them.
 *
 * Guarantees: a request passes only when every name (CN, DNS, IP, email) is
 * allowed by the profile and none is denied (deny wins), the key type is allowed
 * (RSA below 2048 bits never), and the validity is within the cap. A URI SAN passes only
 * when it is printable ASCII without userinfo or fragment and matches one of the profile's
 * `uri.allow` patterns (scheme and host compared case-insensitively, the path glob exactly). A UPN
 * (SAN otherName, Microsoft's smart-card logon name) passes only when it is `name@domain` with
 * the domain, compared case-insensitively, in the profile's `upn_domains`.
 * The CSR's requested extensions are checked against the profile's required and forbidden
 * lists (by OID). Every reason is reported, not only the first. Lint enforces RFC 5280 rules the
 * issuance code could get wrong: serial positive 1..20 octets, notBefore <
 * notAfter within the cap, SAN present, no CA flag, key usage fits the key.
 */
import type { ParsedCsr } from "../../src/pki/csr.ts";
import * as x509 from "../../src/pki/x509.ts";
import type { Profile } from "./config.ts";
import { ipBytes, ipInRange } from "../../src/net/addresses.ts";

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

// IP parsing and ranges are the suite's (src/net), shared with outbound address checks.
export { ipBytes, ipInRange };

/** Well-known extension names accepted in `required_extensions` / `forbidden_extensions`. */
export const EXTENSION_OIDS: Record<string, string> = {
  subjectDirectoryAttributes: "2.5.29.9",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  issuerAltName: "2.5.29.18",
  basicConstraints: "2.5.29.19",
  nameConstraints: "2.5.29.30",
  crlDistributionPoints: "2.5.29.31",
  certificatePolicies: "2.5.29.32",
  policyMappings: "2.5.29.33",
  authorityKeyIdentifier: "2.5.29.35",
  policyConstraints: "2.5.29.36",
  extendedKeyUsage: "2.5.29.37",
  freshestCRL: "2.5.29.46",
  inhibitAnyPolicy: "2.5.29.54",
  authorityInfoAccess: "1.3.6.1.5.5.7.1.1",
  subjectInfoAccess: "1.3.6.1.5.5.7.1.11",
  tlsFeature: "1.3.6.1.5.5.7.1.24",
  ocspNoCheck: "1.3.6.1.5.5.7.48.1.5",
  ctPrecertificatePoison: "1.3.6.1.4.1.11129.2.4.3",
};
/** A forbidden-list entry that refuses only basicConstraints with cA TRUE (CA:FALSE passes). */
export const CA_TRUE = "basicConstraints:CA";
const OID = /^[0-2](\.(0|[1-9]\d*)){1,30}$/;

/** The OID an extension reference (name, dotted OID, or `basicConstraints:CA`) names; undefined when unknown. */
export function extensionOid(ref: string): string | undefined {
  if (ref === CA_TRUE) return EXTENSION_OIDS.basicConstraints;
  return EXTENSION_OIDS[ref] ?? (OID.test(ref) ? ref : undefined);
}

const URI = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)([^#]*)$/i;
const HOST = /^([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** A URI split for matching: lowercase scheme and host, port (or ""), and the rest (path and query). */
function splitUri(u: string): { scheme: string; host: string; port: string; rest: string } | undefined {
  const m = URI.exec(u);
  if (!m) return undefined;
  const hp = /^([^:]*)(?::(\d{1,5}))?$/.exec(m[2]!);
  if (!hp) return undefined;
  return { scheme: m[1]!.toLowerCase(), host: hp[1]!.toLowerCase(), port: hp[2] ?? "", rest: m[3]! };
}

/**
 * Why a URI SAN value cannot be certified, or undefined: an IA5String of printable ASCII,
 * `scheme://host[:port][path]` with a DNS-name or IPv4 host, no userinfo, no fragment.
 */
export function uriProblem(u: string): string | undefined {
  if (u.length > 2048) return "longer than 2048 characters";
  if (!/^[!-~]+$/.test(u)) return "not printable ASCII without spaces";
  if (u.includes("#")) return "carries a fragment";
  const m = URI.exec(u);
  if (!m) return "not of the form scheme://host/path";
  if (m[2]!.includes("@")) return "carries userinfo";
  const parts = splitUri(u);
  if (!parts || !HOST.test(parts.host)) return "has no valid host name";
  return undefined;
}

const UPN_DOMAIN = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * Why a User Principal Name cannot be certified, or undefined: `name@domain`, one `@`, a name of
 * 1..128 characters without spaces, controls or other invisible characters, a DNS domain.
 */
export function upnProblem(u: string): string | undefined {
  if (u.length > 256) return "longer than 256 characters";
  const at = u.indexOf("@");
  if (at < 1 || at !== u.lastIndexOf("@")) return "not of the form name@domain";
  const name = u.slice(0, at);
  if ([...name].length > 128 || !/^[^\s\p{C}]+$/u.test(name)) return "a name with spaces, control characters or more than 128 characters";
  if (!UPN_DOMAIN.test(u.slice(at + 1))) return "not in a valid DNS domain";
  return undefined;
}

const globCache = new Map<string, RegExp>();
/** `*` in a pattern's path matches any run of characters (including `/`); everything else is literal. */
function pathGlob(glob: string): RegExp {
  let re = globCache.get(glob);
  if (!re) {
    re = new RegExp(`^${glob.split("*").map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`, "s");
    if (globCache.size < 1000) globCache.set(glob, re);
  }
  return re;
}

/**
 * True when a (valid) URI falls under a pattern such as `spiffe://example.org/*` or
 * `https://*.example.com/*`: same scheme, host equal or under a `*.` wildcard, same port,
 * and the rest matching the path glob (a pattern without a path admits only "" or "/").
 */
export function uriMatches(pattern: string, uri: string): boolean {
  const p = splitUri(pattern);
  const u = splitUri(uri);
  if (!p || !u || p.scheme !== u.scheme || p.port !== u.port || !dnsMatches(p.host, u.host)) return false;
  if (p.rest === "") return u.rest === "" || u.rest === "/";
  return pathGlob(p.rest).test(u.rest);
}

/** Reasons the CSR's requested extensions break the profile's required and forbidden lists. */
export function extensionReasons(profile: Profile, p: ParsedCsr): Reason[] {
  const out: Reason[] = [];
  const has = (oid: string) => p.extensions.find((e) => e.oid === oid);
  for (const ref of profile.required_extensions) {
    const oid = extensionOid(ref)!;
    if (!has(oid)) out.push({ code: "extension_required", message: `the request must ask for extension ${ref}${ref === oid ? "" : ` (${oid})`}` });
  }
  for (const ref of profile.forbidden_extensions) {
    const oid = extensionOid(ref)!;
    const e = has(oid);
    if (!e) continue;
    if (ref === CA_TRUE) {
      let ca: boolean;
      try {
        ca = new x509.BasicConstraintsExtension(e.der.slice().buffer as ArrayBuffer).ca;
      } catch {
        out.push({ code: "extension_invalid", message: "the requested basicConstraints extension cannot be read" });
        continue;
      }
      if (ca) out.push({ code: "extension_forbidden", message: "the request asks for basicConstraints CA:TRUE, which this profile forbids" });
    } else {
      out.push({ code: "extension_forbidden", message: `the request asks for extension ${ref}${ref === oid ? "" : ` (${oid})`}, which this profile forbids` });
    }
  }
  return out;
}

/** The names a certificate for this CSR would carry: its SANs, plus a DNS-like CN when not already listed. */
export function effectiveDnsNames(p: ParsedCsr): string[] {
  const dns = [...p.dns];
  const cn = p.commonName?.toLowerCase();
  if (cn && DNS_NAME.test(cn) && cn.includes(".") && !dns.includes(cn)) dns.push(cn);
  return dns;
}

/**
 * The reasons the profile refuses these DNS names and IP addresses (ACME checks an order's
 * identifiers with it before any validation; `evaluate` checks a CSR's names the same way).
 */
export function nameReasons(profile: Profile, dns: string[], ips: string[]): Reason[] {
  const reasons: Reason[] = [];
  for (const name of dns) {
    if (!DNS_NAME.test(name)) reasons.push({ code: "dns_invalid", message: `${name} is not a valid DNS name` });
    else if (profile.dns.deny.some((d) => dnsMatches(d, name) || (name.startsWith("*.") && dnsMatches(d, name.slice(2))))) reasons.push({ code: "dns_denied", message: `${name} is denied by the profile` });
    else if (!profile.dns.allow.some((a) => dnsMatches(a, name))) reasons.push({ code: "dns_not_allowed", message: `${name} is not in the profile's allowed names` });
  }
  for (const ip of ips) if (!profile.ip_ranges.some((r) => ipInRange(r, ip))) reasons.push({ code: "ip_not_allowed", message: `${ip} is outside the profile's IP ranges` });
  return reasons;
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
  if (cn !== undefined && !dns.includes(cn.toLowerCase()) && !p.emails.includes(cn) && !p.upns.includes(cn) && !p.ips.includes(cn) && cn.length > 64) {
    reasons.push({ code: "subject_invalid", message: "the common name is longer than 64 characters" });
  }
  reasons.push(...nameReasons(profile, dns, p.ips));
  for (const e of p.emails) {
    const domain = e.split("@")[1]?.toLowerCase();
    // rfc822Name is an IA5String: printable ASCII only.
    if (!/^[!-~]+@[!-~]+$/.test(e)) reasons.push({ code: "email_invalid", message: `${e} is not an ASCII email address` });
    else if (!domain || !profile.email_domains.includes(domain)) reasons.push({ code: "email_not_allowed", message: `${e} is not in an allowed email domain` });
  }
  for (const u of p.uris) {
    const problem = uriProblem(u);
    if (problem) reasons.push({ code: "uri_invalid", message: `URI SAN ${JSON.stringify(u.slice(0, 200))} is ${problem}` });
    else if (!profile.uri.allow.some((a) => uriMatches(a, u))) reasons.push({ code: "uri_not_allowed", message: `URI SAN ${u} matches none of the profile's URI patterns` });
  }
  for (const u of p.upns) {
    const problem = upnProblem(u);
    if (problem) reasons.push({ code: "upn_invalid", message: `UPN ${JSON.stringify(u.slice(0, 200))} is ${problem}` });
    else if (!profile.upn_domains.includes(u.slice(u.lastIndexOf("@") + 1).toLowerCase())) reasons.push({ code: "upn_not_allowed", message: `UPN ${u} is not in an allowed UPN domain` });
  }
  if (dns.length + p.ips.length + p.emails.length + p.uris.length + p.upns.length === 0) reasons.push({ code: "san_missing", message: "the request names no DNS name, IP address, email address, URI or UPN" });
  reasons.push(...extensionReasons(profile, p));
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
