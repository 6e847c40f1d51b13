/**
 * The `app.cmp` config section of pki-ca: which tenants enroll over CMP (RFC 9810, lightweight
 * profile RFC 9483) and on which profiles. A profile is a CMP label (`/.well-known/cmp/p/<profile>`,
 * RFC 9811 §3); `/.well-known/cmp` uses `default_profile`, else the first profile listed.
 */
import * as v from "valibot";

const tenantName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a tenant name"));
const profileName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a profile name"));

export const CmpTenantSchema = v.strictObject({
  /** Profiles this tenant's CMP shared secrets and certificates may enroll in. */
  profiles: v.pipe(v.array(profileName), v.minLength(1)),
});

export const CmpConfigSchema = v.strictObject({
  tenants: v.optional(v.record(tenantName, CmpTenantSchema), {}),
  /** The profile of `/.well-known/cmp` without a label; one of the listed ones. */
  default_profile: v.optional(profileName),
  /** checkAfter of a pollRep (a request queued for approval), in seconds. */
  check_after_seconds: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(86_400)), 60),
  /** Validity of the CMP RA certificates that sign answers (renewed as the OCSP responders are). */
  ra_validity_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(5 * 365 * 24)), 365 * 24),
});

export type CmpConfig = v.InferOutput<typeof CmpConfigSchema>;

/** A development CA's CMP: tenant `demo` on `tls-client` (the default label) and `tls-server`. */
export function developmentCmp(): CmpConfig {
  return v.parse(CmpConfigSchema, { tenants: { demo: { profiles: ["tls-client", "tls-server"] } }, check_after_seconds: 5 });
}
