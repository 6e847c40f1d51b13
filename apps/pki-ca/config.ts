/**
 * pki-ca's `app` config section: which issuing CAs exist, where relying parties
 * fetch revocation data, and the certificate profiles. Validated with valibot at
 * start; a bad value stops the start with `config_invalid` naming the key.
 */
import * as v from "valibot";
import { WebhookSchema } from "./webhooks.ts";
import { AppError } from "../../src/service/errors.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { CA_KEY_TYPES, SUBJECT_KEY_TYPES } from "../../src/pki/signing.ts";

export const KEY_USAGES = ["digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment", "keyAgreement"] as const;
export const EXTENDED_KEY_USAGES = ["serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping"] as const;

const dnsPattern = v.pipe(v.string(), v.toLowerCase(), v.regex(/^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/, "a DNS name, optionally starting with *."));
const cidr = v.pipe(v.string(), v.regex(/^[0-9a-fA-F:.]+\/\d{1,3}$/, "an IP range in CIDR form"));
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
  ocsp_validity_minutes: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(7 * 24 * 60)), 60),
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
    }),
  ),
  /** Signed POSTs on request and certificate state changes and expiry notices. */
  webhooks: v.optional(v.array(WebhookSchema), []),
  /** Delays before each retry of a failed webhook delivery. */
  webhook_retry_seconds: v.optional(v.pipe(v.array(v.pipe(v.number(), v.minValue(0.01), v.maxValue(3600))), v.maxLength(10)), [1, 4, 16]),
  /** How often valid certificates are checked for the 90/30/7-day expiry notices. */
  expiry_check_minutes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(24 * 60)), 60),
  profiles: v.optional(v.record(v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/)), ProfileSchema), {}),
});

export type Profile = v.InferOutput<typeof ProfileSchema>;
export type PkiCaConfig = v.InferOutput<typeof PkiCaConfigSchema> & { base_url: string };

/** Validates the `app` section and resolves defaults; throws `config_invalid` naming the key. */
export function parsePkiCaConfig(config: ServiceConfig): PkiCaConfig {
  const r = v.safeParse(PkiCaConfigSchema, config.app ?? {});
  if (!r.success) {
    const issue = r.issues[0];
    const key = ["app", ...(issue.path?.map((p) => String(p.key)) ?? [])].join(".");
    throw new AppError("config_invalid", `${key}: ${issue.message}`);
  }
  const out = r.output;
  for (const [name, p] of Object.entries(out.profiles)) {
    if (!out.issuing_cas.includes(p.issuing_ca)) throw new AppError("config_invalid", `app.profiles.${name}.issuing_ca: no issuing CA of type ${p.issuing_ca} is configured`);
    if (p.default_validity_days > p.max_validity_days) throw new AppError("config_invalid", `app.profiles.${name}.default_validity_days: exceeds max_validity_days`);
  }
  const base = (out.base_url ?? config.server.public_url ?? `https://localhost:${config.server.port || 8443}`).replace(/\/+$/, "");
  return { ...out, base_url: base };
}
