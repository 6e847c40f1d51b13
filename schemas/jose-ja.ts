/** Request schemas of jose-ja, shared by its routes and its OpenAPI document. */
import * as v from "valibot";
import { ALGORITHM_NAMES } from "../src/keyring/algorithms.ts";
import { b64u, compact, description, ElasticKey, FlattenedJwe, ImportKey, importedJwk as jwk, keyName as name, ListKeysQuery, MAX_COMPACT_CHARS, MAX_DATA_BYTES, PublicJwk, rotationDays, tagList } from "./keyring.ts";

export { ElasticKey, ElasticKeyList, KeyId, ListKeysQuery, MAX_COMPACT_CHARS, MAX_DATA_BYTES, PublicJwk, PURPOSES, STATUSES } from "./keyring.ts";

const shortString = v.pipe(v.string(), v.minLength(1), v.maxLength(1024));
const typ = v.pipe(v.string(), v.regex(/^[A-Za-z0-9.+/_-]{1,64}$/, "typ is a media type of up to 64 characters"));
const claimName = v.pipe(v.string(), v.minLength(1), v.maxLength(128));

export const TenantParams = v.object({ tenant: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,128}$/)) });
export const TenantKeyParams = v.object({ tenant: v.pipe(v.string(), v.regex(/^[A-Za-z0-9._-]{1,128}$/)), id: v.string() });

export const GenerateKey = v.strictObject({
  name,
  algorithm: v.picklist(ALGORITHM_NAMES),
  description: v.optional(description),
  rotation_period_days: v.optional(rotationDays),
  import_allowed: v.optional(v.boolean()),
  tags: v.optional(tagList, []),
});

export { ImportKey };
export const ImportVersion = v.strictObject({ jwk });

export const DeleteQuery = v.strictObject({
  waiting_period_days: v.optional(v.pipe(v.string(), v.regex(/^\d{1,2}$/), v.transform(Number), v.integer(), v.minValue(7), v.maxValue(30))),
});

export const UpdateKey = v.strictObject({
  description: v.optional(v.nullable(description)),
  tags: v.optional(tagList),
  min_decryption_version: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  import_allowed: v.optional(v.boolean()),
});

export const RotationSchedule = v.strictObject({ rotation_period_days: v.nullable(rotationDays) });

export const VersionQuery = v.strictObject({
  version: v.optional(v.pipe(v.string(), v.regex(/^[1-9]\d{0,8}$/), v.transform(Number))),
});

/** Flattened JSON JWS (RFC 7515 §7.2.2) with a protected header only. */
export const FlattenedJws = v.strictObject({ protected: v.pipe(v.string(), v.maxLength(4096)), payload: v.optional(v.pipe(v.string(), v.maxLength(MAX_COMPACT_CHARS))), signature: v.pipe(v.string(), v.maxLength(8192)) });
export const SignRequest = v.strictObject({
  payload: b64u(MAX_DATA_BYTES),
  typ: v.optional(typ),
  cty: v.optional(typ),
  /** `compact` (default) or `json`: the flattened JSON serialization. */
  format: v.optional(v.picklist(["compact", "json"]), "compact"),
});
export const VerifyRequest = v.strictObject({ jws: v.union([compact, FlattenedJws]) });
export const EncryptRequest = v.strictObject({ plaintext: b64u(MAX_DATA_BYTES), cty: v.optional(typ) });
/** A compact JWE, or a flattened JSON one (RFC 7516 §7.2.2) with any of its unprotected headers. */
export const DecryptRequest = v.strictObject({ jwe: v.union([compact, FlattenedJwe]) });

const audience = v.union([shortString, v.pipe(v.array(shortString), v.minLength(1), v.maxLength(16))]);

export const JwtIssueRequest = v.strictObject({
  /** The caller's claims; iat and exp are set by the service, iss/aud/sub/jti/nbf may be given here or below. */
  claims: v.optional(
    v.pipe(
      v.record(claimName, v.unknown()),
      v.check((o) => Object.keys(o).length <= 64, "at most 64 claims"),
    ),
    {},
  ),
  ttl_s: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(31_536_000)),
  iss: v.optional(shortString),
  aud: v.optional(audience),
  sub: v.optional(shortString),
  typ: v.optional(typ, "JWT"),
  jti: v.optional(v.boolean(), false),
});

export const JwtValidateRequest = v.strictObject({
  jwt: compact,
  iss: v.optional(shortString),
  aud: v.optional(audience),
  typ: v.optional(typ),
  clock_skew_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(3600)), 0),
  max_age_s: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(31_536_000))),
  required_claims: v.optional(v.pipe(v.array(claimName), v.maxLength(32)), []),
});

const isoTime = v.pipe(v.string(), v.isoTimestamp());
export const AuditQuery = v.strictObject({
  key: v.optional(v.pipe(v.string(), v.uuid())),
  operation: v.optional(v.pipe(v.string(), v.regex(/^[a-z_]{1,32}$/))),
  from: v.optional(isoTime),
  to: v.optional(isoTime),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/), v.transform(Number), v.minValue(1), v.maxValue(500))),
  page_token: v.optional(v.pipe(v.string(), v.maxLength(200))),
});

export type GenerateKeyInput = v.InferOutput<typeof GenerateKey>;
export type ImportKeyInput = v.InferOutput<typeof ImportKey>;
export type UpdateKeyInput = v.InferOutput<typeof UpdateKey>;
export type ListKeysInput = v.InferOutput<typeof ListKeysQuery>;
export type JwtIssueInput = v.InferOutput<typeof JwtIssueRequest>;
export type JwtValidateInput = v.InferOutput<typeof JwtValidateRequest>;
export type AuditQueryInput = v.InferOutput<typeof AuditQuery>;

// --- responses ------------------------------------------------------------------------------
// The key ring views are the keyring's, as sm-kms shows them: one schema for both apps.

export const ElasticKeyWithJwk = v.object({ ...ElasticKey.entries, public_jwk: v.optional(PublicJwk) });
const header = v.record(v.string(), v.unknown());
export const SignResult = v.object({ kid: v.string(), version: v.number(), jws: v.union([v.string(), FlattenedJws]) });
export const VerifyResult = v.object({ valid: v.literal(true), kid: v.string(), version: v.number(), payload: v.string(), header });
export const EncryptResult = v.object({ kid: v.string(), version: v.number(), jwe: v.string() });
export const DecryptResult = v.object({ kid: v.string(), version: v.number(), plaintext: v.string() });
export const JwtIssueResult = v.object({ kid: v.string(), version: v.number(), jwt: v.string(), exp: v.number() });
export const JwtValidateResult = v.object({ valid: v.literal(true), kid: v.string(), version: v.number(), header, claims: v.record(v.string(), v.unknown()) });
export const AuditEntry = v.object({
  seq: v.number(),
  tenant: v.string(),
  at: v.string(),
  subject: v.string(),
  client_id: v.nullable(v.string()),
  operation: v.string(),
  key_id: v.nullable(v.string()),
  version: v.nullable(v.number()),
  /** "ok" or the error code the operation failed with. */
  result: v.string(),
});
export const AuditPage = v.object({ items: v.array(AuditEntry), next_page_token: v.nullable(v.string()) });
