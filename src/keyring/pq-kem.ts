/**
 * ML-KEM-768 (FIPS 203) key encapsulation in JWE, for opt-in post-quantum key wrapping.
 *
 * Format: draft-ietf-jose-pqc-kem, -05 (December 2025) line of the working-group text: the
 * revision that names the header `kemct`, carries `priv` as the 64-octet seed and ships test
 * vectors (the tests reproduce its ML-KEM-768 and ML-KEM-768+A192KW vectors byte for byte).
 *   - `alg` "ML-KEM-768": direct key agreement, the KDF output is the CEK, no Encrypted Key.
 *   - `alg` "ML-KEM-768+A192KW": the KDF output (192 bits) AES-KW-wraps a random CEK.
 *   - `alg` "ML-KEM-768+A256KW": NOT registered by the draft; the same construction with a
 *     256-bit KEK, kept because every other cryptoutil key wrap is AES-256. It does not
 *     interoperate with other implementations of the draft.
 *   - protected header `kemct` = base64url(ML-KEM ciphertext, 1088 octets). Earlier revisions
 *     called it `ek`; only `kemct` is read and written here.
 *   - KDF: KMAC256(K = ML-KEM shared secret, X = AlgorithmID || SuppPubInfo, L = key bits, S = "")
 *     with AlgorithmID and SuppPubInfo as in RFC 7518 §4.6.2 (32-bit big-endian length prefix,
 *     then the `enc` value for direct mode or the `alg` value for key wrap; SuppPubInfo = key
 *     length in bits, 32-bit big-endian); PartyUInfo/PartyVInfo omitted, SuppPrivInfo empty.
 *   - keys: JWK `kty` "AKP", `pub` = encapsulation key (1184 octets), `priv` = seed d || z (64).
 *     Choice where the draft is open: a key's `alg` is either the KEM name "ML-KEM-768" (usable
 *     with all three `alg` values above, as in the draft's vectors) or one JWE `alg` (pinned).
 *   - `enc`: A128GCM, A192GCM, A256GCM, A128CBC-HS256, A192CBC-HS384, A256CBC-HS512.
 *
 * Guarantees:
 *   - ML-KEM is @noble/post-quantum (constant-time by design, implicit rejection: a bad
 *     ciphertext yields an unrelated secret, never an error); KMAC256 is @noble/hashes.
 *   - AES-GCM, AES-KW, AES-CBC and HMAC run in the runtime's WebCrypto. The A*CBC-HS* tag is
 *     compared in constant time (no early exit) before any CBC decryption, so there is no
 *     padding oracle; an AES-KW unwrap failure is replaced by a random CEK (RFC 7516 §11.5) so
 *     it fails at the same later step, with the same error, as a bad tag.
 *   - Every input is validated once at the entry: JWK lengths and the encapsulation-key modulus
 *     check, `pub` derived from `priv` must match (`malformed_key`); JWE structure, strict
 *     canonical base64url, header JSON, `alg`/`enc` allowlists, `kemct`/IV/tag/encrypted-key
 *     lengths (`malformed_jose`). Any cryptographic failure is `decryption_failed`, one message.
 *   - Shared secrets, KEKs and CEKs are zeroed after use (best effort in a GC'd runtime); an
 *     imported MlKemDecapsulationKey keeps its expanded key in a module WeakMap, never on the
 *     object, so logging or serializing it shows no secret.
 *   - Not covered: the JS engine gives no hard constant-time guarantee, and plaintext sizes
 *     are visible in the ciphertext (no padding), as in every JWE.
 */
import { ml_kem768 } from "@noble/post-quantum/ml-kem.js";
import { kmac256 } from "@noble/hashes/sha3-addons.js";
import { AppError } from "../service/errors.ts";
import { decodeBase64url, encodeBase64url } from "./base64url.ts";

/** JWE `alg` values this module implements. */
export const ML_KEM_ALGS = ["ML-KEM-768", "ML-KEM-768+A192KW", "ML-KEM-768+A256KW"] as const;
export type MlKemAlg = (typeof ML_KEM_ALGS)[number];

/** JWE `enc` values this module implements. */
export const ML_KEM_ENCS = ["A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512"] as const;
export type MlKemEnc = (typeof ML_KEM_ENCS)[number];

/** The KEM name, also a valid key `alg` for every JWE `alg` above. */
export const ML_KEM_768 = "ML-KEM-768";

/** FIPS 203 ML-KEM-768 sizes, in octets. */
export const ML_KEM_768_SIZES = { publicKey: 1184, cipherText: 1088, seed: 64, sharedSecret: 32 } as const;

