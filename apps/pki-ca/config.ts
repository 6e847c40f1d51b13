/**
 * pki-ca's `app` config section: which issuing CAs exist, where relying parties
 * fetch revocation data, and the certificate profiles. Validated with valibot at
 * start; a bad value stops the start with `config_invalid` naming the key.
 */
import * as v from "valibot";
import { WebhookSchema } from "./webhooks.ts";
import { EmailChannelSchema, SlackChannelSchema } from "../../src/notify/channels.ts";
import { AppError } from "../../src/service/errors.ts";
import { isDevelopment, serverUrl, type ServiceConfig } from "../../src/service/config.ts";
import { CA_KEY_TYPES, SUBJECT_KEY_TYPES } from "../../src/pki/signing.ts";
import { CA_TRUE, extensionOid } from "./policy.ts";
import { AcmeConfigSchema, developmentAcme } from "./acme/config.ts";
import { EstConfigSchema, developmentEst } from "./est/config.ts";
import { ScepConfigSchema, developmentScep } from "./scep/config.ts";
import { CmpConfigSchema, developmentCmp } from "./cmp/config.ts";
import { CmcConfigSchema, developmentCmc } from "./cmc/config.ts";

export const KEY_USAGES = ["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement"] as const;
export const EXTENDED_KEY_USAGES = ["serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping"] as const;

const dnsPattern = v.pipe(v.string(), v.toLowerCase(), v.regex(/^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/, "a DNS name, optionally starting with *."));
const cidr = v.pipe(v.string(), v.regex(/^[0-9a-fA-F:.]+\/\d{1,3}$/, "an IP range in CIDR form"));
/** scheme://host[:port][/path]: host exact or `*.domain`, `*` in the path matches anything. */
const uriPattern = v.pipe(
  v.string(),
  v.maxLength(512),
  v.regex(/^[a-z][a-z0-9+.-]*:\/\/(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?(:\d{1,5})?(\/[!-~]*)?$/i, "a URI pattern scheme://host[:port][/path], host optionally *.domain, path may use *"),
  v.check((s) => !s.includes("#") && !s.includes("?"), "a URI pattern without query or fragment"),
);
/** An extension by well-known name (see policy.ts EXTENSION_OIDS) or dotted OID. */
const extensionRef = v.pipe(v.string(), v.check((s) => extensionOid(s) !== undefined, "a known extension name (e.g. subjectAltName, nameConstraints, basicConstraints:CA) or a dotted OID"));
const domain = v.pipe(v.string(), v.toLowerCase(), v.regex(/^([a-z0-9-]+\.)+[a-z0-9-]+$/, "a domain name"));

export const ProfileSchema = v.strictObject({
  /** The issuing CA (by key type) that signs certificates of this profile. */
  issuing_ca: v.picklist(CA_KEY_TYPES),
  /** Subject key types a CSR may carry. RSA below 2048 bits is never allowed. */
  key_types: v.pipe(v.array(v.picklist(SUBJECT_KEY_TYPES)), v.minLength(1)),
  max_validity_days: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(825)),
  default_validity_days: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(825)),
  key_usage: v.pipe(v.array(v.picklist(KEY_USAGES)), v.minLength(1)),
  extended_key_usage: v.array(v.picklist(EXTENDED_KEY_USAGES)),
  dns: v.strictObject({ allow: v.array(dnsPattern), deny: v.optional(v.array(dnsPattern), []) }),
  ip_ranges: v.optional(v.array(cidr), []),
  email_domains: v.optional(v.array(domain), []),
  /** Domains of the UPN SANs (otherName `name@domain`, smart-card logon) admitted; none by default. */
  upn_domains: v.optional(v.array(domain), []),
  /** URI SANs admitted by pattern, e.g. `spiffe://example.org/*`; none by default. */
  uri: v.optional(v.strictObject({ allow: v.array(uriPattern) }), { allow: [] }),
  /** Extensions the CSR must request (name or OID). */
  required_extensions: v.optional(v.array(extensionRef), []),
  /** Extensions the CSR must not request; `basicConstraints:CA` refuses only CA:TRUE. */
  forbidden_extensions: v.optional(v.array(extensionRef), []),
  /** auto: issue when the policy passes; manual: queue for a `pki:approve` approver. */
  approval: v.optional(v.picklist(["auto", "manual"]), "auto"),
});

