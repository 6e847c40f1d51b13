/**
 * One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), base32 seeds and otpauth URIs.
 *
 * Guarantees: codes are compared in constant time (every candidate in the window is
 * computed and compared, whatever matched); a TOTP step at or below the last used one
 * is refused (replay); an HOTP counter only moves forward. Inputs are validated here:
 * a code must be exactly `digits` ASCII digits.
 */
import { AppError } from "../../../src/service/errors.ts";

export type OtpAlgorithm = "SHA-1" | "SHA-256" | "SHA-512";

const B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** RFC 4648 base32 without padding, as authenticator apps expect. */
export function base32Encode(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

export function base32Decode(text: string): Uint8Array {
  const clean = text.replace(/=+$/, "").replace(/\s+/g, "").toUpperCase();
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const i = B32.indexOf(ch);
    if (i < 0) throw new AppError("malformed_input", "not a base32 string");
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 255);
      bits -= 8;
    }
  }
  return new Uint8Array(out);
}

const keyCache = new WeakMap<Uint8Array, Map<OtpAlgorithm, Promise<CryptoKey>>>();

function hmacKey(secret: Uint8Array, alg: OtpAlgorithm): Promise<CryptoKey> {
  let m = keyCache.get(secret);
  if (!m) keyCache.set(secret, (m = new Map()));
  let k = m.get(alg);
  if (!k) {
    k = crypto.subtle.importKey("raw", secret as Uint8Array<ArrayBuffer>, { name: "HMAC", hash: alg }, false, ["sign"]);
    m.set(alg, k);
  }
  return k;
}

/** HOTP value of `counter` (RFC 4226 section 5.3: dynamic truncation). */
export async function hotp(secret: Uint8Array, counter: number, digits = 6, alg: OtpAlgorithm = "SHA-1"): Promise<string> {
  if (!Number.isSafeInteger(counter) || counter < 0) throw new AppError("malformed_input", "counter out of range");
  if (digits < 6 || digits > 10) throw new AppError("malformed_input", "digits must be 6 to 10");
  const msg = new Uint8Array(8);
  new DataView(msg.buffer).setBigUint64(0, BigInt(counter));
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", await hmacKey(secret, alg), msg));
  const off = mac[mac.length - 1]! & 0x0f;
  const bin = ((mac[off]! & 0x7f) << 24) | (mac[off + 1]! << 16) | (mac[off + 2]! << 8) | mac[off + 3]!;
  return String(bin % 10 ** digits).padStart(digits, "0");
}

/** TOTP step of a time (seconds since the epoch). */
export const totpStep = (unixS: number, periodS = 30) => Math.floor(unixS / periodS);

export async function totp(secret: Uint8Array, unixS: number, opts: { digits?: number; periodS?: number; alg?: OtpAlgorithm } = {}): Promise<string> {
  return hotp(secret, totpStep(unixS, opts.periodS ?? 30), opts.digits ?? 6, opts.alg ?? "SHA-1");
}

const enc = new TextEncoder();
/** Equal-length constant-time comparison of two digit strings. */
function sameCode(a: string, b: string): boolean {
  const x = enc.encode(a);
  const y = enc.encode(b);
  let d = x.length ^ y.length;
  for (let i = 0; i < Math.min(x.length, y.length); i++) d |= x[i]! ^ y[i]!;
  return d === 0;
}

function checkFormat(code: string, digits: number): boolean {
  return code.length === digits && /^[0-9]+$/.test(code);
}

/**
 * Finds the first counter in `[from, from + window]` whose code equals `code`. All candidates are
 * computed and compared so the time taken does not depend on where (or whether) it matched.
 */
async function scan(secret: Uint8Array, from: number, count: number, code: string, digits: number, alg: OtpAlgorithm): Promise<number | undefined> {
  let found: number | undefined;
  for (let c = Math.max(0, from); c < from + count; c++) {
    const ok = sameCode(await hotp(secret, c, digits, alg), code);
    if (ok && found === undefined) found = c;
  }
  return found;
}

export interface TotpParams {
  digits: number;
  periodS: number;
  alg: OtpAlgorithm;
  /** Accepted drift in steps on each side (1 = previous, current, next). */
  drift: number;
}

export const TOTP_DEFAULTS: TotpParams = { digits: 6, periodS: 30, alg: "SHA-1", drift: 1 };

/**
 * Verifies a TOTP code at `unixS`; returns the matched step, or undefined. `lastStep` is the
 * last step accepted for this factor: that step and older ones are refused (RFC 6238 section 5.2).
 */
export async function verifyTotp(secret: Uint8Array, code: string, unixS: number, lastStep: number | null, p: TotpParams = TOTP_DEFAULTS): Promise<number | undefined> {
  if (!checkFormat(code, p.digits)) return undefined;
  const now = totpStep(unixS, p.periodS);
  const step = await scan(secret, now - p.drift, 2 * p.drift + 1, code, p.digits, p.alg);
  if (step === undefined) return undefined;
  if (lastStep !== null && step <= lastStep) return undefined;
  return step;
}

/**
 * Verifies an HOTP code against counters `[counter, counter + lookAhead]`; returns the
 * next counter to store (matched + 1), or undefined (RFC 4226 section 7.4).
 */
export async function verifyHotp(secret: Uint8Array, code: string, counter: number, lookAhead = 10, digits = 6, alg: OtpAlgorithm = "SHA-1"): Promise<number | undefined> {
  if (!checkFormat(code, digits)) return undefined;
  const c = await scan(secret, counter, lookAhead + 1, code, digits, alg);
  return c === undefined ? undefined : c + 1;
}

/**
 * Resynchronises an HOTP counter that drifted beyond the look-ahead window: two consecutive
 * codes must match consecutive counters within `maxAhead`. Returns the next counter or undefined.
 */
export async function resyncHotp(secret: Uint8Array, code1: string, code2: string, counter: number, maxAhead = 100, digits = 6, alg: OtpAlgorithm = "SHA-1"): Promise<number | undefined> {
  if (!checkFormat(code1, digits) || !checkFormat(code2, digits)) return undefined;
  let found: number | undefined;
  let prev = await hotp(secret, counter, digits, alg);
  for (let c = counter; c < counter + maxAhead; c++) {
    const next = await hotp(secret, c + 1, digits, alg);
    const ok = sameCode(prev, code1) && sameCode(next, code2);
    if (ok && found === undefined) found = c + 2;
    prev = next;
  }
  return found;
}

/** The `otpauth://` URI authenticator apps read from the QR code (Key Uri Format). */
export function otpauthUri(p: { kind: "totp" | "hotp"; issuer: string; account: string; secret: Uint8Array; digits?: number; periodS?: number; alg?: OtpAlgorithm; counter?: number }): string {
  const label = `${encodeURIComponent(p.issuer)}:${encodeURIComponent(p.account)}`;
  const q = new URLSearchParams({ secret: base32Encode(p.secret), issuer: p.issuer, algorithm: (p.alg ?? "SHA-1").replace("-", ""), digits: String(p.digits ?? 6) });
  if (p.kind === "totp") q.set("period", String(p.periodS ?? 30));
  else q.set("counter", String(p.counter ?? 0));
  return `otpauth://${p.kind}/${label}?${q.toString().replace(/\+/g, "%20")}`;
}
