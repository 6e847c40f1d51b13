/**
 * The constant-time WASM crypto core: symmetric (AES-GCM, SHA-2, HMAC, HKDF)
 * and elliptic-curve (ECDSA, ECDH on P-256/P-384) functions, synchronous,
 * Uint8Array in and out. See wasm-sym.ts and wasm-ec.ts for the guarantees.
 */
import * as sym from "./wasm-sym.ts";
import * as ec from "./wasm-ec.ts";

export { wasmVariant } from "./wasm-runtime.ts";

export const wasmCore = { ...sym, ...ec };

export type WasmCore = typeof wasmCore;
