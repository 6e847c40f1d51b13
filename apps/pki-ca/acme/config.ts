/**
 * The `app.acme` config section of pki-ca: which tenants serve ACME (each at
 * `/acme/{tenant}/directory`), the profiles their orders may name, whether they need an
 * External Account Binding, and the validation authority's outbound rules.
 */
import * as v from "valibot";

const httpUrl = v.pipe(v.string(), v.url(), v.regex(/^https?:\/\//, "an http(s) URL"));
const tenantName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a tenant name"));
const profileName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a profile name"));

/** At most `limit` events in any `window_seconds`; a limit of 0 turns the check off. */
const RateLimitSchema = v.strictObject({
  limit: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(1_000_000)),
  window_seconds: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(30 * 86_400)),
});

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
  /**
   * The CA's CAA issuer domain names (RFC 8659). When set, every validated name is checked: the
   * closest CAA record set up the tree must name one of them in `issue` (or `issuewild` for a
   * wildcard), and its `accounturi`/`validationmethods` parameters, if any, must match.
   */
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
  /**
   * DNS servers (`ip` or `ip:port`) the validation authority asks for dns-01 TXT records, CAA
   * and the addresses of http-01 and tls-alpn-01 targets; the system's resolver when empty.
   */
  dns_resolvers: v.optional(v.array(v.pipe(v.string(), v.regex(/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])(:\d{1,5})?$/, "ip, ip:port or [ipv6]:port"))), []),
  /** The port tls-alpn-01 validation connects to (443 by RFC 8737; another one for tests). */
  tls_alpn01_port: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)), 443),
  /** Further attempts of a validation that failed to connect or resolve (not of a wrong answer). */
  validation_retries: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(5)), 2),
  validation_retry_delay_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(60_000)), 1000),
  /**
   * How long the answer to a challenge waits for its validation: one that finishes sooner is
   * answered valid or invalid, a slower one `processing` (RFC 8555 §7.5.1); 0: never waits.
   */
  challenge_wait_ms: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(10_000)), 1000),
  /**
   * Rate limits, counted in the database so every instance sees the same counts: new orders per
   * account, new orders naming an identifier (any account of the tenant), new accounts per client IP.
   */
  rate_limits: v.optional(
    v.strictObject({
      orders_per_account: v.optional(RateLimitSchema, { limit: 300, window_seconds: 3 * 3600 }),
      orders_per_identifier: v.optional(RateLimitSchema, { limit: 50, window_seconds: 3600 }),
      accounts_per_ip: v.optional(RateLimitSchema, { limit: 20, window_seconds: 3 * 3600 }),
    }),
    {},
  ),
  /** How long a pending order and its authorizations stay usable. */
  order_lifetime_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(24 * 30)), 24),
  /**
   * How long a validated authorization stays valid, and so reusable by the account's next orders
   * for the same identifier (RFC 8555 §7.1.4); 0: never reused once its order is done.
   */
  authorization_lifetime_hours: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(24 * 30)), 24 * 7),
  /**
   * Where used nonces are recorded (nonces.ts): `shared`, in the database, so any instance
   * accepts another's nonce; `instance`, in this process's memory, nothing written, a nonce
   * accepted only by the instance that made it. `auto`: `instance` on a local embedded
   * database, `shared` on PostgreSQL, a remote libSQL server or an embedded replica.
   */
  nonce_scope: v.optional(v.picklist(["auto", "shared", "instance"]), "auto"),
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
