/**
 * The `app.acme` config section of pki-ca: which tenants serve ACME (each at
 * `/acme/{tenant}/directory`), the profiles their orders may name, whether they need an
 * External Account Binding, and the validation authority's outbound rules.
 */
import * as v from "valibot";

const httpUrl = v.pipe(v.string(), v.url(), v.regex(/^https?:\/\//, "an http(s) URL"));
const tenantName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a tenant name"));
const profileName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a profile name"));

export const AcmeTenantSchema = v.strictObject({
  /** Profiles an order may name (`profile` in newOrder); the first is the default. */
  profiles: v.pipe(v.array(profileName), v.minLength(1)),
  /** newAccount must carry an External Account Binding made with a key from the admin API. */
  external_account_required: v.optional(v.boolean(), false),
});

export const AcmeConfigSchema = v.strictObject({
  tenants: v.optional(v.record(tenantName, AcmeTenantSchema), {}),
  /** Directory `meta`: shown to clients, not enforced beyond that. */
  terms_of_service: v.optional(httpUrl),
  website: v.optional(httpUrl),
  caa_identities: v.optional(v.array(v.pipe(v.string(), v.regex(/^([a-z0-9-]+\.)+[a-z0-9-]+$/, "a domain name"))), []),
  /** The port http-01 validation connects to (80 by RFC 8555; another one for tests). */
  http01_port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)), 80),
  /**
   * Validate names that resolve to loopback, private, link-local or reserved addresses. Off by
   * default: the validation authority must not become a way to reach the CA's own network.
   */
  allow_private_addresses: v.optional(v.boolean(), false),
  /** Bound on one http-01 validation (connect, redirects and body together). */
  validation_timeout_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(100), v.maxValue(60_000)), 10_000),
  /** Redirects an http-01 validation follows (http: only, each target checked again). */
  max_redirects: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(10)), 10),
  /** How long a pending order and its authorizations stay usable. */
  order_lifetime_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(24 * 30)), 24),
});

export type AcmeConfig = v.InferOutput<typeof AcmeConfigSchema>;
export type AcmeTenant = v.InferOutput<typeof AcmeTenantSchema>;

/**
 * A development CA's ACME: tenant `demo` on the `tls-server` profile, loopback validation
 * allowed, http-01 on port 5002 (a client needs no root to listen there).
 */
export function developmentAcme(): AcmeConfig {
  return v.parse(AcmeConfigSchema, { tenants: { demo: { profiles: ["tls-server"] } }, allow_private_addresses: true, http01_port: 5002 });
}
