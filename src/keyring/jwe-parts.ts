/**
 * The parts of JWE (RFC 7516 / RFC 7518) that keyring versions held in an HSM need outside
 * `jose`: their key management runs in the token, so the message is parsed and assembled here
 * while the per-message steps run in WebCrypto: content encryption (A256GCM, A128CBC-HS256),
 * the ECDH-ES Concat KDF, AES-KW with a derived KEK, and EME-OAEP decoding of a raw RSA result.
 *
 * Guarantees:
 * - Parsing is strict: base64url only, a JSON-object protected header, unprotected headers
 *   whose names are disjoint from it and each other, `zip` and `crit` refused (none is understood), IV and tag of their algorithm's exact sizes; anything else is
 *   `malformed_jose` (not JOSE) or `decryption_failed` (JOSE that does not open).
 * - Every failure to open is `decryption_failed`, whatever step failed. The CBC-HMAC tag is
 *   compared in constant time before any decryption; AES-GCM tags are WebCrypto's.
 * - OAEP decoding runs without secret-dependent branches or early exits (RFC 8017 §7.1.2 note);
 *   on bad padding the caller goes on with a random CEK (RFC 7516 §11.5), so a padding failure
 *   and a tag failure look the same.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { AppError } from "../service/errors.ts";
import { equalBytes } from "../crypto/constant-time.ts";
import { decodeBase64url, encodeBase64url } from "./base64url.ts";
import type { ContentEncryption } from "./algorithms.ts";

export const malformedJwe = () => new AppError("malformed_jose", "malformed JWE", { status: 400 });
export const jweDecryptionFailed = () => new AppError("decryption_failed", "the JWE does not decrypt with this key and context");

const ascii = new TextEncoder();
const subtle = crypto.subtle;
const u8 = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);

/** A JWE split into its decoded parts (flattened JSON or compact), with the AAD the content encryption uses. */
export interface JweParts {
  protectedB64: string;
  header: Record<string, unknown>;
  encryptedKey: Uint8Array;
  iv: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
  /** ASCII(BASE64URL(protected)) or, with a JSON `aad`, ASCII(BASE64URL(protected) || '.' || BASE64URL(aad)). */
  aad: Uint8Array;
  aadB64?: string;
}

export interface FlattenedJweInput {
  protected?: string;
  encrypted_key?: string;
  iv?: string;
  ciphertext?: string;
  tag?: string;
  aad?: string;
  header?: unknown;
  unprotected?: unknown;
}

function seg(s: unknown): Uint8Array {
  if (typeof s !== "string") throw malformedJwe();
  try {
    return decodeBase64url(s);
  } catch {
    throw malformedJwe();
  }
}

/**
 * The JOSE header of a flattened JWE (RFC 7516 §7.2.1): the union of the protected header, the
 * shared `unprotected` header and the per-recipient `header`. A parameter name may appear in only
 * one of them; a duplicate, or an unprotected member that is not a JSON object, is `malformed_jose`.
 */
export function mergeJweHeaders(protectedHeader: Record<string, unknown>, unprotected: unknown, header: unknown): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...protectedHeader };
  for (const [member, h] of [["unprotected", unprotected], ["header", header]] as const) {
    if (h === undefined) continue;
    if (!h || typeof h !== "object" || Array.isArray(h)) throw new AppError("malformed_jose", `the JWE member ${member} must be a JSON object`);
    for (const [name, value] of Object.entries(h)) {
      if (Object.hasOwn(merged, name)) throw new AppError("malformed_jose", `the JWE header parameter ${JSON.stringify(name.slice(0, 64))} appears in more than one of protected, unprotected and header`);
      merged[name] = value;
    }
  }
  return merged;
}