export const PkiCaConfigSchema = v.strictObject({
  /** Base URL written into certificates for the CRL, OCSP and CA issuer URLs (defaults to server.public_url). */
  base_url: v.optional(v.pipe(v.string(), v.url())),
  /**
   * instance: pki-ca creates and holds its own root. external: the root is offline (cli.ts
   * root ceremony); issuing CAs wait for their certificate via the pki:admin /cas routes.
   */
  root: v.optional(v.picklist(["instance", "external"]), "instance"),
  /** One online issuing CA per key type. */
  issuing_cas: v.optional(v.pipe(v.array(v.picklist(CA_KEY_TYPES)), v.minLength(1)), ["P-256"]),
  crl_validity_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(24 * 30)), 24),
  crl_refresh_minutes: v.optional(v.pipe(v.number(), v.minValue(1)), 60),
  /**
   * On revocation, sign a new full CRL (true), or only a new delta CRL (false: cheaper for
   * large CRLs; relying parties that ignore deltas see the revocation at the next full CRL).
   */
  crl_full_on_revoke: v.optional(v.boolean(), true),
  /**
   * CRL shards per issuing CA, fixed when the CA is created (1: one unsharded CRL). Each
   * certificate's CRLDP names shard `serial mod N` (`/pki/crl/<ca>-s<k>.crl`, delta
   * `<ca>-s<k>-delta.crl`), a partitioned CRL with a critical issuingDistributionPoint; the
   * complete CRL `/pki/crl/<ca>.crl` stays available.
   */
  crl_shards: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(256)), 1),
  /** Validity of delegated OCSP responder certificates, and of the TSA certificate. */
  responder_validity_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(5 * 365 * 24)), 365 * 24),
  tsa_validity_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(10 * 365 * 24)), 5 * 365 * 24),
  /** Responder and TSA certificates are renewed when less than this fraction of their validity remains. */
  signer_renewal_fraction: v.optional(v.pipe(v.number(), v.minValue(0.01), v.maxValue(0.9)), 0.25),
  ocsp_validity_minutes: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(7 * 24 * 60)), 60),
  /**
   * How often an instance looks in the database for revocations made by other instances that
   * share it; when there were any, its cached OCSP answers are dropped and re-signed. The most
   * a cached answer of another instance lags a revocation (its own revocations apply at once).
   */
  revocation_check_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(10), v.maxValue(60_000)), 1000),
  /** The TSA policy OID written into every time-stamp token; set your own arc in production. */
  tsa_policy: v.optional(v.pipe(v.string(), v.regex(/^[0-2](\.(0|[1-9]\d*)){1,30}$/, "an OID in dotted form")), "2.999.3161.1"),
  tsa_accuracy_seconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(60)), 1),
  /**
   * A separate read-only plain-HTTP listener for CA certificates, CRLs and OCSP only (relying
   * parties check revocation before they can trust TLS; CA/Browser Forum rules expect http URLs).
   * Off unless configured. Set base_url to its http URL so certificates point at it.
   */
  http_revocation: v.optional(
    v.strictObject({
      bind: v.optional(v.pipe(v.string(), v.minLength(1))),
      port: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(65535)),
      /**
       * Also serve SCEP (`/scep/...`, app.scep's tenants) on this port. SCEP protects its own
       * messages (signed; CSR and challenge enveloped to the RA, the certificate to the client),
       * and clients such as certmonger's scep-submit trust only the system's CA store for
       * PKIOperation over https. This port has no rate limit or IP allowlist: bind it where only
       * the devices reach it.
       */
      scep: v.optional(v.boolean(), false),
    }),
  ),
  /** Signed POSTs on request and certificate state changes and expiry notices. */
  webhooks: v.optional(v.array(WebhookSchema), []),
  /** E-mail notifications of the same events over SMTP (src/notify/channels.ts). */
  email: v.optional(v.array(EmailChannelSchema), []),
  /** Slack-compatible incoming webhooks for the same events. */
  slack: v.optional(v.array(SlackChannelSchema), []),
  /** Delays before each retry of a failed webhook delivery. */
  webhook_retry_seconds: v.optional(v.pipe(v.array(v.pipe(v.number(), v.minValue(0.01), v.maxValue(3600))), v.maxLength(10)), [1, 4, 16]),
  /** How often valid certificates are checked for the 90/30/7-day expiry notices. */
  expiry_check_minutes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(24 * 60)), 60),
  profiles: v.optional(v.record(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/)), ProfileSchema), {}),
  /** RFC 8555 ACME under `/acme/{tenant}/` (see acme/config.ts); off unless a tenant is listed. */
  acme: v.optional(AcmeConfigSchema),
  /** RFC 7030 EST under `/.well-known/est/` (see est/config.ts); off unless a tenant is listed. */
  est: v.optional(EstConfigSchema),
  /** RFC 8894 SCEP under `/scep/` (see scep/config.ts); off unless a tenant is listed. */
  scep: v.optional(ScepConfigSchema),
  /** RFC 9810 CMP under `/.well-known/cmp` (see cmp/config.ts); off unless a tenant is listed. */
  cmp: v.optional(CmpConfigSchema),
  /** RFC 5272-5274 CMC at `/cmc` (see cmc/config.ts); off unless a tenant is listed. */
  cmc: v.optional(CmcConfigSchema),
});

