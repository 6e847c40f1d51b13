/**
 * The one crypto provider interface of cryptoutil, and the key handles it works on.
 *
 * Three providers implement it: `wasm` (the constant-time AssemblyScript core),
 * `webcrypto` (the runtime's `crypto.subtle`) and `pkcs11` (an HSM). The dispatcher
 * (`dispatcher.ts`) picks one per call. Every operation is async because WebCrypto and
 * PKCS#11 are.
 *
 * Guarantees stated here and checked by `checkRawKey` / the helpers below, once, at the
 * boundary: key lengths, curves and hashes are validated before any provider touches them;
 * a bad argument gives `AppError("malformed_input")`, a failed AES-GCM tag check gives
 * `AppError("decryption_failed", status 400)` and never returns partial plaintext.
 *
 * Key wrapping is AES Key Wrap (RFC 3394, no padding): it is the one wrap every provider
 * family offers natively (WebCrypto "AES-KW", PKCS#11 CKM_AES_KEY_WRAP), needs no IV to
 * manage, and wrapped keys (AES/HMAC secrets of 16..64 bytes, multiple of 8) are small.
 */
import { AppError } from "../service/errors.ts";

export type ProviderName = "wasm" | "webcrypto" | "pkcs11";
export type EcCurve = "P-256" | "P-384";
export type HashAlg = "SHA-256" | "SHA-384" | "SHA-512";
export type AesBits = 128 | 192 | 256;

/** What a key is for. `secret` is a generic secret (an ECDH output, an HMAC key). */
export type KeyType = "aes" | "secret" | "ec-private" | "ec-public";

/** Key material held in process memory (wasm and webcrypto providers). Treat as immutable. */
export interface RawKey {
  readonly location: "raw";
  readonly type: KeyType;
  /** AES/secret: the key bytes; ec-private: the scalar d (field length, big-endian); ec-public: SEC1 uncompressed point. */
  readonly material: Uint8Array;
  readonly curve?: EcCurve;
  /** For ec-private keys: the SEC1 uncompressed public point. */
  readonly publicKey?: Uint8Array;
}

/** A reference to a key object inside a PKCS#11 token; its value never leaves the token. */
export interface TokenKey {
  readonly location: "token";
  readonly provider: "pkcs11";
  /** Label of the token holding the key: a handle is only valid on that token. */
  readonly token: string;
  readonly type: KeyType;
  readonly curve?: EcCurve;
  /** AES / secret key length in bits. */
  readonly bits?: number;
  /** CKA_LABEL: how the key is found again after a restart. */
  readonly label: string;
  /** CKA_ID as hex. */
  readonly id: string;
  /** True when the key is a token object (survives restarts), false for a session object. */
  readonly persistent: boolean;
  /** The provider's object handle; opaque to everyone else. */
  readonly handle: unknown;
  /** For ec-private keys: the public point (SEC1 uncompressed), read from the token. */
  readonly publicKey?: Uint8Array;
}

export type KeyHandle = RawKey | TokenKey;

export interface EcKeyPair {
  privateKey: KeyHandle;
  /** Always raw: a public key is not secret and may be verified with by any provider. */
  publicKey: RawKey;
}

/** Where a generated key should live and how to find it again (token keys only). */
export interface KeyGenOptions {
  location?: "raw" | "token";
  /** CKA_LABEL for token keys; generated when absent. */
  label?: string;
  /** Token keys: CKA_TOKEN true (default true when a label is given). */
  persistent?: boolean;
}

/** The operations, as named in `supports` and in the dispatcher's crossover table. */
export type CryptoOp =
  | "aesGcmEncrypt"
  | "aesGcmDecrypt"
  | "sign"
  | "verify"
  | "ecdh"
  | "generateAesKey"
  | "generateEcKeyPair"
  | "wrapKey"
  | "unwrapKey"
  | "digest"
  | "hmac";

/** Parameters `supports` looks at; every field optional. */
export interface OpParams {
  keyBits?: number;
  curve?: EcCurve;
  hash?: HashAlg;
  /** Input size in bytes (used by the dispatcher, not by `supports`). */
  size?: number;
  location?: "raw" | "token";
}

