/**
 * JOSE operations on keyring versions, shared by sm-kms and jose-ja: compact JWS sign and
 * verify, JWE encrypt and open, MAC and MAC verify, with one stable error code per failure
 * kind. They work the same whether a version's key is software (non-extractable CryptoKeys)
 * or lives in an HSM: callers never branch on where a key is.
 *
 * Guarantees:
 * - A JWS/JWE's `kid` must name a version of the key the caller addressed; its `alg` (and
 *   `enc`) must be that key's own: no algorithm substitution, no key confusion.
 * - Every failure to verify is `signature_invalid`, to decrypt `decryption_failed`, whatever
 *   check failed; input that is not JOSE at all is `malformed_jose`. A public-only key that is
 *   asked to sign or decrypt is `key_public_only`.
 * - Software keys: JOSE parsing and crypto are `jose`'s, on WebCrypto. HSM keys: the private or
 *   secret step runs in the token (`src/crypto/pkcs11/keyring-objects.ts`), the JOSE framing and
 *   per-message content encryption here and in `jwe-parts.ts`; public-key steps (verify,
 *   encrypt to a public key) stay `jose`'s with the public JWK. MACs and tags are compared in
 *   constant time. Outputs are standard JWS/JWE that `jose` verifies and decrypts.
 */
import { contentEncryptions, isMlKem, type AlgorithmSpec, type ContentEncryption, type KeyPurpose, type UsableKey } from "./algorithms.ts";
import { decryptMlKem, encryptMlKem, type FlattenedMlKemJwe, type MlKemAlg, type MlKemEnc, type MlKemPublicJwk } from "./pq-kem.ts";
import {
  CompactEncrypt,
  CompactSign,
  FlattenedEncrypt,
  compactDecrypt,
  compactVerify,
  decodeProtectedHeader,
  flattenedDecrypt,
  errors as joseErrors,
  type CompactJWEHeaderParameters,
  type FlattenedJWE,
  type JWEHeaderParameters,
  type ProtectedHeaderParameters,
} from "jose";
import { AppError } from "../service/errors.ts";
import { inChildSpan, SpanKind } from "../telemetry/index.ts";
import { equalBytes } from "../crypto/constant-time.ts";
import { validatePoint } from "../crypto/provider.ts";
import type { TokenKeyObjects, TokenObject, TokenSignAlg } from "../crypto/pkcs11/keyring-objects.ts";
import type { ActiveVersion, Keyring } from "./keyring.ts";
import { parseKid } from "./keyring.ts";
import { decodeBase64url, encodeBase64url } from "./base64url.ts";
import {
  CEK_BYTES,
  aesKwUnwrap,
  concatKdf,
  decryptContent,
  encryptContent,
  mergeJweHeaders,
  oaepDecode,
  parseJwe,
  type FlattenedJweInput,
  type JweParts,
} from "./jwe-parts.ts";

export const malformedJose = (what: string) => new AppError("malformed_jose", `malformed ${what}`, { status: 400 });
export const decryptionFailed = () => new AppError("decryption_failed", "the JWE does not decrypt with this key and context");
export const signatureInvalid = () => new AppError("signature_invalid", "the signature does not verify with this key", { status: 400 });
export const keyPublicOnly = () =>
  new AppError("key_public_only", "this key holds only a public key: it can verify and encrypt, not sign or decrypt", { status: 409 });

const utf8 = new TextEncoder();
const b64u = encodeBase64url;

/** The version named by a JOSE object's `kid`, which must be a version of key `id`. */
export function versionFromKid(kid: unknown, id: string, fail: () => AppError): number {
  const k = parseKid(kid);
  if (!k || k.id !== id) throw fail();
  return k.version;
}

/** The protected header of a compact JWS (3 parts) or JWE (5 parts) or a flattened JWE; else `malformed_jose`. */
export function protectedHeaderOf(jose: string | FlattenedJWE, parts: 3 | 5, what: string): ProtectedHeaderParameters {
  try {
    if (typeof jose === "string" && jose.split(".").length !== parts) throw new Error("parts");
    return decodeProtectedHeader(jose as string);
  } catch {
    throw malformedJose(what);
  }
}

