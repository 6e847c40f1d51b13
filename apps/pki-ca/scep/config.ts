/**
 * The `app.scep` config section of pki-ca: which tenants enroll over SCEP (RFC 8894) and on
 * which profiles, each at `/scep/<tenant>/<profile>` (`/scep/<tenant>`: its first profile;
 * `/scep`: the first tenant's first profile). A profile may have a static challenge password,
 * given only as its SHA-256; one-time challenges come from the admin API.
 */
import * as v from "valibot";

const tenantName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a tenant name"));
const profileName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a profile name"));

export const ScepProfileSchema = v.strictObject({
  /** SHA-256 (hex) of a static challenge password (`printf %s PASSWORD | sha256sum`); none: one-time challenges only. */
  challenge_sha256: v.optional(v.pipe(v.string(), v.toLowerCase(), v.regex(/^[0-9a-f]{64}$/, "64 hex digits (a SHA-256)"))),
});

export const ScepTenantSchema = v.strictObject({
  profiles: v.pipe(
    v.record(profileName, ScepProfileSchema),
    v.check((r) => Object.keys(r).length > 0, "at least one profile"),
  ),
});

export const ScepConfigSchema = v.strictObject({
  tenants: v.optional(v.record(tenantName, ScepTenantSchema), {}),
  /** Lifetime of a one-time challenge password from the admin API. */
  challenge_ttl_minutes: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(30 * 24 * 60)), 60),
  /** Validity of the SCEP RA certificates (renewed as the OCSP responders are). */
  ra_validity_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(5 * 365 * 24)), 365 * 24),
});

export type ScepConfig = v.InferOutput<typeof ScepConfigSchema>;

/** A development CA's SCEP: tenant `demo` on `tls-client`, one-time challenges only. */
export function developmentScep(): ScepConfig {
  return v.parse(ScepConfigSchema, { tenants: { demo: { profiles: { "tls-client": {} } } } });
}