export interface CryptoProvider {
  readonly name: ProviderName;
  /** True when this provider's implementation of `op` runs in constant time with respect to secrets. */
  constantTime(op: CryptoOp): boolean;
  supports(op: CryptoOp, params?: OpParams): boolean;

  /** AES-GCM, 96-bit IV, 128-bit tag; returns ciphertext ‖ tag. */
  aesGcmEncrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  /** Takes ciphertext ‖ tag; throws `decryption_failed` when the tag does not match. */
  aesGcmDecrypt(key: KeyHandle, iv: Uint8Array, data: Uint8Array, aad?: Uint8Array): Promise<Uint8Array>;
  /** ECDSA over `hash(data)`; the signature is P1363 (r ‖ s), the JOSE form. */
  sign(key: KeyHandle, hash: HashAlg, data: Uint8Array): Promise<Uint8Array>;
  /** False for any invalid signature, including one of the wrong length; throws only on a bad key. */
  verify(key: KeyHandle, hash: HashAlg, data: Uint8Array, signature: Uint8Array): Promise<boolean>;
  /**
   * ECDH with a peer public key (SEC1 point, validated on the curve). The shared secret Z is a
   * `secret` key (raw for in-memory providers; a non-extractable object in a token).
   * `as: { type: "aes", bits }` makes Z itself an AES key, only when it has exactly that length
   * (P-256 -> AES-256): tokens disagree on how to truncate, so shorter keys go through a KDF.
   */
  ecdh(privateKey: KeyHandle, peerPublicKey: Uint8Array, as?: { type: "aes"; bits: AesBits }): Promise<KeyHandle>;
  generateAesKey(bits: AesBits, opts?: KeyGenOptions): Promise<KeyHandle>;
  generateEcKeyPair(curve: EcCurve, opts?: KeyGenOptions): Promise<EcKeyPair>;
  /** RFC 3394 AES key wrap of an AES or secret key. */
  wrapKey(wrappingKey: KeyHandle, key: KeyHandle): Promise<Uint8Array>;
  unwrapKey(
    unwrappingKey: KeyHandle,
    wrapped: Uint8Array,
    as: { type: "aes" | "secret" },
    opts?: KeyGenOptions,
  ): Promise<KeyHandle>;
  digest(hash: HashAlg, data: Uint8Array): Promise<Uint8Array>;
  hmac(hash: HashAlg, key: KeyHandle, data: Uint8Array): Promise<Uint8Array>;
  /** Releases native resources (sessions, modules). Idempotent. */
  close(): Promise<void>;
}

// ---- validation helpers shared by the providers (checked once, at the boundary) ----

export const CURVE_BYTES: Record<EcCurve, number> = { "P-256": 32, "P-384": 48 };
export const HASH_BYTES: Record<HashAlg, number> = { "SHA-256": 32, "SHA-384": 48, "SHA-512": 64 };

export const malformed = (message: string) => new AppError("malformed_input", message);
export const decryptionFailed = () =>
  new AppError("decryption_failed", "AES-GCM authentication failed", { status: 400 });

export function checkBytes(name: string, value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw malformed(`${name} must be a Uint8Array`);
}

export function checkHash(hash: unknown): asserts hash is HashAlg {
  if (hash !== "SHA-256" && hash !== "SHA-384" && hash !== "SHA-512") throw malformed("unsupported hash");
}

export function checkCurve(curve: unknown): asserts curve is EcCurve {
  if (curve !== "P-256" && curve !== "P-384") throw malformed("unsupported curve");
}

export function checkAesBits(bits: unknown): asserts bits is AesBits {
  if (bits !== 128 && bits !== 192 && bits !== 256) throw malformed("AES key length must be 128, 192 or 256 bits");
}

/** AES-GCM arguments: 96-bit IV only (the one size every provider handles the same way). */
export function checkGcmArgs(iv: unknown, data: unknown, aad: unknown, decrypt: boolean): void {
  checkBytes("iv", iv);
  if (iv.length !== 12) throw malformed("AES-GCM IV must be 12 bytes");
  checkBytes("data", data);
  if (aad !== undefined) checkBytes("aad", aad);
  if (decrypt && data.length < 16) throw malformed("AES-GCM ciphertext is shorter than its tag");
}