/** A public ML-KEM AKP JWK. */
export interface MlKemPublicJwk {
  kty: "AKP";
  alg: string;
  pub: string;
  kid?: string;
}

/** A private ML-KEM AKP JWK: `priv` is the 64-octet seed d || z. */
export interface MlKemPrivateJwk extends MlKemPublicJwk {
  priv: string;
}

/** JWE flattened JSON serialization as produced and read here. */
export interface FlattenedMlKemJwe {
  protected: string;
  unprotected?: Record<string, unknown>;
  header?: Record<string, unknown>;
  encrypted_key?: string;
  iv: string;
  ciphertext: string;
  tag: string;
  aad?: string;
}

/** The integrity-protected header of an ML-KEM JWE (other members pass through as read). */
export interface MlKemJweHeader {
  alg: MlKemAlg;
  enc: MlKemEnc;
  kemct: string;
  kid?: string;
  [member: string]: unknown;
}

// Members this module sets or refuses; a caller's extra header may not carry them.
const RESERVED_HEADER = new Set(["alg", "enc", "kemct", "kid", "zip", "crit", "ek", "epk", "iv", "tag", "p2s", "p2c", "jku", "jwk", "x5u", "x5c"]);

export interface EncryptMlKemOptions {
  /** JWE `alg`; defaults to the key's `alg` when that is a JWE `alg`, else "ML-KEM-768". */
  alg?: MlKemAlg;
  /** JWE `enc`; default A256GCM. */
  enc?: MlKemEnc;
  /** `kid` for the protected header; defaults to the key's `kid`. */
  kid?: string;
  /** Extra protected header members (e.g. `cty`); they cannot replace the ones set here. */
  header?: Record<string, string>;
  /** JWE AAD (flattened serialization only). */
  aad?: Uint8Array;
  format?: "compact" | "flattened";
}

export interface DecryptMlKemOptions {
  /** Accepted `alg` values; default: every one the key allows. */
  algorithms?: readonly MlKemAlg[];
  /** Accepted `enc` values; default: all of ML_KEM_ENCS. */
  encryptionAlgorithms?: readonly MlKemEnc[];
}

interface EncSpec {
  kind: "gcm" | "cbc-hs";
  /** CEK length in octets (MAC key + ENC key for CBC-HS). */
  cekLen: number;
  ivLen: number;
  tagLen: number;
  hash?: "SHA-256" | "SHA-384" | "SHA-512";
}

const ENC_SPECS: Record<MlKemEnc, EncSpec> = {
  A128GCM: { kind: "gcm", cekLen: 16, ivLen: 12, tagLen: 16 },
  A192GCM: { kind: "gcm", cekLen: 24, ivLen: 12, tagLen: 16 },
  A256GCM: { kind: "gcm", cekLen: 32, ivLen: 12, tagLen: 16 },
  "A128CBC-HS256": { kind: "cbc-hs", cekLen: 32, ivLen: 16, tagLen: 16, hash: "SHA-256" },
  "A192CBC-HS384": { kind: "cbc-hs", cekLen: 48, ivLen: 16, tagLen: 24, hash: "SHA-384" },
  "A256CBC-HS512": { kind: "cbc-hs", cekLen: 64, ivLen: 16, tagLen: 32, hash: "SHA-512" },
};

/** KEK length in octets for the key-wrap algs; null for direct. */
const KEK_LEN: Record<MlKemAlg, number | null> = { "ML-KEM-768": null, "ML-KEM-768+A192KW": 24, "ML-KEM-768+A256KW": 32 };

// A protected header is ~1.5 KiB; anything much larger is not ours and is not parsed.
const MAX_PROTECTED_CHARS = 8192;

const subtle = globalThis.crypto.subtle;
/** Bytes backed by a plain ArrayBuffer, as WebCrypto's typings require. */
type Bytes = Uint8Array<ArrayBuffer>;
const utf8 = new TextEncoder();

export const isMlKemAlg = (v: unknown): v is MlKemAlg => typeof v === "string" && (ML_KEM_ALGS as readonly string[]).includes(v);
export const isMlKemEnc = (v: unknown): v is MlKemEnc => typeof v === "string" && (ML_KEM_ENCS as readonly string[]).includes(v);

const malformedKey = (message: string) => new AppError("malformed_key", message, { status: 400 });
const malformedJose = (message: string) => new AppError("malformed_jose", message, { status: 400 });
// One message for every cryptographic failure, so errors reveal nothing about where it failed.
const decryptionFailed = () => new AppError("decryption_failed", "the JWE could not be decrypted");

// ---------------------------------------------------------------------------------------------
// Keys

