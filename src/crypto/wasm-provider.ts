/**
 * The `wasm` provider: the `CryptoProvider` interface over the AssemblyScript core
 * (`wasmCore` from `wasm.ts`), with keys held in memory as `RawKey`s.
 *
 * Constant time: AES-GCM, SHA-2, HMAC, ECDSA and ECDH run in the wasm core, which has no
 * secret-dependent branches or table indexes (see `wasm/assembly`). This adapter only checks
 * public lengths and copies bytes. Randomness for key generation comes from
 * `crypto.getRandomValues`.
 * Validated: every argument, once, with the helpers of `provider.ts`; the core validates
 * points again (off-curve peer or public keys are refused).
 * Not provided: AES key wrap (the core has no raw AES block export); `supports` says so and
 * the dispatcher routes wrap/unwrap elsewhere.
 */
import { AppError } from "../service/errors.ts";
import {
  type AesBits,
  type CryptoOp,
  type CryptoProvider,
  type EcCurve,
  type EcKeyPair,
  type HashAlg,
  type KeyGenOptions,
  type KeyHandle,
  type OpParams,
  CURVE_BYTES,
  checkAesBits,
  checkBytes,
  checkCurve,
  checkEcdhAs,
  checkGcmArgs,
  checkHash,
  checkSecp,
  decryptionFailed,
  expectRaw,
  malformed,
  rawKey,
  randomAesKey,
} from "./provider.ts";
import { wasmCore } from "./wasm.ts";

/** AES key sizes the wasm core implements. */
const WASM_AES_BITS = new Set([128, 192, 256]);

const isAppError = (e: unknown, code: string): boolean => e instanceof AppError && e.code === code;

export class WasmProvider implements CryptoProvider {
  readonly name = "wasm" as const;

  constantTime(op: CryptoOp): boolean {
    return op !== "wrapKey" && op !== "unwrapKey";
  }

  supports(op: CryptoOp, params: OpParams = {}): boolean {
    if (params.location === "token") return false;
    if (op === "wrapKey" || op === "unwrapKey") return false;
    if (params.curve !== undefined && params.curve !== "P-256" && params.curve !== "P-384") return false;
    if ((op === "aesGcmEncrypt" || op === "aesGcmDecrypt") && params.keyBits !== undefined) {
      return WASM_AES_BITS.has(params.keyBits);
    }
    return true;
  }

  async aesGcmEncrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "aes");
    checkGcmArgs(iv, data, aad, false);
    if (!WASM_AES_BITS.has(k.material.length * 8)) throw malformed("wasm AES-GCM takes 128-, 192- or 256-bit keys");
    return wasmCore.aesGcmEncrypt(k.material, iv, data, aad);
  }

  async aesGcmDecrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "aes");
    checkGcmArgs(iv, data, aad, true);
    if (!WASM_AES_BITS.has(k.material.length * 8)) throw malformed("wasm AES-GCM takes 128-, 192- or 256-bit keys");
    try {
      return wasmCore.aesGcmDecrypt(k.material, iv, data, aad);
    } catch (e) {
      if (isAppError(e, "decryption_failed")) throw decryptionFailed();
      throw e;
    }
  }

  async sign(key: KeyHandle, hash: HashAlg, data: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "ec-private");
    checkHash(hash);
    checkBytes("data", data);
    return wasmCore.ecdsaSign(k.curve as EcCurve, hash, k.material, data, { format: "p1363" });
  }

  async verify(key: KeyHandle, hash: HashAlg, data: Uint8Array, signature: Uint8Array): Promise<boolean> {
    const k = expectRaw(key, "ec-public", "ec-private");
    checkHash(hash);
    checkBytes("data", data);
    checkBytes("signature", signature);
    const curve = k.curve as EcCurve;
    if (signature.length !== 2 * CURVE_BYTES[curve]) return false;
    const pub = k.type === "ec-private" ? (k.publicKey as Uint8Array) : k.material;
    try {
      return wasmCore.ecdsaVerify(curve, hash, pub, data, signature, { format: "p1363" });
    } catch (e) {
      // A malformed signature is just an invalid one; a malformed key is the caller's error.
      if (isAppError(e, "malformed_input") && wasmCore.ecValidatePublicKey(curve, pub)) return false;
      throw e;
    }
  }

  async ecdh(privateKey: KeyHandle, peerPublicKey: Uint8Array, as?: { type: "aes"; bits: AesBits }): Promise<KeyHandle> {
    const k = expectRaw(privateKey, "ec-private");
    const curve = k.curve as EcCurve;
    checkSecp(curve, peerPublicKey, "peer public key");
    checkEcdhAs(curve, as);
    const z = wasmCore.ecdhSharedSecret(curve, k.material, peerPublicKey);
    return as ? rawKey("aes", z) : rawKey("secret", z);
  }

  async generateAesKey(bits: AesBits, opts: KeyGenOptions = {}): Promise<KeyHandle> {
    return randomAesKey("wasm", bits, opts);
  }

  async generateEcKeyPair(curve: EcCurve, opts: KeyGenOptions = {}): Promise<EcKeyPair> {
    checkCurve(curve);
    if (opts.location === "token") throw new AppError("bad_request", "wasm cannot create token keys");
    const { privateKey, publicKey } = wasmCore.ecGenerateKeyPair(curve);
    return {
      privateKey: rawKey("ec-private", privateKey, { curve, publicKey }),
      publicKey: rawKey("ec-public", publicKey, { curve }),
    };
  }

  async wrapKey(_w: KeyHandle, _k: KeyHandle): Promise<Uint8Array> {
    throw new AppError("unavailable", "the wasm provider does not implement AES key wrap");
  }

  async unwrapKey(_w: KeyHandle, _d: Uint8Array, _as: { type: "aes" | "secret" }): Promise<KeyHandle> {
    throw new AppError("unavailable", "the wasm provider does not implement AES key wrap");
  }

  async digest(hash: HashAlg, data: Uint8Array): Promise<Uint8Array> {
    checkHash(hash);
    checkBytes("data", data);
    if (hash === "SHA-256") return wasmCore.sha256(data);
    if (hash === "SHA-384") return wasmCore.sha384(data);
    return wasmCore.sha512(data);
  }

  async hmac(hash: HashAlg, key: KeyHandle, data: Uint8Array): Promise<Uint8Array> {
    const k = expectRaw(key, "secret", "aes");
    checkHash(hash);
    checkBytes("data", data);
    return wasmCore.hmac(hash, k.material, data);
  }

  async close(): Promise<void> {}
}

/** @example const p = createWasmProvider(); await p.aesGcmEncrypt(key, iv, data); */
export const createWasmProvider = (): CryptoProvider => new WasmProvider();
