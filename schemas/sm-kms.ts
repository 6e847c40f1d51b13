/** Request and response schemas of sm-kms, shared by its routes and its OpenAPI document. */
import * as v from "valibot";
import { ALGORITHM_NAMES } from "../src/keyring/algorithms.ts";
import { b64u, compact, description, FlattenedJwe, ImportKey, keyName as name, ListKeysQuery, MAX_COMPACT_CHARS, MAX_DATA_BYTES, PURPOSES, rotationDays, seg, tag, tagList } from "./keyring.ts";

export { ElasticKey, ElasticKeyList, FlattenedJwe, type FlattenedJweValue, ImportKey, KeyId, ListKeysQuery, MAX_COMPACT_CHARS, MAX_DATA_BYTES, PublicJwk, PURPOSES, STATUSES } from "./keyring.ts";

const kid = v.pipe(v.string(), v.maxLength(64));
/** An encryption context: a flat map bound to the ciphertext; the same map must be given to decrypt. */
const context = v.pipe(
  v.record(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), v.pipe(v.string(), v.maxLength(1024))),
  v.check((o) => Object.keys(o).length <= 32, "at most 32 context entries"),
);


export const CreateKey = v.strictObject({
  name,
  algorithm: v.picklist(ALGORITHM_NAMES),
  purpose: v.optional(v.picklist(PURPOSES)),
  description: v.optional(description),
  rotation_period_days: v.optional(rotationDays),
  import_allowed: v.optional(v.boolean()),
  tags: v.optional(tagList, []),
});

export const UpdateKey = v.strictObject({
  description: v.optional(v.nullable(description)),
  tags: v.optional(tagList),
  rotation_period_days: v.optional(v.nullable(rotationDays)),
  min_decryption_version: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
  import_allowed: v.optional(v.boolean()),
});

export const ScheduleDeletion = v.strictObject({
  waiting_period_days: v.optional(v.pipe(v.number(), v.integer(), v.minValue(7), v.maxValue(30)), 30),
});

export const PublicKeyQuery = v.strictObject({
  version: v.optional(v.pipe(v.string(), v.regex(/^[1-9]\d{0,8}$/), v.transform(Number))),
});


/**
 * `compact` (default) or `json`: flattened JSON serialization (RFC 7516 §7.2.2 for JWE, with
 * the context as its `aad`; RFC 7515 §7.2.2 for JWS).
 */
export const JWE_FORMATS = ["compact", "json"] as const;
export type JweFormat = (typeof JWE_FORMATS)[number];
const format = v.optional(v.picklist(JWE_FORMATS), "compact");
const jwe = v.union([compact, FlattenedJwe]);

export const EncryptRequest = v.strictObject({
  plaintext: b64u(MAX_DATA_BYTES),
  context: v.optional(context),
  format,
  /** JWE content encryption; A128CBC-HS256 needs a key-wrapping or key-agreement key. Default A256GCM. */
  enc: v.optional(v.picklist(["A256GCM", "A128CBC-HS256"])),
});
export const EncryptResult = v.object({ kid: v.string(), jwe: v.union([v.string(), FlattenedJwe]) });
export const DecryptRequest = v.strictObject({ jwe, context: v.optional(context) });
export const DecryptResult = v.object({ kid: v.string(), plaintext: v.string() });
export const RewrapResult = EncryptResult;

export const DataKeyRequest = v.strictObject({
  bytes: v.optional(v.picklist([16, 24, 32, 64]), 32),
  include_plaintext: v.optional(v.boolean(), true),
  context: v.optional(context),
  format,
});
export const DataKeyResult = v.object({ kid: v.string(), wrapped_key: v.union([v.string(), FlattenedJwe]), plaintext_key: v.optional(v.string()) });

/** Flattened JSON JWS (RFC 7515 §7.2.2) with a protected header only; `payload` absent when detached. */
export const FlattenedJws = v.strictObject({
  protected: seg(4096),
  payload: v.optional(seg(MAX_COMPACT_CHARS)),
  signature: seg(8192),
});
export type FlattenedJwsValue = v.InferOutput<typeof FlattenedJws>;
export const SignRequest = v.strictObject({ payload: b64u(MAX_DATA_BYTES), detached: v.optional(v.boolean(), false), format });
export const SignResult = v.object({ kid: v.string(), jws: v.union([v.string(), FlattenedJws]) });
export const VerifyRequest = v.strictObject({ jws: v.union([compact, FlattenedJws]), payload: v.optional(b64u(MAX_DATA_BYTES)) });
export const VerifyResult = v.object({ valid: v.literal(true), kid: v.string() });

export const MacRequest = v.strictObject({ data: b64u(MAX_DATA_BYTES) });
export const MacResult = v.object({ kid: v.string(), mac: v.string() });
export const MacVerifyRequest = v.strictObject({ data: b64u(MAX_DATA_BYTES), mac: b64u(64), kid });

export const RandomRequest = v.strictObject({ bytes: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1024)) });
export const RandomResult = v.object({ random: v.string() });


const ItemError = v.object({ error: v.object({ code: v.string(), message: v.string() }) });
const batchOf = <T extends v.GenericSchema>(item: T) => v.strictObject({ items: v.pipe(v.array(item), v.minLength(1)) });
const resultsOf = <T extends v.GenericSchema>(ok: T) => v.object({ results: v.array(v.union([ok, ItemError])) });

export const BatchEncrypt = batchOf(EncryptRequest);
export const BatchDecrypt = batchOf(DecryptRequest);
export const BatchSign = batchOf(SignRequest);
export const BatchVerify = batchOf(VerifyRequest);
export const BatchEncryptResult = resultsOf(EncryptResult);
export const BatchDecryptResult = resultsOf(DecryptResult);
export const BatchSignResult = resultsOf(SignResult);
export const BatchVerifyResult = resultsOf(VerifyResult);

export type CreateKeyInput = v.InferOutput<typeof CreateKey>;
export type UpdateKeyInput = v.InferOutput<typeof UpdateKey>;
export type ListKeysInput = v.InferOutput<typeof ListKeysQuery>;
export type ImportKeyInput = v.InferOutput<typeof ImportKey>;
export type EncryptInput = v.InferOutput<typeof EncryptRequest>;
export type DecryptInput = v.InferOutput<typeof DecryptRequest>;
export type DataKeyInput = v.InferOutput<typeof DataKeyRequest>;
export type SignInput = v.InferOutput<typeof SignRequest>;
export type VerifyInput = v.InferOutput<typeof VerifyRequest>;
export type MacInput = v.InferOutput<typeof MacRequest>;
export type MacVerifyInput = v.InferOutput<typeof MacVerifyRequest>;

/** BYOK: the import key to wrap material for one elastic key. */
export const ImportParams = v.object({
  import_token: v.string(),
  public_jwk: v.record(v.string(), v.unknown()),
  expires_at: v.string(),
});

export const ImportWrapped = v.strictObject({
  import_token: v.pipe(v.string(), v.uuid()),
  /** Compact JWE (RSA-OAEP-256, A256GCM) whose plaintext is the JWK to import. */
  wrapped_key: v.pipe(v.string(), v.maxLength(65536), v.regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]*){4}$/, "a compact JWE")),
});