/**
 * The JOSE header of a compact or flattened JWE: its protected header, merged for a flattened
 * one with its `unprotected` and per-recipient `header` members (disjoint names, RFC 7516 §7.2.1).
 */
export function jweHeaderOf(jwe: string | FlattenedJWE): JWEHeaderParameters {
  const protectedHeader = protectedHeaderOf(jwe, 5, "JWE") as Record<string, unknown>;
  if (typeof jwe === "string") return protectedHeader as JWEHeaderParameters;
  return mergeJweHeaders(protectedHeader, jwe.unprotected, jwe.header) as JWEHeaderParameters;
}

/** Whether the version can sign / decrypt / mac (it holds a private or secret key, in software or a token). */
export function hasPrivate(active: ActiveVersion): boolean {
  return active.usable.secret !== undefined || active.usable.token !== undefined || active.usable.kem !== undefined;
}

type Token = { objects: TokenKeyObjects; object: TokenObject };

/** The software private/secret key, or the token object; `key_public_only` when there is neither. */
function privateOf(active: { usable: UsableKey }): { secret: CryptoKey; token?: undefined } | { secret?: undefined; token: Token } {
  if (active.usable.token) return { token: active.usable.token };
  if (active.usable.secret) return { secret: active.usable.secret };
  throw keyPublicOnly();
}

/** The key that verifies / encrypts: the public key of asymmetric versions, else the secret. */
function publicOf(active: ActiveVersion): CryptoKey | undefined {
  return active.spec.asymmetric ? active.usable.public : active.usable.secret;
}

const HMAC_HASH = { HS256: "SHA-256", HS384: "SHA-384", HS512: "SHA-512" } as const;
const hmacHash = (name: string) => HMAC_HASH[name as keyof typeof HMAC_HASH];

// --- JWS ----------------------------------------------------------------------------------

/** A JWS in flattened JSON serialization (RFC 7515 §7.2.2), protected header only; no `payload` when detached. */
export interface FlattenedJwsOut {
  protected: string;
  payload?: string;
  signature: string;
}

/** The flattened JSON form of a compact JWS: the same signing input, other framing. */
export function flattenedFromCompact(jws: string, detached = false): FlattenedJwsOut {
  const [h, p, s] = jws.split(".") as [string, string, string];
  return detached ? { protected: h, signature: s } : { protected: h, payload: p, signature: s };
}

/** The compact form of a flattened JWS (its payload empty when detached), for `verifyCompact`. */
export function compactFromFlattened(jws: FlattenedJwsOut): string {
  return `${jws.protected}.${jws.payload ?? ""}.${jws.signature}`;
}

/** A compact JWS over `payload` with the version's key; `kid` names the version. */
async function signCompactOp(active: ActiveVersion, payload: Uint8Array, extraHeader: Record<string, string> = {}): Promise<string> {
  const header = { ...extraHeader, alg: active.spec.jose, kid: active.kid };
  const key = privateOf(active);
  if (key.secret) return new CompactSign(payload).setProtectedHeader(header).sign(key.secret);
  const input = `${b64u(utf8.encode(JSON.stringify(header)))}.${b64u(payload)}`;
  const { objects, object } = key.token;
  const hash = hmacHash(active.spec.jose);
  const sig = hash ? await objects.hmac(object, hash, utf8.encode(input)) : await objects.sign(object, active.spec.jose as TokenSignAlg, utf8.encode(input));
  return `${input}.${b64u(sig)}`;
}

