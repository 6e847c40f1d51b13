/**
 * Byte formats and associated data of the barrier, version 1.
 *
 * Content ciphertext (what `Barrier.encrypt` returns and callers store):
 *
 *   offset  size  field
 *   0       1     format version, 0x01
 *   1       4     content key version, unsigned big-endian
 *   5       12    random IV
 *   17      n+16  AES-256-GCM ciphertext of the n-byte plaintext, then the 16-byte tag
 *
 *   AAD = "cryptoutil.barrier.v1.data" || 0x00 || bytes 0..4 (the header) || UTF-8(context)
 *
 * The header is authenticated, so the key version cannot be swapped; the caller's context
 * (e.g. "sm-kms/material_keys/private_jwk/<id>") binds a ciphertext to its column and row.
 *
 * Wrapped key (barrier_keys.wrapped), 60 bytes: IV (12) || AES-256-GCM(key, 32 bytes) || tag (16)
 *   AAD = "cryptoutil.barrier.v1.key|<layer>|<version>|<parent layer>|<parent version>"
 *   with parent layer "unseal" (version 0) for root keys.
 *
 * Unseal verifier (barrier_unseal.verifier): IV (12) || AES-256-GCM(VERIFIER_PLAINTEXT) || tag,
 *   AAD = "cryptoutil.barrier.v1.verifier", under the unseal key.
 *
 * Unseal key: HKDF-SHA-256 with
 *   IKM  = for each secret, in configured order: u32 big-endian length || secret bytes
 *   salt = UTF-8("cryptoutil.barrier.v1.unseal-salt|" + service)
 *   info = UTF-8("cryptoutil.barrier.v1.unseal-key")
 *   L    = 32
 */

export const FORMAT_V1 = 0x01;
export const HEADER_LENGTH = 5;
export const IV_LENGTH = 12;
export const TAG_LENGTH = 16;
export const KEY_LENGTH = 32;
export const MIN_CIPHERTEXT_LENGTH = HEADER_LENGTH + IV_LENGTH + TAG_LENGTH;
export const WRAPPED_KEY_LENGTH = IV_LENGTH + KEY_LENGTH + TAG_LENGTH;
/** Longest context accepted, in UTF-8 bytes. */
export const MAX_CONTEXT_BYTES = 1024;

export type KeyLayer = "root" | "intermediate" | "content";
export type ParentLayer = "unseal" | "root" | "intermediate";

const utf8 = new TextEncoder();
const DATA_LABEL = utf8.encode("cryptoutil.barrier.v1.data\u0000");
export const VERIFIER_AAD = utf8.encode("cryptoutil.barrier.v1.verifier");
export const VERIFIER_PLAINTEXT = utf8.encode("cryptoutil.barrier.v1.unseal-verifier");

export function unsealSalt(service: string): Uint8Array {
  return utf8.encode(`cryptoutil.barrier.v1.unseal-salt|${service}`);
}
export const UNSEAL_INFO = utf8.encode("cryptoutil.barrier.v1.unseal-key");

/** IKM for HKDF: the secrets, each prefixed by its length, so boundaries cannot shift. */
export function unsealIkm(secrets: readonly Uint8Array[]): Uint8Array {
  const total = secrets.reduce((n, s) => n + 4 + s.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const s of secrets) {
    view.setUint32(at, s.length);
    out.set(s, at + 4);
    at += 4 + s.length;
  }
  return out;
}

export function wrapAad(layer: KeyLayer, version: number, parent: ParentLayer, parentVersion: number): Uint8Array {
  return utf8.encode(`cryptoutil.barrier.v1.key|${layer}|${version}|${parent}|${parentVersion}`);
}

export function encodeHeader(contentVersion: number): Uint8Array {
  const h = new Uint8Array(HEADER_LENGTH);
  h[0] = FORMAT_V1;
  new DataView(h.buffer).setUint32(1, contentVersion);
  return h;
}

export function dataAad(header: Uint8Array, context: Uint8Array): Uint8Array {
  const aad = new Uint8Array(DATA_LABEL.length + HEADER_LENGTH + context.length);
  aad.set(DATA_LABEL, 0);
  aad.set(header.subarray(0, HEADER_LENGTH), DATA_LABEL.length);
  aad.set(context, DATA_LABEL.length + HEADER_LENGTH);
  return aad;
}

/** Parsed view of a content ciphertext (sub-arrays of the input, no copies). */
export interface ParsedCiphertext {
  header: Uint8Array;
  contentVersion: number;
  iv: Uint8Array;
  sealed: Uint8Array;
}

/** Splits a content ciphertext; undefined when it is not a v1 ciphertext. */
export function parseCiphertext(ct: Uint8Array): ParsedCiphertext | undefined {
  if (!(ct instanceof Uint8Array) || ct.length < MIN_CIPHERTEXT_LENGTH || ct[0] !== FORMAT_V1) return undefined;
  const contentVersion = new DataView(ct.buffer, ct.byteOffset, ct.byteLength).getUint32(1);
  if (contentVersion === 0) return undefined;
  return {
    header: ct.subarray(0, HEADER_LENGTH),
    contentVersion,
    iv: ct.subarray(HEADER_LENGTH, HEADER_LENGTH + IV_LENGTH),
    sealed: ct.subarray(HEADER_LENGTH + IV_LENGTH),
  };
}

/** Encodes a context string, checking it is non-empty and at most MAX_CONTEXT_BYTES. */
export function encodeContext(context: string): Uint8Array | undefined {
  if (typeof context !== "string" || context.length === 0) return undefined;
  const bytes = utf8.encode(context);
  return bytes.length <= MAX_CONTEXT_BYTES ? bytes : undefined;
}
