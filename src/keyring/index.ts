/** The keyring: elastic keys and their material keys, shared by sm-kms and jose-ja. */
export { ALGORITHMS, ALGORITHM_NAMES, algorithmSpec, publicJwk, type AlgorithmSpec, type KeyPurpose, type UsableKey } from "./algorithms.ts";
export {
  Keyring,
  kidOf,
  parseKid,
  keyDisabled,
  keyPendingDeletion,
  versionBelowMinimum,
  purposeMismatch,
  DELETION_WAIT_MIN_DAYS,
  DELETION_WAIT_MAX_DAYS,
  type ActiveVersion,
  type CreateElasticKey,
  type ElasticKey,
  type KeyStatus,
  type KeyringOptions,
  type ListElasticKeys,
  type MaterialKey,
  type MaterialOrigin,
  type PublicJwk,
  type UpdateElasticKey,
} from "./keyring.ts";
export { keyringMigrations } from "./migrations.ts";
export { KeyringHsm, algorithmNotInHsm, tokenObjectLabel, tokenSpecOf, type HsmMaterialDoc } from "./hsm.ts";
export { softwareBackend, pkcs11Backend, type KeyBackend, type VersionRef, type CreatedMaterial } from "./backend.ts";
export { KeyringStore, type ElasticKeyRow, type MaterialKeyRow, type KeyringDb } from "./store.ts";
export { canonicalJson } from "./canonical.ts";
export { Lru } from "./lru.ts";
export { encodeBase64url, decodeBase64url } from "./base64url.ts";
export * from "./jose-ops.ts";
export * from "./import.ts";
export { serviceKeyring, startKeyringSweep, type KeyringAppConfig } from "./sweeper.ts";
