/** Base64, PEM and JSON-record helpers for X.509 material (Web-standard APIs only). */
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

/** One PEM block (RFC 7468): its label, legacy labels mapped to the standard one, and its DER. */
export interface PemBlock {
  label: string;
  der: Uint8Array;
}

/** Legacy labels (RFC 7468 §5.1, §7; `NEW CERTIFICATE REQUEST` from older tools) and the label they stand for. */
const LEGACY_LABELS: Record<string, string> = {
  "NEW CERTIFICATE REQUEST": "CERTIFICATE REQUEST",
  "X509 CERTIFICATE": "CERTIFICATE",
  "X.509 CERTIFICATE": "CERTIFICATE",
};

// Base64 text never holds '-', so `[^-]*` ends at the END boundary without backtracking.
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 .]{1,64})-----([^-]*)-----END \1-----/g;
const PEM_BASE64 = /^[A-Za-z0-9+/\s]*={0,2}\s*$/;

/** Whether the text holds a PEM encapsulation boundary (and so must be read as PEM, not base64). */
export const looksLikePem = (text: string): boolean => text.includes("-----BEGIN ");

/**
 * Every PEM block of `text`, in order. Whatever lies outside the encapsulation boundaries is
 * ignored, as RFC 7468 §2 requires of parsers: explanatory text before a block (`certtool`
 * prints a dump of the request there), other blocks' neighbours, trailing lines. The base64
 * inside a block is strict (whitespace aside); a block that is not valid base64 throws
 * `fail(message)` (`malformed_input` by default).
 */
export function decodePemBlocks(text: string, fail: (message: string) => AppError = (m) => new AppError("malformed_input", m)): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    const label = LEGACY_LABELS[m[1]!] ?? m[1]!;
    const body = m[2]!;
    let der: Uint8Array | undefined;
    if (PEM_BASE64.test(body)) {
      try {
        der = fromBase64(body.replace(/\s+/g, ""));
      } catch {
        der = undefined;
      }
    }
    if (!der || der.length === 0) throw fail(`a ${label} PEM block is not valid base64`);
    out.push({ label, der });
  }
  return out;
}

/**
 * The DER of an input given as PEM (exactly one block labelled `label`, anything outside it
 * ignored) or as bare base64 / base64url DER. Throws `malformed_input` naming `what` otherwise.
 */
export function pemOrBase64Der(text: string, label: string, what: string): Uint8Array {
  if (looksLikePem(text)) {
    const blocks = decodePemBlocks(text).filter((b) => b.label === label);
    if (blocks.length !== 1) throw new AppError("malformed_input", `the ${what} must be one ${label} PEM block or base64 DER`);
    return blocks[0]!.der;
  }
  const t = text.trim();
  if (!/^[A-Za-z0-9+/=_\-\s]+$/.test(t)) throw new AppError("malformed_input", `the ${what} must be PEM or base64 DER`);
  try {
    const der = fromBase64(t.replace(/\s+/g, "").replace(/-/g, "+").replace(/_/g, "/"));
    if (der.length === 0) throw new Error("empty");
    return der;
  } catch (cause) {
    throw new AppError("malformed_input", `the ${what} is not valid base64`, { cause });
  }
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