export type Profile = v.InferOutput<typeof ProfileSchema>;

/** Names a development CA issues for: loopback, private and reserved names and ranges, never public ones. */
const DEV_DNS = ["localhost", "*.localhost", "*.test", "*.example", "*.internal", "*.local", "*.home.arpa", "example.com", "*.example.com", "example.org", "*.example.org"];
const DEV_IPS = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fd00::/8"];
const DEV_EMAIL = ["example.com", "example.org"];
const DEV_KEYS = ["P-256", "P-384", "RSA-2048", "RSA-3072", "RSA-4096", "Ed25519"];

/**
 * The profiles of a development CA (no `barrier.unseal_files`, no `app.profiles`): one per
 * common use, each limited to loopback, private and reserved names (RFC 2606, RFC 6761).
 */
export function developmentProfiles(): Record<string, Profile> {
  const base = { issuing_ca: "P-256", key_types: DEV_KEYS, max_validity_days: 397, default_validity_days: 90 };
  const none = { dns: { allow: [] } };
  return v.parse(v.record(v.string(), ProfileSchema), {
    "tls-server": { ...base, ...none, key_usage: ["digitalSignature", "keyEncipherment"], extended_key_usage: ["serverAuth"], dns: { allow: DEV_DNS, deny: [] }, ip_ranges: DEV_IPS },
    "tls-client": { ...base, ...none, key_usage: ["digitalSignature"], extended_key_usage: ["clientAuth"], dns: { allow: DEV_DNS, deny: [] }, ip_ranges: DEV_IPS, email_domains: DEV_EMAIL, upn_domains: DEV_EMAIL, uri: { allow: ["spiffe://*.example.com/*", "spiffe://*.test/*"] } },
    email: { ...base, ...none, key_usage: ["digitalSignature", "keyEncipherment"], extended_key_usage: ["emailProtection"], email_domains: DEV_EMAIL },
    "code-signing": { ...base, ...none, key_usage: ["digitalSignature"], extended_key_usage: ["codeSigning"], email_domains: DEV_EMAIL, uri: { allow: ["https://*.example.com/*", "https://*.example.org/*"] } },
  });
}
export type PkiCaConfig = Omit<v.InferOutput<typeof PkiCaConfigSchema>, "acme" | "est" | "scep" | "cmp" | "cmc"> & {
  base_url: string;
  acme: v.InferOutput<typeof AcmeConfigSchema>;
  est: v.InferOutput<typeof EstConfigSchema>;
  scep: v.InferOutput<typeof ScepConfigSchema>;
  cmp: v.InferOutput<typeof CmpConfigSchema>;
  cmc: v.InferOutput<typeof CmcConfigSchema>;
};