/** Checks an HMAC JWS whose key lives in a token: the MAC is recomputed there and compared in constant time. */
async function verifyTokenMac(active: ActiveVersion, token: Token, jws: string): Promise<{ payload: Uint8Array; header: ProtectedHeaderParameters }> {
  const [h, p, s] = jws.split(".") as [string, string, string];
  let header: ProtectedHeaderParameters;
  let payload: Uint8Array;
  let sig: Uint8Array;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(decodeBase64url(h))) as ProtectedHeaderParameters;
    payload = decodeBase64url(p);
    sig = decodeBase64url(s);
  } catch {
    throw malformedJose("JWS");
  }
  if (!header || typeof header !== "object" || Array.isArray(header) || header.crit !== undefined || header.b64 !== undefined) throw malformedJose("JWS");
  const mac = await token.objects.hmac(token.object, hmacHash(active.spec.jose)!, utf8.encode(`${h}.${p}`));
  if (!equalBytes(mac, sig)) throw signatureInvalid();
  return { payload, header };
}

/**
 * Verifies a compact JWS (payload attached) against the version its kid names, of key `id`
 * of one of `purposes`. Returns the version used and the verified payload and header.
 */
async function verifyCompactOp(
  ring: Keyring,
  tenant: string,
  id: string,
  jws: string,
  purposes: readonly KeyPurpose[] = ["sign"],
): Promise<{ active: ActiveVersion; payload: Uint8Array; header: ProtectedHeaderParameters }> {
  const header = protectedHeaderOf(jws, 3, "JWS");
  const version = versionFromKid(header.kid, id, signatureInvalid);
  const active = await ring.version(tenant, id, version, purposes);
  if (header.alg !== active.spec.jose) throw signatureInvalid();
  const key = publicOf(active);
  if (!key && active.usable.token && hmacHash(active.spec.jose)) return { active, ...(await verifyTokenMac(active, active.usable.token, jws)) };
  if (!key) throw signatureInvalid();
  try {
    const r = await compactVerify(jws, key, { algorithms: [active.spec.jose] });
    return { active, payload: r.payload, header: r.protectedHeader };
  } catch (e) {
    if (e instanceof AppError) throw e;
    if (e instanceof joseErrors.JWSInvalid) throw malformedJose("JWS");
    throw signatureInvalid();
  }
}

// --- MAC ----------------------------------------------------------------------------------

/** The raw HMAC of `data` with a mac key's version. */
async function macOfOp(active: ActiveVersion, data: Uint8Array): Promise<Uint8Array> {
  const key = privateOf(active);
  const hash = hmacHash(active.spec.name);
  if (!hash) throw new AppError("key_purpose_mismatch", `this operation is not allowed for a ${active.spec.purpose} key`);
  if (key.token) return key.token.objects.hmac(key.token.object, hash, data);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key.secret, new Uint8Array(data)));
}

/** Whether `mac` is the HMAC of `data` with the version; compared in constant time. */
async function verifyMacOp(active: ActiveVersion, data: Uint8Array, mac: Uint8Array): Promise<boolean> {
  const key = privateOf(active);
  // WebCrypto's HMAC verify compares in constant time; the token's MAC is compared here, likewise.
  if (key.secret) return crypto.subtle.verify("HMAC", key.secret, new Uint8Array(mac), new Uint8Array(data));
  return equalBytes(await macOfOp(active, data), mac);
}

// --- JWE ----------------------------------------------------------------------------------

export interface EncryptOptions {
  /** `compact` (default) or flattened JSON. */
  format?: "compact" | "json";
  /** Content encryption (default the key's own). */
  enc?: ContentEncryption;
  /** Extra protected header members (cty, an AAD binding, ...). */
  header?: Record<string, string>;
  /** JSON serialization only: the JWE `aad`. */
  aad?: Uint8Array;
}

/** Flattened JWE as produced here: protected header only. */
export type FlattenedJweOut = { protected: string; encrypted_key?: string; iv: string; ciphertext: string; tag: string; aad?: string };

