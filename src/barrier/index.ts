/** The barrier: data-at-rest key hierarchy (see barrier.ts and format.ts). */
export { Barrier, type BarrierOptions, type BarrierStatus } from "./barrier.ts";
export { webCryptoBarrierCrypto, type BarrierCrypto } from "./aead.ts";
export {
  SoftwareRootLayer,
  type RootLayer,
  type RootLayerFactory,
  type RootLayerOpenContext,
} from "./root-layer.ts";
export { barrierMigrations, BARRIER_MIGRATION_APP, type BarrierTables, type BarrierDb } from "./schema.ts";
export {
  readUnsealSecretFiles,
  checkUnsealSecrets,
  MIN_UNSEAL_SECRET_BYTES,
  MAX_UNSEAL_SECRET_BYTES,
} from "./unseal-files.ts";
export { FORMAT_V1, MAX_CONTEXT_BYTES } from "./format.ts";
export { pkcs11RootLayer } from "./pkcs11-root-layer.ts";