/** Validates the `app` section and resolves defaults; throws `config_invalid` naming the key. */
export function parsePkiCaConfig(config: ServiceConfig): PkiCaConfig {
  const r = v.safeParse(PkiCaConfigSchema, config.app ?? {});
  if (!r.success) {
    const issue = r.issues[0];
    const key = ["app", ...(issue.path?.map((p) => String(p.key)) ?? [])].join(".");
    throw new AppError("config_invalid", `${key}: ${issue.message}`);
  }
  const out = r.output;
  // A development CA (no unseal files) without profiles of its own gets the development set.
  const devProfiles = Object.keys(out.profiles).length === 0 && isDevelopment(config);
  if (devProfiles) out.profiles = developmentProfiles();
  // ... and, without an acme section, ACME for tenant demo on those profiles.
  const acme = out.acme ?? (devProfiles ? developmentAcme() : v.parse(AcmeConfigSchema, {}));
  // ... and, without est and scep sections, EST and SCEP for tenant demo (est/config.ts, scep/config.ts).
  const est = out.est ?? (devProfiles ? developmentEst() : v.parse(EstConfigSchema, {}));
  const scep = out.scep ?? (devProfiles ? developmentScep() : v.parse(ScepConfigSchema, {}));
  const cmp = out.cmp ?? (devProfiles ? developmentCmp() : v.parse(CmpConfigSchema, {}));
  const cmc = out.cmc ?? (devProfiles ? developmentCmc() : v.parse(CmcConfigSchema, {}));
  const lists: Array<[string, Record<string, { profiles: string[] }>]> = [
    ["acme", acme.tenants],
    ["est", est.tenants],
    ["cmp", cmp.tenants],
    ["cmc", cmc.tenants],
    ["scep", Object.fromEntries(Object.entries(scep.tenants).map(([k, t]) => [k, { profiles: Object.keys(t.profiles) }]))],
  ];
  for (const [section, tenants] of lists) {
    for (const [tenant, t] of Object.entries(tenants)) {
      const missing = t.profiles.find((p) => !out.profiles[p]);
      if (missing) throw new AppError("config_invalid", `app.${section}.tenants.${tenant}.profiles: no certificate profile named ${missing}`);
    }
  }
  if (est.default_profile && !Object.values(est.tenants).some((t) => t.profiles.includes(est.default_profile!))) {
    throw new AppError("config_invalid", `app.est.default_profile: ${est.default_profile} is not one of the EST tenants' profiles`);
  }
  if (cmp.default_profile && !Object.values(cmp.tenants).some((t) => t.profiles.includes(cmp.default_profile!))) {
    throw new AppError("config_invalid", `app.cmp.default_profile: ${cmp.default_profile} is not one of the CMP tenants' profiles`);
  }
  for (const [name, p] of Object.entries(out.profiles)) {
    if (!out.issuing_cas.includes(p.issuing_ca)) throw new AppError("config_invalid", `app.profiles.${name}.issuing_ca: no issuing CA of type ${p.issuing_ca} is configured`);
    if (p.default_validity_days > p.max_validity_days) throw new AppError("config_invalid", `app.profiles.${name}.default_validity_days: exceeds max_validity_days`);
    if (p.required_extensions.includes(CA_TRUE)) throw new AppError("config_invalid", `app.profiles.${name}.required_extensions: ${CA_TRUE} can only be forbidden`);
    const forbidden = new Set(p.forbidden_extensions.filter((r) => r !== CA_TRUE).map((r) => extensionOid(r)));
    const both = p.required_extensions.find((r) => forbidden.has(extensionOid(r)));
    if (both) throw new AppError("config_invalid", `app.profiles.${name}.required_extensions: ${both} is also forbidden`);
  }
  const base = (out.base_url ?? config.server.public_url ?? serverUrl(config.server.bind, config.server.port || 8443)).replace(/\/+$/, "");
  return { ...out, base_url: base, acme, est, scep, cmp, cmc };
}