/** Encrypts `plaintext` to the version: `alg` and `kid` name it, `enc` must be one it accepts. */
async function encryptJweOp(active: ActiveVersion, plaintext: Uint8Array, opts: EncryptOptions = {}): Promise<string | FlattenedJweOut> {
  const enc = opts.enc ?? active.spec.enc!;
  if (!contentEncryptions(active.spec).includes(enc)) throw new AppError("validation_failed", `enc ${enc} is not available for ${active.spec.name} keys`);
  if (isMlKem(active.spec)) return encryptMlKemJwe(active, plaintext, enc, opts);
  const header: Record<string, string> = { ...opts.header, alg: active.spec.jose, enc, kid: active.kid };
  const key = publicOf(active);
  if (key) {
    if (opts.format === "json") {
      const e = new FlattenedEncrypt(plaintext).setProtectedHeader(header as CompactJWEHeaderParameters);
      if (opts.aad) e.setAdditionalAuthenticatedData(opts.aad);
      return (await e.encrypt(key)) as FlattenedJweOut;
    }
    return new CompactEncrypt(plaintext).setProtectedHeader(header as CompactJWEHeaderParameters).encrypt(key);
  }
  const token = active.usable.token;
  if (!token) throw keyPublicOnly();
  return encryptWithToken(active, token, plaintext, enc, header, opts);
}

/** ML-KEM versions: the JWE is pq-kem.ts's (draft-ietf-jose-pqc-kem), to the public key. */
async function encryptMlKemJwe(active: ActiveVersion, plaintext: Uint8Array, enc: ContentEncryption, opts: EncryptOptions): Promise<string | FlattenedJweOut> {
  const pub = active.usable.publicJwk as MlKemPublicJwk;
  const base = { alg: active.spec.jose as MlKemAlg, enc: enc as MlKemEnc, kid: active.kid, header: opts.header };
  if (opts.format === "json") return (await encryptMlKem(pub, plaintext, { ...base, aad: opts.aad, format: "flattened" })) as FlattenedJweOut;
  return encryptMlKem(pub, plaintext, base);
}

/** dir, A256KW and A256GCMKW with the key in the token: the JWE is assembled here. */
async function encryptWithToken(active: ActiveVersion, token: Token, plaintext: Uint8Array, enc: ContentEncryption, header: Record<string, string>, opts: EncryptOptions): Promise<string | FlattenedJweOut> {
  const { objects, object } = token;
  let encryptedKey: Uint8Array = new Uint8Array(0);
  let cek: Uint8Array | undefined;
  if (active.spec.jose !== "dir") {
    cek = crypto.getRandomValues(new Uint8Array(CEK_BYTES[enc]));
    if (active.spec.jose === "A256KW") {
      encryptedKey = await objects.aesKwWrap(object, cek);
    } else if (active.spec.jose === "A256GCMKW") {
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const out = await objects.aesGcmEncrypt(object, iv, cek);
      encryptedKey = out.subarray(0, out.length - 16);
      header.iv = b64u(iv);
      header.tag = b64u(out.subarray(out.length - 16));
    } else {
      throw new AppError("internal", `no token encryption for ${active.spec.jose}`);
    }
  }
  const protectedB64 = b64u(utf8.encode(JSON.stringify(header)));
  const aadB64 = opts.format === "json" && opts.aad ? b64u(opts.aad) : undefined;
  const aad = utf8.encode(aadB64 === undefined ? protectedB64 : `${protectedB64}.${aadB64}`);
  let iv: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array;
  try {
    if (cek) {
      ({ iv, ciphertext, tag } = await encryptContent(enc, cek, plaintext, aad));
    } else {
      iv = crypto.getRandomValues(new Uint8Array(12));
      const out = await objects.aesGcmEncrypt(object, iv, plaintext, aad);
      ciphertext = out.subarray(0, out.length - 16);
      tag = out.subarray(out.length - 16);
    }
  } finally {
    cek?.fill(0);
  }
  if (opts.format !== "json") return [protectedB64, b64u(encryptedKey), b64u(iv), b64u(ciphertext), b64u(tag)].join(".");
  const out: FlattenedJweOut = { protected: protectedB64, iv: b64u(iv), ciphertext: b64u(ciphertext), tag: b64u(tag) };
  if (encryptedKey.length > 0) out.encrypted_key = b64u(encryptedKey);
  if (aadB64 !== undefined) out.aad = aadB64;
  return out;
}

/** Opens a compact or flattened JWE with the version's private/secret key, accepting only its own alg and enc. */
function openJweOp(active: ActiveVersion, jwe: string | FlattenedJWE): Promise<Uint8Array> {
  return openJweWith(active, jwe);
}

