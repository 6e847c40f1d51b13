// Symmetric half of the core: the exports JS calls.
export { sha2Digest } from "./sha2";
export { hmacDigest } from "./hmac";
export { hkdfDerive } from "./hkdf";
export { aesGcmSeal, aesGcmOpen, aesGcmContextSize, aesGcmPrepare, aesGcmSealPrepared, aesGcmOpenPrepared } from "./gcm";
