/** The `app` config section of identity-authz, validated once at start. */
import * as v from "valibot";
import { AppError } from "../../src/service/errors.ts";
import type { ServiceConfig } from "../../src/service/config.ts";

const ttl = (min: number, max: number) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

export const AuthzAppConfig = v.strictObject({
  /** Public base URL of identity-idp (the login hand-off goes to `{idp_url}/t/{T}/login`). */
  idp_url: v.optional(v.pipe(v.string(), v.url()), "https://127.0.0.1:18100"),
  /** JWKS of the idp's login-verifier key; may hold `{tenant}`. Default `{idp_url}/t/{tenant}/jwks`. */
  idp_jwks_url: v.optional(v.pipe(v.string(), v.url())),
  /** PEM bundle trusted for the idp's and clients' `jwks_uri` TLS. Default: this service's trust bundle (the suite CA). */
  ca_file: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Longest access or ID token lifetime any client may get; retired keys stay published this long. */
  max_token_ttl_s: v.optional(ttl(60, 86_400), 86_400),
  access_token_ttl_s: v.optional(ttl(30, 86_400), 600),
  id_token_ttl_s: v.optional(ttl(30, 86_400), 600),
  refresh_token_ttl_s: v.optional(ttl(60, 365 * 86_400), 30 * 86_400),
  code_ttl_s: v.optional(ttl(10, 600), 60),
  /** Device authorization grant (RFC 8628): lifetime of a device_code and its user_code. */
  device_code_ttl_s: v.optional(ttl(5, 1800), 600),
  /** The polling interval a device is told (and held to: a sooner poll gets `slow_down`). */
  device_poll_interval_s: v.optional(ttl(1, 60), 5),
  /** Wrong user codes accepted per tenant and client address in 10 minutes. */
  device_max_failures: v.optional(ttl(1, 1000), 10),
  /** Signing keys older than this are rotated by the schedule. */
  key_rotation_days: v.optional(ttl(1, 3650), 90),
  key_rotation_check_s: v.optional(ttl(10, 86_400), 3600),
  /**
   * How long tenants, clients and scopes (registry_cache_s) and signing keys (key_reload_s) stay
   * in memory. Another instance's changes reach this one at once by change notice on PostgreSQL;
   * these are the bounds for the time its listening connection is down (and for other processes
   * sharing an embedded file).
   */
  registry_cache_s: v.optional(ttl(1, 3600), 5),
  key_reload_s: v.optional(ttl(1, 3600), 60),
  /** Accepted age of a DPoP proof, in seconds. */
  proof_window_s: v.optional(ttl(5, 600), 60),
  /**
   * Origins whose pages may call the token endpoint, JWKS and discovery without credentials
   * (the suite's API explorers, single-page apps); exact `https://host:port` origins.
   */
  cors_origins: v.optional(v.array(v.pipe(v.string(), v.regex(/^https:\/\/[^/?#]+$/, "an https origin without a path"))), []),
  /** How long fetching a client's request_uri may take (connect, answer and body). */
  request_uri_timeout_ms: v.optional(ttl(100, 60_000), 5000),
  /**
   * Fetch the URLs clients register (request_uris, jwks_uri, sector_identifier_uri) on loopback,
   * private, link-local and reserved addresses too. Off: a name that resolves to any such address
   * is refused. For development and tests only.
   */
  client_urls_allow_private_addresses: v.optional(v.boolean(), false),
  /**
   * Origins (`https://host:port`) of clients' URLs that may be on such addresses even so: the
   * operator's own services (the suite's consoles receiving back-channel logout, say).
   */
  client_urls_allowed_origins: v.optional(v.array(v.pipe(v.string(), v.regex(/^https:\/\/[^/?#]+$/, "an https origin without a path"))), []),
  /** The older name of `client_urls_allow_private_addresses` (either turns it on). */
  request_uri_allow_private_addresses: v.optional(v.boolean(), false),
  /** Create tenant `root` and client `bootstrap-admin` on first start. */
  bootstrap: v.optional(v.boolean(), true),
});

export type AuthzConfig = v.InferOutput<typeof AuthzAppConfig>;

/** Validates `app`; a bad value stops the start with the key named. */
export function parseAppConfig(config: ServiceConfig): AuthzConfig {
  const r = v.safeParse(AuthzAppConfig, (config as { app?: unknown }).app ?? {});
  if (!r.success) {
    const issue = r.issues[0];
    const key = issue.path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "";
    throw new AppError("config_invalid", `app${key ? "." + key : ""}: ${issue.message}`, { status: 400 });
  }
  return r.output;
}