/**
 * `openJwe` for a key that is not a keyring version (e.g. a one-off BYOK import key): its
 * algorithm and opened keys, software or in the token.
 */
export async function openJweWith(active: { spec: AlgorithmSpec; usable: UsableKey }, jwe: string | FlattenedJWE): Promise<Uint8Array> {
  if (isMlKem(active.spec)) {
    if (!active.usable.kem) throw keyPublicOnly();
    const accepted = { algorithms: [active.spec.jose as MlKemAlg], encryptionAlgorithms: contentEncryptions(active.spec) as readonly MlKemEnc[] };
    return decryptMlKem(active.usable.kem, jwe as string | FlattenedMlKemJwe, accepted);
  }
  const key = privateOf(active);
  if (key.token) return openWithToken(active, key.token, jwe as string | FlattenedJweInput);
  const opts = { keyManagementAlgorithms: [active.spec.jose], contentEncryptionAlgorithms: [...contentEncryptions(active.spec)] };
  try {
    const r = typeof jwe === "string" ? await compactDecrypt(jwe, key.secret, opts) : await flattenedDecrypt(jwe, key.secret, opts);
    return r.plaintext;
  } catch (e) {
    if (e instanceof AppError) throw e;
    if (e instanceof joseErrors.JWEInvalid) throw malformedJose("JWE");
    throw decryptionFailed();
  }
}

async function openWithToken(active: { spec: AlgorithmSpec; usable: UsableKey }, token: Token, jwe: string | FlattenedJweInput): Promise<Uint8Array> {
  const parts = parseJwe(jwe);
  const enc = parts.header.enc as ContentEncryption;
  if (parts.header.alg !== active.spec.jose || !contentEncryptions(active.spec).includes(enc)) throw decryptionFailed();
  const { objects, object } = token;
  try {
    if (active.spec.jose === "dir") {
      if (parts.encryptedKey.length !== 0 || parts.iv.length !== 12 || parts.tag.length !== 16) throw decryptionFailed();
      const ct = new Uint8Array(parts.ciphertext.length + 16);
      ct.set(parts.ciphertext);
      ct.set(parts.tag, parts.ciphertext.length);
      return await objects.aesGcmDecrypt(object, parts.iv, ct, parts.aad);
    }
    const cek = await cekFromToken(active, token, parts, enc);
    try {
      return await decryptContent(enc, cek, parts);
    } finally {
      cek.fill(0);
    }
  } catch (e) {
    // A bad epk or key size is the JWE's fault: one answer for every JWE that does not open.
    if (e instanceof AppError && ["malformed_input", "validation_failed"].includes(e.code)) throw decryptionFailed();
    throw e;
  }
}

