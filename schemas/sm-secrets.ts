/** Request and response schemas of sm-secrets, shared by its routes, its OpenAPI document and the CLI. */
import * as v from "valibot";

/** Largest secret (its `data` as JSON text) one version may hold. */
export const MAX_SECRET_BYTES = 512 * 1024;
/** Most versions a key may keep (`max_versions`). */
export const MAX_VERSIONS_LIMIT = 1000;
/** Default `max_versions` when neither the key nor the tenant's config sets one (Vault's). */
export const DEFAULT_MAX_VERSIONS = 10;
/** `delete_version_after` bound: ten years, in seconds. */
export const MAX_DELETE_AFTER_S = 10 * 366 * 24 * 3600;

const SEGMENT = "[A-Za-z0-9_@:+=,~-][A-Za-z0-9_.@:+=,~-]*";
/** A secret's path: segments of letters, digits and `_.@:+=,~-` joined by `/`; no empty, `.` or `..` segment. */
export const SECRET_PATH = new RegExp(`^${SEGMENT}(?:/${SEGMENT})*$`);
/** A list prefix: empty (the root) or a path ending in `/`. */
export const LIST_PREFIX = new RegExp(`^(?:${SEGMENT}/)*$`);

export const secretPath = v.pipe(v.string(), v.maxLength(512), v.regex(SECRET_PATH, "a path is segments of letters, digits and _.@:+=,~- joined by /"));
export const SecretPathParams = v.object({ "*": secretPath });

const version = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(Number.MAX_SAFE_INTEGER));
const queryInt = (min: number, max: number) => v.pipe(v.string(), v.regex(/^\d{1,15}$/, "a whole number"), v.transform(Number), v.minValue(min), v.maxValue(max));

/** A secret's value: a JSON object of any members (Vault's `data`). */
export const SecretData = v.record(v.pipe(v.string(), v.minLength(1, "a member name is not empty"), v.maxLength(256, "a member name has at most 256 characters")), v.unknown(), "data must be a JSON object");

/** Messages here never quote the input (valibot's defaults quote the value received): it may be a secret. */
export const WriteSecret = v.strictObject(
  {
    data: SecretData,
    /** Check-and-set: write only if the key's current version is this one (0: only if the key has none). */
    cas: v.optional(v.pipe(v.number("cas must be a whole number"), v.integer("cas must be a whole number"), v.minValue(0, "cas must be 0 or more"), v.maxValue(Number.MAX_SAFE_INTEGER, "cas is too large"))),
  },
  "the body must be a JSON object with data and an optional cas",
);

/** A JSON merge patch (RFC 7386) of the current version's data: `null` removes a member. */
export const PatchSecret = WriteSecret;

export const ReadSecretQuery = v.strictObject({ version: v.optional(queryInt(1, Number.MAX_SAFE_INTEGER)) });
export const SubkeysQuery = v.strictObject({ version: v.optional(queryInt(1, Number.MAX_SAFE_INTEGER)), depth: v.optional(queryInt(0, 64)) });
export const ListQuery = v.strictObject({ prefix: v.optional(v.pipe(v.string(), v.maxLength(512), v.regex(LIST_PREFIX, "a prefix is empty or a path ending in /")), "") });

export const Versions = v.strictObject({ versions: v.pipe(v.array(version), v.minLength(1), v.maxLength(1000)) });

const customMetadata = v.pipe(
  v.record(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), v.pipe(v.string(), v.maxLength(512))),
  v.check((o) => Object.keys(o).length <= 64, "custom_metadata holds at most 64 members"),
);
const customMetadataPatch = v.pipe(
  v.record(v.pipe(v.string(), v.minLength(1), v.maxLength(128)), v.nullable(v.pipe(v.string(), v.maxLength(512)))),
  v.check((o) => Object.keys(o).length <= 64, "custom_metadata holds at most 64 members"),
);
const maxVersions = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_VERSIONS_LIMIT));
const deleteAfter = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_DELETE_AFTER_S));

/** PUT: the members given replace the key's settings (custom_metadata whole). */
export const WriteMetadata = v.strictObject({
  max_versions: v.optional(maxVersions),
  cas_required: v.optional(v.boolean()),
  delete_version_after_s: v.optional(deleteAfter),
  custom_metadata: v.optional(customMetadata),
});

/** PATCH: as PUT, but custom_metadata is merged (`null` removes a member). */
export const PatchMetadata = v.strictObject({
  max_versions: v.optional(maxVersions),
  cas_required: v.optional(v.boolean()),
  delete_version_after_s: v.optional(deleteAfter),
  custom_metadata: v.optional(customMetadataPatch),
});

/** The tenant's defaults for every key (Vault's mount config). */
export const KvConfig = v.object({
  max_versions: maxVersions,
  cas_required: v.boolean(),
  delete_version_after_s: deleteAfter,
});
export const WriteKvConfig = v.strictObject({
  max_versions: v.optional(maxVersions),
  cas_required: v.optional(v.boolean()),
  delete_version_after_s: v.optional(deleteAfter),
});

export const VersionMeta = v.object({
  version: v.number(),
  created_time: v.string(),
  /** When the version is or was soft-deleted (it may lie ahead, from delete_version_after); null: never. */
  deletion_time: v.nullable(v.string()),
  destroyed: v.boolean(),
});

export const SecretVersion = v.object({
  path: v.string(),
  data: v.record(v.string(), v.unknown()),
  metadata: v.object({ ...VersionMeta.entries, custom_metadata: v.nullable(v.record(v.string(), v.string())) }),
});

export const Subkeys = v.object({
  path: v.string(),
  subkeys: v.record(v.string(), v.unknown()),
  metadata: VersionMeta,
});

export const KeyMetadata = v.object({
  path: v.string(),
  cas_required: v.boolean(),
  created_time: v.string(),
  updated_time: v.string(),
  current_version: v.number(),
  oldest_version: v.number(),
  max_versions: v.number(),
  delete_version_after_s: v.number(),
  custom_metadata: v.nullable(v.record(v.string(), v.string())),
  versions: v.array(VersionMeta),
});

export const KeyList = v.object({ prefix: v.string(), keys: v.array(v.string()) });

export type WriteSecretInput = v.InferOutput<typeof WriteSecret>;
export type WriteMetadataInput = v.InferOutput<typeof WriteMetadata>;
export type PatchMetadataInput = v.InferOutput<typeof PatchMetadata>;
export type KvConfigView = v.InferOutput<typeof KvConfig>;
export type WriteKvConfigInput = v.InferOutput<typeof WriteKvConfig>;
export type VersionMetaView = v.InferOutput<typeof VersionMeta>;
export type SecretVersionView = v.InferOutput<typeof SecretVersion>;
export type KeyMetadataView = v.InferOutput<typeof KeyMetadata>;
