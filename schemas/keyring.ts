/**
 * Schemas both key-ring services (sm-kms and jose-ja) use: limits, names, tags, and the
 * views of an elastic key and its public JWK, all from the one shared keyring.
 */
import * as v from "valibot";
import { ALGORITHM_NAMES } from "../src/keyring/algorithms.ts";

export const PURPOSES = ["encrypt", "sign", "mac", "wrap"] as const;
export const STATUSES = ["enabled", "disabled", "pending_deletion"] as const;

/** Largest binary input (plaintext, payload, MAC data) in bytes, before base64url. */
export const MAX_DATA_BYTES = 64 * 1024;
/** Largest compact JWE/JWS accepted. */
export const MAX_COMPACT_CHARS = 256 * 1024;

export const keyName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, "names are 1..64 of A-Z a-z 0-9 . _ - and start with a letter or digit"));
export const tag = v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "tags are lowercase words of up to 32 characters"));
export const b64u = (maxBytes: number) =>
  v.pipe(v.string(), v.maxLength(Math.ceil((maxBytes * 4) / 3)), v.regex(/^[A-Za-z0-9_-]*$/, "must be base64url without padding"));
export const compact = v.pipe(v.string(), v.minLength(1), v.maxLength(MAX_COMPACT_CHARS));
/** A JOSE serialization member: a string of at most `max` characters. */
export const seg = (max: number) => v.pipe(v.string(), v.maxLength(max));
/** A JOSE header given as JSON (not base64url): the unprotected members of a flattened JWE. */
const joseHeaderObject = v.pipe(
  v.record(v.pipe(v.string(), v.maxLength(64)), v.unknown()),
  v.check((o) => Object.keys(o).length <= 32, "a JOSE header has at most 32 parameters"),
);
/**
 * Flattened JSON JWE, every member RFC 7516 §7.2.2 allows: the protected header, the shared
 * `unprotected` and the per-recipient `header` (e.g. an ECDH-ES `epk`), whose parameter names
 * must be disjoint (checked where the JWE is parsed).
 */
export const FlattenedJwe = v.strictObject({
  protected: seg(4096),
  unprotected: v.optional(joseHeaderObject),
  header: v.optional(joseHeaderObject),
  encrypted_key: v.optional(seg(4096)),
  iv: seg(64),
  ciphertext: seg(MAX_COMPACT_CHARS),
  tag: seg(64),
  aad: v.optional(seg(64 * 1024)),
});
export type FlattenedJweValue = v.InferOutput<typeof FlattenedJwe>;

export const rotationDays = v.pipe(v.number(), v.minValue(1), v.maxValue(3650));
export const description = v.pipe(v.string(), v.maxLength(512));
export const tagList = v.pipe(v.array(tag), v.maxLength(16));

export const ListKeysQuery = v.strictObject({
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d{1,3}$/), v.transform(Number), v.minValue(1), v.maxValue(100))),
  page_token: v.optional(v.pipe(v.string(), v.maxLength(200))),
  purpose: v.optional(v.picklist(PURPOSES)),
  status: v.optional(v.picklist(STATUSES)),
  tag: v.optional(tag),
});

/** A JWK as given by the caller: checked member by member by the keyring's importer. */
export const importedJwk = v.pipe(
  v.record(v.pipe(v.string(), v.maxLength(32)), v.unknown()),
  v.check((o) => Object.keys(o).length <= 24, "too many JWK members"),
);

/** A new key whose version 1 is the caller's JWK (public or private; import then allowed). */
export const ImportKey = v.strictObject({
  name: keyName,
  algorithm: v.picklist(ALGORITHM_NAMES),
  jwk: importedJwk,
  description: v.optional(description),
  tags: v.optional(tagList, []),
});

export const KeyId = v.object({ id: v.pipe(v.string(), v.uuid()) });

const MaterialKey = v.object({
  version: v.number(),
  kid: v.string(),
  created_at: v.string(),
  retired_at: v.nullable(v.string()),
  origin: v.picklist(["generated", "imported"]),
});

export const ElasticKey = v.object({
  id: v.string(),
  name: v.string(),
  description: v.nullable(v.string()),
  algorithm: v.string(),
  purpose: v.picklist(PURPOSES),
  status: v.picklist(STATUSES),
  deletion_date: v.nullable(v.string()),
  rotation_period_days: v.nullable(v.number()),
  next_rotation_at: v.nullable(v.string()),
  current_version: v.number(),
  min_decryption_version: v.number(),
  import_allowed: v.boolean(),
  tags: v.array(v.string()),
  created_at: v.string(),
  updated_at: v.string(),
  versions: v.optional(v.array(MaterialKey)),
});

export const ElasticKeyList = v.object({ items: v.array(ElasticKey), next_page_token: v.nullable(v.string()) });

export const PublicJwk = v.objectWithRest({ kty: v.string(), kid: v.string(), alg: v.string(), use: v.string() }, v.unknown());