/** The per-message CEK: unwrapped, decrypted or agreed with the token key. */
async function cekFromToken(active: { spec: AlgorithmSpec; usable: UsableKey }, token: Token, parts: JweParts, enc: ContentEncryption): Promise<Uint8Array> {
  const { objects, object } = token;
  const h = parts.header;
  switch (active.spec.jose) {
    case "A256KW":
      return objects.aesKwUnwrap(object, parts.encryptedKey);
    case "A256GCMKW": {
      const iv = typeof h.iv === "string" ? decodeBase64url(h.iv) : undefined;
      const tag = typeof h.tag === "string" ? decodeBase64url(h.tag) : undefined;
      if (!iv || iv.length !== 12 || !tag || tag.length !== 16 || parts.encryptedKey.length !== CEK_BYTES[enc]) throw decryptionFailed();
      const ct = new Uint8Array(parts.encryptedKey.length + 16);
      ct.set(parts.encryptedKey);
      ct.set(tag, parts.encryptedKey.length);
      return objects.aesGcmDecrypt(object, iv, ct);
    }
    case "RSA-OAEP-256": {
      const k = decodeBase64url(active.usable.publicJwk?.n ?? "").length;
      if (parts.encryptedKey.length !== k) throw decryptionFailed();
      const raw = await objects.rsaDecryptRaw(object, parts.encryptedKey);
      const em = new Uint8Array(k);
      em.set(raw.subarray(Math.max(0, raw.length - k)), Math.max(0, k - raw.length));
      raw.fill(0);
      const m = oaepDecode(em);
      em.fill(0);
      // Bad padding goes on with a random CEK (RFC 7516 §11.5): it then fails like a bad tag.
      if (!m || m.length !== CEK_BYTES[enc]) return crypto.getRandomValues(new Uint8Array(CEK_BYTES[enc]));
      return m;
    }
    case "ECDH-ES":
    case "ECDH-ES+A256KW": {
      const crv = active.spec.crv as "P-256" | "P-384";
      const n = crv === "P-256" ? 32 : 48;
      const epk = h.epk as Record<string, unknown> | undefined;
      if (!epk || typeof epk !== "object" || epk.kty !== "EC" || epk.crv !== crv || typeof epk.x !== "string" || typeof epk.y !== "string") throw decryptionFailed();
      const x = decodeBase64url(epk.x);
      const y = decodeBase64url(epk.y);
      if (x.length !== n || y.length !== n) throw decryptionFailed();
      const point = new Uint8Array(2 * n + 1);
      point[0] = 4;
      point.set(x, 1);
      point.set(y, 1 + n);
      await validatePoint(crv, point, "epk");
      const apu = typeof h.apu === "string" ? decodeBase64url(h.apu) : new Uint8Array(0);
      const apv = typeof h.apv === "string" ? decodeBase64url(h.apv) : new Uint8Array(0);
      const z = await objects.ecdh(object, point);
      try {
        if (active.spec.jose === "ECDH-ES") {
          if (parts.encryptedKey.length !== 0) throw decryptionFailed();
          return concatKdf(z, enc, CEK_BYTES[enc] * 8, apu, apv);
        }
        const kek = concatKdf(z, "ECDH-ES+A256KW", 256, apu, apv);
        try {
          return await aesKwUnwrap(kek, parts.encryptedKey);
        } finally {
          kek.fill(0);
        }
      } finally {
        z.fill(0);
      }
    }
    default:
      throw decryptionFailed();
  }
}

// --- Spans --------------------------------------------------------------------------------

/** Where a version's key lives, for a span: `token` (an HSM) or `raw` (in memory). */
const locationOf = (active: ActiveVersion) => (active.usable.token ? "token" : "raw");

/**
 * The operations above as `crypto <op>` spans of the request being traced (no span outside
 * one): the algorithm and where the key lives, never a key, an input or an output.
 */
function traced<A extends unknown[], R>(op: string, fn: (...args: A) => Promise<R>, describe: (...args: A) => { alg?: string; location?: string }): (...args: A) => Promise<R> {
  return (...args: A) => {
    const d = describe(...args);
    return inChildSpan(`crypto ${op}`, SpanKind.INTERNAL, { "crypto.operation": op, "crypto.algorithm": d.alg, "crypto.key.location": d.location }, () => fn(...args));
  };
}
const ofVersion = (active: ActiveVersion) => ({ alg: active.spec.jose, location: locationOf(active) });

/** A compact JWS over `payload` with the version's key; `kid` names the version. */
export const signCompact = traced("sign", signCompactOp, ofVersion);
/** See `verifyCompactOp`: the version comes from the JWS's kid, so the span names no algorithm. */
export const verifyCompact = traced("verify", verifyCompactOp, () => ({}));
/** The raw HMAC of `data` with a mac key's version. */
export const macOf = traced("mac", macOfOp, ofVersion);
/** Whether `mac` is the HMAC of `data` with the version; compared in constant time. */
export const verifyMac = traced("verifyMac", verifyMacOp, ofVersion);
/** Encrypts `plaintext` to the version: `alg` and `kid` name it, `enc` must be one it accepts. */
export const encryptJwe = traced("encrypt", encryptJweOp, ofVersion);
/** Decrypts a JWE with the version (see `openJweOp`). */
export const openJwe = traced("decrypt", openJweOp, ofVersion);
