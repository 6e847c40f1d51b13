/** Base64 and JSON-record helpers for stored TLS material (Web-standard APIs only). */
import { AppError } from "../service/errors.ts";

/** Uint8Array.prototype.toBase64 (ES2026) where the runtime has it: native and far faster than btoa. */
const nativeToBase64 = (Uint8Array.prototype as { toBase64?: () => string }).toBase64;

export function toBase64(bytes: Uint8Array): string {
  if (nativeToBase64) return nativeToBase64.call(bytes);
  let s = "";
  // apply (not spread): array-like access without the iterator protocol.
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000) as unknown as number[]);
  return btoa(s);
}

export function fromBase64(b64: string): Uint8Array {
  const s = atob(b64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/** Encodes a record as UTF-8 JSON. */
export function encodeRecord(rec: object): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(rec, null, 2) + "\n");
}

/**
 * Decodes a stored JSON record and checks its format tag and that the listed fields are strings.
 * @throws AppError("stored_material_corrupt") otherwise.
 */
export function decodeRecord<K extends string>(
  bytes: Uint8Array,
  format: string,
  fields: readonly K[],
  what: string,
): Record<K, string> {
  let rec: unknown;
  try {
    rec = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (cause) {
    throw corrupt(what, cause);
  }
  if (typeof rec !== "object" || rec === null || (rec as { format?: unknown }).format !== format) throw corrupt(what);
  for (const f of fields) if (typeof (rec as Record<string, unknown>)[f] !== "string") throw corrupt(what);
  return rec as Record<K, string>;
}

export function corrupt(what: string, cause?: unknown): AppError {
  return new AppError("stored_material_corrupt", `stored ${what} is corrupt or of an unknown format`, { status: 500, cause });
}