/**
 * Generates a new ML-KEM-768 key from a fresh 64-octet seed.
 * @example const jwk = generateMlKemJwk("ML-KEM-768+A256KW", { kid: "k1" });
 */
export function generateMlKemJwk(alg: MlKemAlg = ML_KEM_768, opts: { kid?: string } = {}): MlKemPrivateJwk {
  if (!isMlKemAlg(alg)) throw malformedKey(`unsupported ML-KEM key alg ${String(alg)}`);
  const seed = crypto.getRandomValues(new Uint8Array(ML_KEM_768_SIZES.seed));
  const { publicKey, secretKey } = ml_kem768.keygen(seed);
  const jwk: MlKemPrivateJwk = { kty: "AKP", alg, pub: encodeBase64url(publicKey), priv: encodeBase64url(seed) };
  if (opts.kid !== undefined) jwk.kid = opts.kid;
  seed.fill(0);
  secretKey.fill(0);
  return jwk;
}

/**
 * The public part of an ML-KEM JWK (validated first).
 * @example const pub = publicMlKemJwk(privateJwk); // { kty, alg, pub, kid? }
 */
export function publicMlKemJwk(jwk: MlKemPublicJwk | MlKemPrivateJwk): MlKemPublicJwk {
  const v = validateMlKemJwk(jwk);
  const out: MlKemPublicJwk = { kty: "AKP", alg: v.alg, pub: v.pub };
  if (v.kid !== undefined) out.kid = v.kid;
  return out;
}

/**
 * Checks an ML-KEM-768 AKP JWK, public or private, and returns it typed. With `alg`, also
 * checks that the key may be used with that JWE `alg`. A private key's `pub`, if present,
 * must be the one its seed derives. Throws `malformed_key`.
 * @example validateMlKemJwk(jwk, "ML-KEM-768+A192KW");
 */
export function validateMlKemJwk(jwk: unknown, alg?: MlKemAlg): MlKemPublicJwk | MlKemPrivateJwk {
  checkJwkShape(jwk, alg);
  const j = jwk as MlKemPrivateJwk;
  if (j.priv !== undefined) {
    const keys = expandPrivate(j);
    keys.secretKey.fill(0);
    return { ...j, pub: encodeBase64url(keys.publicKey) };
  }
  checkPublicKeyBytes(decodeKeyField(j.pub, "pub"));
  return j;
}

function checkJwkShape(jwk: unknown, alg?: MlKemAlg): void {
  if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) throw malformedKey("JWK must be an object");
  const j = jwk as Record<string, unknown>;
  if (j.kty !== "AKP") throw malformedKey("JWK kty must be AKP");
  if (j.alg !== ML_KEM_768 && !isMlKemAlg(j.alg)) throw malformedKey("JWK alg is not an ML-KEM-768 algorithm");
  if (alg !== undefined && j.alg !== ML_KEM_768 && j.alg !== alg) throw malformedKey(`JWK alg ${String(j.alg)} does not allow ${alg}`);
  if (j.kid !== undefined && typeof j.kid !== "string") throw malformedKey("JWK kid must be a string");
  if (j.priv === undefined && typeof j.pub !== "string") throw malformedKey("JWK pub is missing");
  if (j.pub !== undefined && typeof j.pub !== "string") throw malformedKey("JWK pub must be a string");
  if (j.priv !== undefined && typeof j.priv !== "string") throw malformedKey("JWK priv must be a string");
}

function decodeKeyField(value: string, name: string): Uint8Array<ArrayBuffer> {
  try {
    return decodeCanonical(value);
  } catch {
    throw malformedKey(`JWK ${name} is not base64url`);
  }
}

/** FIPS 203 §7.2 encapsulation-key check: length, and every 12-bit coefficient below q. */
function checkPublicKeyBytes(pub: Uint8Array): void {
  if (pub.length !== ML_KEM_768_SIZES.publicKey) throw malformedKey(`ML-KEM-768 pub must be ${ML_KEM_768_SIZES.publicKey} octets`);
  // The first 384*k octets are t-hat, two 12-bit little-endian coefficients per 3 octets; rho follows.
  for (let i = 0; i < 384 * 3; i += 3) {
    const b0 = pub[i]!, b1 = pub[i + 1]!, b2 = pub[i + 2]!;
    if ((b0 | ((b1 & 0x0f) << 8)) >= 3329 || ((b1 >> 4) | (b2 << 4)) >= 3329) throw malformedKey("ML-KEM-768 pub fails the modulus check");
  }
}

