/**
 * The `app.scep` config section of pki-ca: which tenants enroll over SCEP (RFC 8894) and on
 * which profiles, each at `/scep/<tenant>/<profile>` (`/scep/<tenant>`: its first profile;
 * `/scep`: the first tenant's first profile). A profile may have a static challenge password,
 * given only as its SHA-256; one-time challenges come from the admin API.
 */
import * as v from "valibot";

const tenantName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a tenant name"));
const profileName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a profile name"));

/**
 * What signs the RA's CertReps: `RSA-3072`, the RSA encryption key itself (one RA certificate
 * with keyEncipherment and digitalSignature; what every client takes; the key's size is
 * `ra_key`'s, the value keeps its first name), or `P-256`, a signing certificate of its own next
 * to the RSA encryption certificate (RFC 8894's separate RA certificates, chosen by keyUsage:
 * one RSA private-key operation per answer instead of two). certmonger takes `P-256`; Debian's
 * scepclient (micromdm 2.1) does not: it verifies CertReps only with the certificate it
 * encrypted to (the one `-ca-fingerprint` selects).
 */
export const RaSigningKeySchema = v.picklist(["RSA-3072", "P-256"]);

/**
 * The size of the RA's RSA key, the one clients encrypt their requests to (and, unless
 * `ra_signing_key` is `P-256`, the one that signs the CertReps): `RSA-3072` (the default) or
 * `RSA-2048` (NIST SP 800-57's 112-bit strength, acceptable through 2030; each private-key
 * operation about 7 times cheaper; the size scepclient and certmonger give the keys they make).
 * Each size has its own certificates and key.
 */
export const RaKeySchema = v.picklist(["RSA-3072", "RSA-2048"]);

export const ScepProfileSchema = v.strictObject({
  /** SHA-256 (hex) of a static challenge password (`printf %s PASSWORD | sha256sum`); none: one-time challenges only. */
  challenge_sha256: v.optional(v.pipe(v.string(), v.toLowerCase(), v.regex(/^[0-9a-f]{64}$/, "64 hex digits (a SHA-256)"))),
  /** This profile's RA layout; app.scep.ra_signing_key when absent. */
  ra_signing_key: v.optional(RaSigningKeySchema),
  /** This profile's RA RSA key size; app.scep.ra_key when absent. */
  ra_key: v.optional(RaKeySchema),
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
  /** What signs the RA's CertReps on profiles that do not say (see RaSigningKeySchema); EST's and CMC's signed answers too. */
  ra_signing_key: v.optional(RaSigningKeySchema, "RSA-3072"),
  /** The RA's RSA key size on profiles that do not say (see RaKeySchema); EST's and CMC's signed answers too. */
  ra_key: v.optional(RaKeySchema, "RSA-3072"),
});

export type ScepConfig = v.InferOutput<typeof ScepConfigSchema>;

/** A development CA's SCEP: tenant `demo` on `tls-client`, one-time challenges only. */
export function developmentScep(): ScepConfig {
  return v.parse(ScepConfigSchema, { tenants: { demo: { profiles: { "tls-client": {} } } } });
}
