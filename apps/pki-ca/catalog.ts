/** What pki-ca tells its users about itself: the issuing CAs and the profiles in force (the API and the console show the same). */
import type { PkiCa } from "./domain.ts";

export function issuingCaViews(c: PkiCa) {
  return [...c.hierarchy.issuing.values()].map((i) => ({
    id: i.id,
    key_type: i.keyType,
    subject: i.cert.subject,
    not_after: i.cert.notAfter.toISOString(),
    chain_pem_url: `${c.config.base_url}/pki/ca/${i.id}.pem`,
    crl_url: c.crlUrl(i.id),
    ocsp_url: c.ocspUrl(),
  }));
}

export function profileViews(c: PkiCa) {
  return Object.entries(c.config.profiles)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, p]) => ({
      name,
      issuing_ca: p.issuing_ca,
      key_types: p.key_types,
      max_validity_days: p.max_validity_days,
      default_validity_days: p.default_validity_days,
      key_usage: p.key_usage,
      extended_key_usage: p.extended_key_usage,
      dns_allow: p.dns.allow,
      ip_ranges: p.ip_ranges,
      email_domains: p.email_domains,
      upn_domains: p.upn_domains,
      uri_allow: p.uri.allow,
      approval: p.approval,
    }));
}