/** Expands a private JWK's seed; checks its `pub` (if any) against the derived one. */
function expandPrivate(j: MlKemPrivateJwk): { publicKey: Uint8Array; secretKey: Uint8Array } {
  const seed = decodeKeyField(j.priv, "priv");
  if (seed.length !== ML_KEM_768_SIZES.seed) throw malformedKey(`ML-KEM-768 priv must be the ${ML_KEM_768_SIZES.seed}-octet seed`);
  const keys = ml_kem768.keygen(seed);
  seed.fill(0);
  if (j.pub !== undefined) {
    const given = decodeKeyField(j.pub, "pub");
    // Public data, but compared without early exit anyway.
    if (given.length !== keys.publicKey.length || !equalConstantTime(given, keys.publicKey)) {
      keys.secretKey.fill(0);
      throw malformedKey("JWK pub does not match the key derived from priv");
    }
  }
  return keys;
}

// ---------------------------------------------------------------------------------------------
// Encrypt

/**
 * Encrypts `plaintext` to an ML-KEM-768 public key as a JWE.
 * @example
 *   const jwe = await encryptMlKem(pub, data, { alg: "ML-KEM-768+A192KW", enc: "A256GCM" });
 *   const json = await encryptMlKem(pub, data, { format: "flattened", aad: ctx });
 */
