/** Request and response schemas of pki-ca, shared by its routes and its OpenAPI document. */
import * as v from "valibot";

const serial = v.pipe(v.string(), v.regex(/^[0-9a-fA-F]{2,40}$/, "a serial number in hex"));
/** Search text: no LIKE wildcards, no quotes. */
const searchText = v.pipe(v.string(), v.minLength(1), v.maxLength(200), v.regex(/^[A-Za-z0-9 .,=:@*-]+$/, "letters, digits and . , = : @ * - only"));

export const SubmitCertificate = v.strictObject({
  /** PKCS#10 CSR, PEM or base64 DER. */
  csr: v.pipe(v.string(), v.minLength(1), v.maxLength(128 * 1024)),
  profile: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,63}$/)),
  validity_days: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(100_000))),
});

export const Reason = v.object({ code: v.string(), message: v.string() });

/** The front end a request came through: the REST API (`api`) or an enrollment protocol. */
const origin = v.picklist(["api", "acme", "est", "scep", "cmp", "cmc"]);

export const Certificate = v.object({
  serial: v.string(),
  origin,
  subject: v.string(),
  sans: v.array(v.string()),
  profile: v.string(),
  issuing_ca: v.string(),
  key_type: v.string(),
  status: v.picklist(["valid", "revoked"]),
  not_before: v.string(),
  not_after: v.string(),
  revoked_at: v.nullable(v.string()),
  revocation_reason: v.nullable(v.string()),
  certificate_pem: v.string(),
  chain_pem: v.string(),
});

export const CertificateRequest = v.object({
  id: v.string(),
  origin,
  status: v.picklist(["pending", "issued", "rejected"]),
  profile: v.string(),
  subject: v.string(),
  sans: v.array(v.string()),
  validity_days: v.number(),
  reasons: v.array(Reason),
  serial: v.nullable(v.string()),
  created_at: v.string(),
  decided_at: v.nullable(v.string()),
});

export const SubmitResult = v.variant("status", [
  v.object({ status: v.literal("issued"), request_id: v.string(), certificate: Certificate }),
  v.object({ status: v.literal("pending"), request: CertificateRequest }),
]);

export const SerialParam = v.object({ serial });
export const RequestIdParam = v.object({ id: v.pipe(v.string(), v.uuid()) });

export const SearchCertificatesQuery = v.strictObject({
  serial: v.optional(serial),
  subject: v.optional(searchText),
  san: v.optional(searchText),
  status: v.optional(v.picklist(["valid", "revoked"])),
  expires_before: v.optional(v.pipe(v.string(), v.isoTimestamp())),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/), v.transform(Number), v.minValue(1), v.maxValue(500))),
});

export const ListRequestsQuery = v.strictObject({
  status: v.optional(v.picklist(["pending", "issued", "rejected"])),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/), v.transform(Number), v.minValue(1), v.maxValue(500))),
});

export const REVOCATION_REASON_NAMES = ["unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded", "cessationOfOperation", "certificateHold", "privilegeWithdrawn"] as const;

export const RevokeCertificate = v.strictObject({ reason: v.optional(v.picklist(REVOCATION_REASON_NAMES), "unspecified") });
export const RejectRequest = v.strictObject({ reason: v.pipe(v.string(), v.minLength(1), v.maxLength(500)) });

export const CertificateList = v.object({ items: v.array(Certificate) });
export const RequestList = v.object({ items: v.array(CertificateRequest) });
export const IssuingCaList = v.object({
  items: v.array(v.object({ id: v.string(), key_type: v.string(), subject: v.string(), not_after: v.string(), chain_pem_url: v.string(), crl_url: v.string(), ocsp_url: v.string() })),
});

export const ProfileList = v.object({
  items: v.array(
    v.object({
      name: v.string(),
      issuing_ca: v.string(),
      key_types: v.array(v.string()),
      max_validity_days: v.number(),
      default_validity_days: v.number(),
      key_usage: v.array(v.string()),
      extended_key_usage: v.array(v.string()),
      dns_allow: v.array(v.string()),
      ip_ranges: v.array(v.string()),
      email_domains: v.array(v.string()),
      upn_domains: v.array(v.string()),
      uri_allow: v.array(v.string()),
      approval: v.picklist(["auto", "manual"]),
    }),
  ),
});

export type SubmitCertificateInput = v.InferOutput<typeof SubmitCertificate>;
