/**
 * The `app.est` config section of pki-ca: which tenants enroll over EST (RFC 7030) and on which
 * profiles. A profile is an EST label (`/.well-known/est/<profile>/...`); a request without a
 * label uses `default_profile`, else the first profile of the first tenant listed.
 */
import * as v from "valibot";

const tenantName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a tenant name"));
const profileName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a profile name"));

export const EstTenantSchema = v.strictObject({
  /** Profiles this tenant's EST credentials may be issued for. */
  profiles: v.pipe(v.array(profileName), v.minLength(1)),
});

export const EstConfigSchema = v.strictObject({
  tenants: v.optional(v.record(tenantName, EstTenantSchema), {}),
  /** The profile of label-less requests (`/.well-known/est/cacerts`); one of the listed ones. */
  default_profile: v.optional(profileName),
  /** Retry-After of a 202 answer (a request queued for approval). */
  retry_after_seconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(86_400)), 60),
});

export type EstConfig = v.InferOutput<typeof EstConfigSchema>;

/** A development CA's EST: tenant `demo` on `tls-client` (the default label) and `tls-server`. */
export function developmentEst(): EstConfig {
  return v.parse(EstConfigSchema, { tenants: { demo: { profiles: ["tls-client", "tls-server"] } }, retry_after_seconds: 5 });
}
