// Elliptic-curve half of the core: the exports JS calls (see ecdsa.ts for the
// guarantees). Curves are named by id 256 (P-256) or 384 (P-384), hashes by
// 256/384/512; all return an i32 status (0 = ok) except ecdsaVerifyDigest (1 = valid).
export { ecPublicFromPrivate, ecCheckPublic, ecdhDerive, ecdsaSignDigest, ecdsaVerifyDigest } from "./ecdsa";