export async function encryptMlKem(publicJwk: MlKemPublicJwk, plaintext: Uint8Array, opts: EncryptMlKemOptions & { format: "flattened" }): Promise<FlattenedMlKemJwe>;
export async function encryptMlKem(publicJwk: MlKemPublicJwk, plaintext: Uint8Array, opts?: EncryptMlKemOptions & { format?: "compact" }): Promise<string>;
export async function encryptMlKem(publicJwk: MlKemPublicJwk, plaintext: Uint8Array, opts: EncryptMlKemOptions = {}): Promise<string | FlattenedMlKemJwe> {
  const format = opts.format ?? "compact";
  if (format !== "compact" && format !== "flattened") throw new AppError("validation_failed", "format must be compact or flattened");
  const alg = opts.alg ?? (isMlKemAlg(publicJwk?.alg) ? publicJwk.alg : ML_KEM_768);
  if (!isMlKemAlg(alg)) throw new AppError("validation_failed", `unsupported alg ${String(alg)}`);
  const enc = opts.enc ?? "A256GCM";
  if (!isMlKemEnc(enc)) throw new AppError("validation_failed", `unsupported enc ${String(enc)}`);
  if (!(plaintext instanceof Uint8Array)) throw new AppError("validation_failed", "plaintext must be bytes");
  if (opts.aad !== undefined && !(opts.aad instanceof Uint8Array)) throw new AppError("validation_failed", "aad must be bytes");
  if (opts.aad !== undefined && format === "compact") throw new AppError("validation_failed", "AAD needs the flattened serialization");
  if (opts.kid !== undefined && typeof opts.kid !== "string") throw new AppError("validation_failed", "kid must be a string");
  const extra = opts.header ?? {};
  if (typeof extra !== "object" || extra === null || Array.isArray(extra)) throw new AppError("validation_failed", "header must be an object");
  for (const [name, value] of Object.entries(extra)) {
    if (RESERVED_HEADER.has(name)) throw new AppError("validation_failed", `header member ${name} is set by the encryption itself`);
    if (typeof value !== "string") throw new AppError("validation_failed", `header member ${name} must be a string`);
  }

  checkJwkShape(publicJwk, alg);
  let pub: Uint8Array;
  if (typeof publicJwk.pub === "string") {
    pub = decodeKeyField(publicJwk.pub, "pub");
    checkPublicKeyBytes(pub);
  } else {
    // A private JWK without `pub`: derive it from the seed.
    const keys = expandPrivate(publicJwk as MlKemPrivateJwk);
    keys.secretKey.fill(0);
    pub = keys.publicKey;
  }

  const spec = ENC_SPECS[enc];
  const { cipherText, sharedSecret } = ml_kem768.encapsulate(pub);
  const header: MlKemJweHeader = { alg, enc, kemct: encodeBase64url(cipherText) };
  const kid = opts.kid ?? publicJwk.kid;
  if (kid !== undefined) header.kid = kid;
  Object.assign(header, extra);
  const protectedB64 = encodeBase64url(utf8.encode(JSON.stringify(header)));

  const kekLen = KEK_LEN[alg];
  let cek: Bytes;
  let encryptedKey: Uint8Array = new Uint8Array(0);
  if (kekLen === null) {
    cek = deriveKey(sharedSecret, enc, spec.cekLen);
  } else {
    const kek = deriveKey(sharedSecret, alg, kekLen);
    cek = crypto.getRandomValues(new Uint8Array(spec.cekLen));
    try {
      encryptedKey = await aesKwWrap(kek, cek);
    } finally {
      kek.fill(0);
    }
  }
  sharedSecret.fill(0);

  const aadB64 = opts.aad === undefined ? undefined : encodeBase64url(opts.aad);
  const aadBytes = utf8.encode(aadB64 === undefined ? protectedB64 : `${protectedB64}.${aadB64}`);
  const iv = crypto.getRandomValues(new Uint8Array(spec.ivLen));
  let sealed: { ciphertext: Uint8Array; tag: Uint8Array };
  try {
    sealed = await contentEncrypt(spec, cek, iv, plaintext, aadBytes);
  } finally {
    cek.fill(0);
  }

  if (format === "compact") {
    return [protectedB64, encodeBase64url(encryptedKey), encodeBase64url(iv), encodeBase64url(sealed.ciphertext), encodeBase64url(sealed.tag)].join(".");
  }
  const out: FlattenedMlKemJwe = { protected: protectedB64, iv: encodeBase64url(iv), ciphertext: encodeBase64url(sealed.ciphertext), tag: encodeBase64url(sealed.tag) };
  if (encryptedKey.length > 0) out.encrypted_key = encodeBase64url(encryptedKey);
  if (aadB64 !== undefined) out.aad = aadB64;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decrypt

interface ParsedJwe {
  protectedB64: string;
  header: MlKemJweHeader;
  kemCt: Uint8Array;
  encryptedKey: Bytes;
  iv: Bytes;
  ciphertext: Bytes;
  tag: Uint8Array;
  aadB64?: string;
}

/**
 * Reads the protected header of an ML-KEM JWE without decrypting (e.g. to pick a key by `kid`).
 * Throws `malformed_jose` for anything that is not a well-formed ML-KEM JWE.
 * @example const { kid } = readMlKemJweHeader(jwe);
 */
export function readMlKemJweHeader(jwe: string | FlattenedMlKemJwe): MlKemJweHeader {
  return parseJwe(jwe, ML_KEM_ALGS, ML_KEM_ENCS).header;
}

// Expanded decapsulation keys live here, not on the object, so logging or serializing a
// MlKemDecapsulationKey can never show secret material.
const EXPANDED = new WeakMap<MlKemDecapsulationKey, Uint8Array>();

/**
 * A validated private key with its seed expanded once, for repeated decryption (saves the
 * FIPS 203 key expansion, about a third of a decryption). Holds no secret in its own fields.
 * @example
 *   const dk = importMlKemPrivateJwk(privateJwk);
 *   const plaintext = await decryptMlKem(dk, jwe);
 *   dk.destroy();
 */
export class MlKemDecapsulationKey {
  readonly alg: string;
  readonly kid?: string;
  readonly publicJwk: MlKemPublicJwk;

  /** Use importMlKemPrivateJwk. */
  private constructor(publicJwk: MlKemPublicJwk, secretKey: Uint8Array) {
    this.alg = publicJwk.alg;
    if (publicJwk.kid !== undefined) this.kid = publicJwk.kid;
    this.publicJwk = publicJwk;
    EXPANDED.set(this, secretKey);
  }

  /** @internal */
  static create(jwk: MlKemPrivateJwk): MlKemDecapsulationKey {
    checkJwkShape(jwk);
    if (typeof (jwk as { priv?: unknown }).priv !== "string") throw malformedKey("decryption needs a private JWK (priv)");
    const { publicKey, secretKey } = expandPrivate(jwk);
    const publicJwk: MlKemPublicJwk = { kty: "AKP", alg: jwk.alg, pub: encodeBase64url(publicKey) };
    if (jwk.kid !== undefined) publicJwk.kid = jwk.kid;
    return new MlKemDecapsulationKey(publicJwk, secretKey);
  }

  /** Wipes the expanded key; later decryptions with it fail with `malformed_key`. */
  destroy(): void {
    EXPANDED.get(this)?.fill(0);
    EXPANDED.delete(this);
  }
}

/**
 * Validates a private ML-KEM JWK (as validateMlKemJwk) and expands it for repeated use.
 * @example const dk = importMlKemPrivateJwk(privateJwk);
 */
export function importMlKemPrivateJwk(jwk: MlKemPrivateJwk): MlKemDecapsulationKey {
  return MlKemDecapsulationKey.create(jwk);
}

/**
 * Decrypts a compact (string) or flattened (object, or its JSON text) ML-KEM JWE with a private
 * JWK or an imported MlKemDecapsulationKey.
 * Throws `malformed_key`, `malformed_jose` (structure) or `decryption_failed` (crypto).
 * @example const plaintext = await decryptMlKem(privateJwk, jwe, { algorithms: ["ML-KEM-768+A192KW"] });
 */
export async function decryptMlKem(key: MlKemPrivateJwk | MlKemDecapsulationKey, jwe: string | FlattenedMlKemJwe, opts: DecryptMlKemOptions = {}): Promise<Uint8Array> {
  const algorithms = opts.algorithms ?? ML_KEM_ALGS;
  const encs = opts.encryptionAlgorithms ?? ML_KEM_ENCS;
  if (!Array.isArray(algorithms) || !algorithms.every(isMlKemAlg)) throw new AppError("validation_failed", "algorithms must list ML-KEM algs");
  if (!Array.isArray(encs) || !encs.every(isMlKemEnc)) throw new AppError("validation_failed", "encryptionAlgorithms must list enc values");

  const imported = key instanceof MlKemDecapsulationKey;
  const dk = imported ? key : importMlKemPrivateJwk(key);
  try {
    const parsed = parseJwe(jwe, algorithms, encs);
    const { alg, enc } = parsed.header;
    checkJwkShape(dk.publicJwk, alg);
    const secretKey = EXPANDED.get(dk);
    if (secretKey === undefined) throw malformedKey("the ML-KEM key was destroyed");
    const spec = ENC_SPECS[enc];

    let sharedSecret: Uint8Array;
    try {
      sharedSecret = ml_kem768.decapsulate(parsed.kemCt, secretKey);
    } catch {
      throw decryptionFailed();
    }

    const kekLen = KEK_LEN[alg];
    let cek: Bytes;
    if (kekLen === null) {
      cek = deriveKey(sharedSecret, enc, spec.cekLen);
    } else {
      const kek = deriveKey(sharedSecret, alg, kekLen);
      try {
        cek = (await aesKwUnwrap(kek, parsed.encryptedKey, spec.cekLen)) ?? crypto.getRandomValues(new Uint8Array(spec.cekLen));
      } finally {
        kek.fill(0);
      }
    }
    sharedSecret.fill(0);

    const aadBytes = utf8.encode(parsed.aadB64 === undefined ? parsed.protectedB64 : `${parsed.protectedB64}.${parsed.aadB64}`);
    try {
      const plaintext = await contentDecrypt(spec, cek, parsed.iv, parsed.ciphertext, parsed.tag, aadBytes);
      if (plaintext === null) throw decryptionFailed();
      return plaintext;
    } finally {
      cek.fill(0);
    }
  } finally {
    if (!imported) dk.destroy();
  }
}

function parseJwe(jwe: unknown, algorithms: readonly MlKemAlg[], encs: readonly MlKemEnc[]): ParsedJwe {
  let protectedB64: string, encryptedKeyB64: string, ivB64: string, ciphertextB64: string, tagB64: string;
  let aadB64: string | undefined;
  const unprotected: Record<string, unknown>[] = [];
  if (typeof jwe === "string" && !jwe.trimStart().startsWith("{")) {
    const parts = jwe.split(".");
    if (parts.length !== 5) throw malformedJose("compact JWE must have 5 parts");
    [protectedB64, encryptedKeyB64, ivB64, ciphertextB64, tagB64] = parts as [string, string, string, string, string];
  } else {
    let obj: unknown = jwe;
    if (typeof jwe === "string") {
      try {
        obj = JSON.parse(jwe);
      } catch {
        throw malformedJose("JWE JSON serialization is not valid JSON");
      }
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) throw malformedJose("JWE must be a compact string or a flattened JSON object");
    const o = obj as Record<string, unknown>;
    if ("recipients" in o) throw malformedJose("general JSON serialization is not supported; use flattened");
    const str = (name: string, optional: boolean): string | undefined => {
      const v = o[name];
      if (v === undefined && optional) return undefined;
      if (typeof v !== "string") throw malformedJose(`JWE member ${name} must be a string`);
      return v;
    };
    protectedB64 = str("protected", false)!;
    encryptedKeyB64 = str("encrypted_key", true) ?? "";
    ivB64 = str("iv", false)!;
    ciphertextB64 = str("ciphertext", false)!;
    tagB64 = str("tag", false)!;
    aadB64 = str("aad", true);
    for (const name of ["unprotected", "header"]) {
      const v = o[name];
      if (v === undefined) continue;
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw malformedJose(`JWE member ${name} must be an object`);
      unprotected.push(v as Record<string, unknown>);
    }
  }

  if (protectedB64.length === 0 || protectedB64.length > MAX_PROTECTED_CHARS) throw malformedJose("JWE protected header is missing or too large");
  const header = parseProtectedHeader(protectedB64, algorithms, encs);
  // RFC 7516 §7.2.1: header parameter names must be disjoint; the crypto ones must be protected.
  const seen = new Set(Object.keys(header));
  for (const u of unprotected) {
    for (const name of Object.keys(u)) {
      if (seen.has(name)) throw malformedJose(`JWE header parameter ${name} is duplicated`);
      if (["alg", "enc", "kemct", "zip", "crit"].includes(name)) throw malformedJose(`JWE header parameter ${name} must be integrity protected`);
      seen.add(name);
    }
  }

  const spec = ENC_SPECS[header.enc];
  const kemCt = decodeJosePart(header.kemct, "kemct");
  if (kemCt.length !== ML_KEM_768_SIZES.cipherText) throw malformedJose(`kemct must be ${ML_KEM_768_SIZES.cipherText} octets`);
  const encryptedKey = decodeJosePart(encryptedKeyB64, "encrypted_key");
  const kekLen = KEK_LEN[header.alg];
  if (kekLen === null) {
    if (encryptedKey.length !== 0) throw malformedJose("direct ML-KEM JWE must not carry an encrypted key");
  } else if (encryptedKey.length !== spec.cekLen + 8) {
    throw malformedJose(`encrypted key must be ${spec.cekLen + 8} octets for ${header.enc}`);
  }
  const iv = decodeJosePart(ivB64, "iv");
  if (iv.length !== spec.ivLen) throw malformedJose(`iv must be ${spec.ivLen} octets for ${header.enc}`);
  const ciphertext = decodeJosePart(ciphertextB64, "ciphertext");
  if (spec.kind === "cbc-hs" && (ciphertext.length === 0 || ciphertext.length % 16 !== 0)) throw malformedJose("CBC ciphertext must be a positive multiple of 16 octets");
  const tag = decodeJosePart(tagB64, "tag");
  if (tag.length !== spec.tagLen) throw malformedJose(`tag must be ${spec.tagLen} octets for ${header.enc}`);
  if (aadB64 !== undefined) decodeJosePart(aadB64, "aad");
  return { protectedB64, header, kemCt, encryptedKey, iv, ciphertext, tag, aadB64 };
}

function parseProtectedHeader(protectedB64: string, algorithms: readonly MlKemAlg[], encs: readonly MlKemEnc[]): MlKemJweHeader {
  const raw = decodeJosePart(protectedB64, "protected");
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch {
    throw malformedJose("JWE protected header is not UTF-8 JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw malformedJose("JWE protected header must be a JSON object");
  const h = value as Record<string, unknown>;
  if (!isMlKemAlg(h.alg)) throw malformedJose("JWE alg is not an ML-KEM-768 algorithm");
  if (!algorithms.includes(h.alg)) throw malformedJose(`JWE alg ${h.alg} is not allowed`);
  if (!isMlKemEnc(h.enc)) throw malformedJose("JWE enc is not supported");
  if (!encs.includes(h.enc)) throw malformedJose(`JWE enc ${h.enc} is not allowed`);
  if (typeof h.kemct !== "string") throw malformedJose("JWE kemct header is missing");
  if (h.kid !== undefined && typeof h.kid !== "string") throw malformedJose("JWE kid must be a string");
  // No extension is understood, and compression invites oracles: refuse both.
  if (h.crit !== undefined) throw malformedJose("JWE crit extensions are not supported");
  if (h.zip !== undefined) throw malformedJose("JWE zip is not supported");
  return h as MlKemJweHeader;
}

function decodeJosePart(value: string, name: string): Uint8Array<ArrayBuffer> {
  try {
    return decodeCanonical(value);
  } catch {
    throw malformedJose(`JWE ${name} is not base64url`);
  }
}

/** Strict base64url: rejects non-canonical trailing bits, so a JWE has exactly one spelling. */
function decodeCanonical(value: string): Uint8Array<ArrayBuffer> {
  const bytes = decodeBase64url(value);
  if (encodeBase64url(bytes) !== value) throw new Error("non-canonical base64url");
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// Primitives

/** The draft's JOSE KDF: KMAC256(SS', uint32(len(id)) || id || uint32(bits), bits, ""). */
function deriveKey(sharedSecret: Uint8Array, algorithmId: string, lenOctets: number): Bytes {
  const id = utf8.encode(algorithmId);
  const x = new Uint8Array(4 + id.length + 4);
  const view = new DataView(x.buffer);
  view.setUint32(0, id.length);
  x.set(id, 4);
  view.setUint32(4 + id.length, lenOctets * 8);
  return kmac256(sharedSecret, x, { dkLen: lenOctets });
}

// WebCrypto AES-KW only wraps CryptoKeys: the CEK travels as an extractable HMAC key.
const CEK_AS_KEY = { name: "HMAC", hash: "SHA-256" } as const;

async function aesKwWrap(kek: Bytes, cek: Bytes): Promise<Uint8Array> {
  const kekKey = await subtle.importKey("raw", kek, "AES-KW", false, ["wrapKey"]);
  const cekKey = await subtle.importKey("raw", cek, CEK_AS_KEY, true, ["sign"]);
  return new Uint8Array(await subtle.wrapKey("raw", cekKey, kekKey, "AES-KW"));
}

/** The unwrapped CEK, or null when the RFC 3394 integrity check fails. */
async function aesKwUnwrap(kek: Bytes, wrapped: Bytes, cekLen: number): Promise<Bytes | null> {
  const kekKey = await subtle.importKey("raw", kek, "AES-KW", false, ["unwrapKey"]);
  try {
    const cekKey = await subtle.unwrapKey("raw", wrapped, kekKey, "AES-KW", CEK_AS_KEY, true, ["sign"]);
    const cek = new Uint8Array(await subtle.exportKey("raw", cekKey));
    if (cek.length === cekLen) return cek;
    cek.fill(0);
    return null;
  } catch {
    return null;
  }
}

async function contentEncrypt(spec: EncSpec, cek: Bytes, iv: Bytes, plaintext: Uint8Array, aad: Bytes): Promise<{ ciphertext: Uint8Array; tag: Uint8Array }> {
  if (spec.kind === "gcm") {
    const key = await subtle.importKey("raw", cek, "AES-GCM", false, ["encrypt"]);
    const out = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv, additionalData: aad, tagLength: 128 }, key, toBuffer(plaintext)));
    return { ciphertext: out.slice(0, out.length - spec.tagLen), tag: out.slice(out.length - spec.tagLen) };
  }
  const half = spec.cekLen / 2;
  const encKey = await subtle.importKey("raw", cek.subarray(half), "AES-CBC", false, ["encrypt"]);
  const ciphertext = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, encKey, toBuffer(plaintext)));
  const tag = await cbcHsTag(spec, cek.subarray(0, half), aad, iv, ciphertext);
  return { ciphertext, tag };
}

