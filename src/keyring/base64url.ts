/**
 * base64url without padding (RFC 4648 §5), the encoding of every binary field of the
 * keyring's APIs. Uses the runtime's native `Uint8Array.prototype.toBase64` /
 * `Uint8Array.fromBase64` where present (much faster on the hot paths), else `jose`'s codec.
 * Decoding is strict: only the base64url alphabet, no padding, no impossible lengths.
 */
import { base64url } from "jose";
import { AppError } from "../service/errors.ts";

type NativeEncode = (this: Uint8Array, o: { alphabet: "base64url"; omitPadding: boolean }) => string;
type NativeDecode = (s: string, o: { alphabet: "base64url"; lastChunkHandling: "loose" }) => Uint8Array<ArrayBuffer>;
const nativeEncode = (Uint8Array.prototype as { toBase64?: NativeEncode }).toBase64;
const nativeDecode = (Uint8Array as unknown as { fromBase64?: NativeDecode }).fromBase64;

const ALPHABET = /^[A-Za-z0-9_-]*$/;

export function encodeBase64url(bytes: Uint8Array): string {
  return nativeEncode ? nativeEncode.call(bytes, { alphabet: "base64url", omitPadding: true }) : base64url.encode(bytes);
}

/** Decodes base64url; anything else is `validation_failed`. */
export function decodeBase64url(s: string): Uint8Array<ArrayBuffer> {
  if (s.length % 4 === 1 || !ALPHABET.test(s)) throw new AppError("validation_failed", "not base64url without padding");
  try {
    return nativeDecode ? nativeDecode(s, { alphabet: "base64url", lastChunkHandling: "loose" }) : (base64url.decode(s) as Uint8Array<ArrayBuffer>);
  } catch {
    throw new AppError("validation_failed", "not base64url without padding");
  }
}