/** Splits a compact or flattened JWE; a flattened one's header is the merge of its protected and unprotected headers. */
export function parseJwe(jwe: string | FlattenedJweInput): JweParts {
  let p: string, ek: string, iv: string, ct: string, tag: string, aadB64: string | undefined;
  if (typeof jwe === "string") {
    const parts = jwe.split(".");
    if (parts.length !== 5) throw malformedJwe();
    [p, ek, iv, ct, tag] = parts as [string, string, string, string, string];
  } else {
    if (!jwe || typeof jwe !== "object") throw malformedJwe();
    if (typeof jwe.protected !== "string") throw malformedJwe();
    p = jwe.protected;
    ek = jwe.encrypted_key ?? "";
    iv = jwe.iv ?? "";
    ct = jwe.ciphertext ?? "";
    tag = jwe.tag ?? "";
    aadB64 = jwe.aad;
    if (aadB64 !== undefined) seg(aadB64);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(seg(p)));
  } catch {
    throw malformedJwe();
  }
  if (!header || typeof header !== "object" || Array.isArray(header)) throw malformedJwe();
  const h = typeof jwe === "string" ? (header as Record<string, unknown>) : mergeJweHeaders(header as Record<string, unknown>, jwe.unprotected, jwe.header);
  if (typeof h.alg !== "string" || typeof h.enc !== "string") throw malformedJwe();
  // Neither is understood here: a JWE that needs them cannot be opened correctly.
  if (h.zip !== undefined || h.crit !== undefined) throw jweDecryptionFailed();
  return {
    protectedB64: p,
    header: h,
    encryptedKey: seg(ek),
    iv: seg(iv),
    ciphertext: seg(ct),
    tag: seg(tag),
    aad: ascii.encode(aadB64 === undefined ? p : `${p}.${aadB64}`),
    aadB64,
  };
}

/** Bytes of the CEK each content encryption takes. */
export const CEK_BYTES: Record<ContentEncryption, number> = { A256GCM: 32, "A128CBC-HS256": 32 };
const IV_BYTES: Record<ContentEncryption, number> = { A256GCM: 12, "A128CBC-HS256": 16 };

/** AL of RFC 7518 §5.2.2.1: the AAD's length in bits as a 64-bit big-endian integer. */
function aadBits(aad: Uint8Array): Uint8Array {
  const al = new Uint8Array(8);
  new DataView(al.buffer).setBigUint64(0, BigInt(aad.length) * 8n);
  return al;
}

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

async function cbcHsTag(macKey: Uint8Array, aad: Uint8Array, iv: Uint8Array, ct: Uint8Array): Promise<Uint8Array> {
  const k = await subtle.importKey("raw", u8(macKey), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await subtle.sign("HMAC", k, concat(aad, iv, ct, aadBits(aad)))).subarray(0, 16);
}

/** Content encryption with a per-message CEK: a fresh IV, ciphertext and tag. */
export async function encryptContent(enc: ContentEncryption, cek: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Promise<{ iv: Uint8Array; ciphertext: Uint8Array; tag: Uint8Array }> {
  if (cek.length !== CEK_BYTES[enc]) throw new AppError("internal", "CEK of the wrong size");
  const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES[enc]));
  if (enc === "A256GCM") {
    const k = await subtle.importKey("raw", u8(cek), "AES-GCM", false, ["encrypt"]);
    const out = new Uint8Array(await subtle.encrypt({ name: "AES-GCM", iv, additionalData: u8(aad), tagLength: 128 }, k, u8(plaintext)));
    return { iv, ciphertext: out.subarray(0, out.length - 16), tag: out.subarray(out.length - 16) };
  }
  const k = await subtle.importKey("raw", u8(cek.subarray(16)), "AES-CBC", false, ["encrypt"]);
  const ciphertext = new Uint8Array(await subtle.encrypt({ name: "AES-CBC", iv }, k, u8(plaintext)));
  return { iv, ciphertext, tag: await cbcHsTag(cek.subarray(0, 16), aad, iv, ciphertext) };
}

/** Content decryption with a per-message CEK; every failure is `decryption_failed`. */
export async function decryptContent(enc: ContentEncryption, cek: Uint8Array, parts: JweParts): Promise<Uint8Array> {
  const { iv, ciphertext, tag, aad } = parts;
  if (cek.length !== CEK_BYTES[enc] || iv.length !== IV_BYTES[enc] || tag.length !== 16) throw jweDecryptionFailed();
  try {
    if (enc === "A256GCM") {
      const k = await subtle.importKey("raw", u8(cek), "AES-GCM", false, ["decrypt"]);
      return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: u8(iv), additionalData: u8(aad), tagLength: 128 }, k, concat(ciphertext, tag)));
    }
    // Tag first, in constant time: CBC is never decrypted for an unauthenticated message.
    const expected = await cbcHsTag(cek.subarray(0, 16), aad, iv, ciphertext);
    if (!equalBytes(expected, tag)) throw jweDecryptionFailed();
    const k = await subtle.importKey("raw", u8(cek.subarray(16)), "AES-CBC", false, ["decrypt"]);
    return new Uint8Array(await subtle.decrypt({ name: "AES-CBC", iv: u8(iv) }, k, u8(ciphertext)));
  } catch {
    throw jweDecryptionFailed();
  }
}