/** The plaintext, or null on any authentication failure. */
async function contentDecrypt(spec: EncSpec, cek: Bytes, iv: Bytes, ciphertext: Bytes, tag: Uint8Array, aad: Bytes): Promise<Uint8Array | null> {
  if (spec.kind === "gcm") {
    const key = await subtle.importKey("raw", cek, "AES-GCM", false, ["decrypt"]);
    const sealed = new Uint8Array(ciphertext.length + tag.length);
    sealed.set(ciphertext);
    sealed.set(tag, ciphertext.length);
    try {
      return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv, additionalData: aad, tagLength: 128 }, key, sealed));
    } catch {
      return null;
    }
  }
  const half = spec.cekLen / 2;
  const expected = await cbcHsTag(spec, cek.subarray(0, half), aad, iv, ciphertext);
  // The tag is checked in full, in constant time, before CBC runs: no padding oracle.
  if (!equalConstantTime(expected, tag)) return null;
  const encKey = await subtle.importKey("raw", cek.subarray(half), "AES-CBC", false, ["decrypt"]);
  try {
    return new Uint8Array(await subtle.decrypt({ name: "AES-CBC", iv }, encKey, ciphertext));
  } catch {
    return null;
  }
}

/** RFC 7518 §5.2.2.1: HMAC(MAC_KEY, A || IV || E || AL) truncated to T_LEN. */
async function cbcHsTag(spec: EncSpec, macKey: Bytes, aad: Uint8Array, iv: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
  const input = new Uint8Array(aad.length + iv.length + ciphertext.length + 8);
  input.set(aad, 0);
  input.set(iv, aad.length);
  input.set(ciphertext, aad.length + iv.length);
  new DataView(input.buffer).setBigUint64(input.length - 8, BigInt(aad.length) * 8n);
  const key = await subtle.importKey("raw", macKey, { name: "HMAC", hash: spec.hash! }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", key, input)).slice(0, spec.tagLen);
}

/** Equal-length comparison with no data-dependent branch or early exit. */
function equalConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

/** Public bytes as `Bytes`: copies only when the view is not over a plain ArrayBuffer. */
function toBuffer(bytes: Uint8Array): Bytes {
  if (bytes.buffer instanceof ArrayBuffer) return bytes as Bytes;
  const out = new Uint8Array(bytes.length);
  out.set(bytes);
  return out;
}