export function checkSecp(curve: EcCurve, point: unknown, name = "public key"): asserts point is Uint8Array {
  checkBytes(name, point);
  const n = CURVE_BYTES[curve];
  if (!(point.length === 2 * n + 1 && point[0] === 4)) throw malformed(`${name} must be an uncompressed ${curve} point`);
}

/** ECDH `as: aes` is allowed only when Z is exactly the AES key (see `CryptoProvider.ecdh`). */
export function checkEcdhAs(curve: EcCurve, as: { type: "aes"; bits: AesBits } | undefined): void {
  if (as === undefined) return;
  if (!as || as.type !== "aes") throw malformed("ECDH can derive an 'aes' key or a secret");
  checkAesBits(as.bits);
  if (as.bits / 8 !== CURVE_BYTES[curve]) throw malformed(`ECDH on ${curve} yields ${CURVE_BYTES[curve] * 8}-bit secrets: derive AES keys of other sizes with HKDF`);
}

/** Validates a SEC1 uncompressed point on `curve` (with the runtime's WebCrypto, which checks it is on the curve). */
export async function validatePoint(curve: EcCurve, point: Uint8Array, name = "public key"): Promise<void> {
  checkSecp(curve, point, name);
  try {
    await crypto.subtle.importKey("raw", new Uint8Array(point), { name: "ECDH", namedCurve: curve }, false, []);
  } catch {
    throw malformed(`${name} is not a point on ${curve}`);
  }
}

/** Throws unless `key` is of `type` (and returns it typed). */
export function expectType<K extends KeyHandle>(key: K, ...types: KeyType[]): K {
  if (!key || typeof key !== "object" || !types.includes(key.type)) {
    throw malformed(`expected a key of type ${types.join(" or ")}`);
  }
  return key;
}

/** A raw key for in-memory providers; refuses token keys. */
export function expectRaw(key: KeyHandle, ...types: KeyType[]): RawKey {
  if (!key || typeof key !== "object" || key.location !== "raw") {
    throw new AppError("bad_request", "this provider only takes in-memory keys; token keys stay in their HSM");
  }
  expectType(key, ...types);
  return key;
}

/**
 * Builds a validated in-memory key. For `ec-private`, `publicKey` (SEC1 uncompressed) is
 * required: computing it is a provider's job (`wasm` or WebCrypto), not this constructor's.
 *
 * @example
 *   const k = rawKey("aes", crypto.getRandomValues(new Uint8Array(32)));
 */
export function rawKey(
  type: KeyType,
  material: Uint8Array,
  opts: { curve?: EcCurve; publicKey?: Uint8Array } = {},
): RawKey {
  checkBytes("key material", material);
  switch (type) {
    case "aes":
      checkAesBits(material.length * 8);
      return Object.freeze({ location: "raw", type, material });
    case "secret":
      if (material.length < 1 || material.length > 1024) throw malformed("secret key must be 1..1024 bytes");
      return Object.freeze({ location: "raw", type, material });
    case "ec-private": {
      checkCurve(opts.curve);
      if (material.length !== CURVE_BYTES[opts.curve]) throw malformed(`${opts.curve} private key must be ${CURVE_BYTES[opts.curve]} bytes`);
      checkSecp(opts.curve, opts.publicKey);
      return Object.freeze({ location: "raw", type, material, curve: opts.curve, publicKey: opts.publicKey });
    }
    case "ec-public":
      checkCurve(opts.curve);
      checkSecp(opts.curve, material);
      return Object.freeze({ location: "raw", type, material, curve: opts.curve });
    default:
      throw malformed("unknown key type");
  }
}

/** RFC 3394 takes 16..64-byte keys here, a multiple of 8 bytes. */
export function checkWrappable(len: number): void {
  if (len < 16 || len > 64 || len % 8 !== 0) throw malformed("key wrap takes keys of 16..64 bytes, a multiple of 8");
}

export const concatBytes = (a: Uint8Array, b: Uint8Array): Uint8Array => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
};

/** An in-memory AES key of fresh random bytes, for providers that keep keys in memory. */
export function randomAesKey(provider: ProviderName, bits: AesBits, opts: KeyGenOptions = {}): RawKey {
  checkAesBits(bits);
  if (opts.location === "token") throw new AppError("bad_request", `${provider} cannot create token keys`);
  return rawKey("aes", crypto.getRandomValues(new Uint8Array(bits / 8)));
}
