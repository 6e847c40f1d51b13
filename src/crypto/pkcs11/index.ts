/**
 * The PKCS#11 (HSM) bridge: open a token, keep keys inside it, run operations there.
 * See `provider.ts` for the guarantees.
 */
export { type Pkcs11Config, type Pkcs11StartFailure, DEFAULT_PKCS11_MODULE } from "./config.ts";
export { Pkcs11Provider, openPkcs11Provider } from "./provider.ts";
export { TokenKeyObjects, type TokenCurve, type TokenKeySpec, type TokenObject, type TokenObjectRef, type TokenSignAlg } from "./keyring-objects.ts";