/** RFC 7518 §4.6.2 Concat KDF (single-pass SHA-256 rounds) for ECDH-ES. */
export function concatKdf(z: Uint8Array, algorithmId: string, bits: number, apu: Uint8Array, apv: Uint8Array): Uint8Array {
  const len32 = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    return b;
  };
  const alg = ascii.encode(algorithmId);
  const otherInfo = concat(len32(alg.length), alg, len32(apu.length), apu, len32(apv.length), apv, len32(bits));
  const bytes = bits / 8;
  const out = new Uint8Array(Math.ceil(bytes / 32) * 32);
  for (let i = 0; i * 32 < bytes; i++) out.set(sha256(concat(len32(i + 1), z, otherInfo)), i * 32);
  return out.subarray(0, bytes);
}

/** AES-KW (RFC 3394) with a derived, per-message KEK, in WebCrypto. */
export async function aesKwWrap(kek: Uint8Array, cek: Uint8Array): Promise<Uint8Array> {
  const k = await subtle.importKey("raw", u8(kek), "AES-KW", false, ["wrapKey"]);
  const c = await subtle.importKey("raw", u8(cek), { name: "HMAC", hash: "SHA-256" }, true, ["sign"]);
  return new Uint8Array(await subtle.wrapKey("raw", c, k, "AES-KW"));
}

export async function aesKwUnwrap(kek: Uint8Array, wrapped: Uint8Array): Promise<Uint8Array> {
  try {
    const k = await subtle.importKey("raw", u8(kek), "AES-KW", false, ["unwrapKey"]);
    const c = await subtle.unwrapKey("raw", u8(wrapped), k, "AES-KW", { name: "HMAC", hash: "SHA-256" }, true, ["sign"]);
    return new Uint8Array(await subtle.exportKey("raw", c));
  } catch {
    throw jweDecryptionFailed();
  }
}

function mgf1(seed: Uint8Array, len: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(len / 32) * 32);
  const c = new Uint8Array(4);
  for (let i = 0; i * 32 < len; i++) {
    new DataView(c.buffer).setUint32(0, i);
    out.set(sha256(concat(seed, c)), i * 32);
  }
  return out.subarray(0, len);
}

/**
 * EME-OAEP decoding (SHA-256, MGF1-SHA-256, empty label) of the k-byte encoded message `em`.
 * Returns the message, or undefined when the padding is wrong; the work done does not depend
 * on where or whether the padding fails.
 */
export function oaepDecode(em: Uint8Array): Uint8Array | undefined {
  const hLen = 32;
  if (em.length < 2 * hLen + 2) return undefined;
  const maskedSeed = em.subarray(1, 1 + hLen);
  const maskedDb = em.subarray(1 + hLen);
  const seedMask = mgf1(maskedDb, hLen);
  const seed = maskedSeed.map((b, i) => b ^ seedMask[i]!);
  const dbMask = mgf1(seed, maskedDb.length);
  const db = maskedDb.map((b, i) => b ^ dbMask[i]!);
  const lHash = sha256(new Uint8Array(0));
  let bad = em[0]!;
  for (let i = 0; i < hLen; i++) bad |= db[i]! ^ lHash[i]!;
  let found = 0; // 1 once the 0x01 separator was seen
  let index = 0;
  let psBad = 0;
  for (let i = hLen; i < db.length; i++) {
    const b = db[i]!;
    const isOne = ((b ^ 1) - 1) >>> 31; // 1 when b == 1
    const isZero = (b - 1) >>> 31; // 1 when b == 0
    const first = isOne & (found ^ 1);
    index = (index & (first - 1)) | (i & -first);
    psBad |= (found ^ 1) & (isOne ^ 1) & (isZero ^ 1);
    found |= isOne;
  }
  bad |= psBad | (found ^ 1);
  seed.fill(0);
  if (bad !== 0) {
    db.fill(0);
    return undefined;
  }
  const m = db.slice(index + 1);
  db.fill(0);
  return m;
}

export const b64u = encodeBase64url;
