/**
 * The `app.cmc` config section of pki-ca: which tenants enroll over CMC (RFC 5272-5274) and on
 * which profiles. A CMC credential (an identification and a shared secret, from the admin API)
 * belongs to one tenant and one of its listed profiles; a request signed by a certificate this
 * CA issued enrolls under that certificate's tenant and profile, which must be listed here.
 */
import * as v from "valibot";

const tenantName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "a tenant name"));
const profileName = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/, "a profile name"));

export const CmcTenantSchema = v.strictObject({
  /** Profiles this tenant's CMC credentials may be issued for. */
  profiles: v.pipe(v.array(profileName), v.minLength(1)),
});

export const CmcConfigSchema = v.strictObject({
  tenants: v.optional(v.record(tenantName, CmcTenantSchema), {}),
  /**
   * How long an accepted senderNonce is remembered (a request carrying it again is a replay);
   * older ones are deleted by the hourly sweep. A request replayed after that still finds its
   * transaction, which is never deleted: it answers that request's state and issues nothing new.
   */
  nonce_retention_hours: v.optional(v.pipe(v.number(), v.minValue(1), v.maxValue(365 * 24)), 7 * 24),
});

export type CmcConfig = v.InferOutput<typeof CmcConfigSchema>;

/** A development CA's CMC: tenant `demo` on `tls-client` and `tls-server`. */
export function developmentCmc(): CmcConfig {
  return v.parse(CmcConfigSchema, { tenants: { demo: { profiles: ["tls-client", "tls-server"] } } });
}
