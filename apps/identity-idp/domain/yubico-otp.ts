/**
 * Yubico OTP, the format a YubiKey types: a modhex public id, then one AES-128 block (32 modhex
 * characters) holding the private id, counters, a timestamp and a CRC-16.
 *
 * Guarantees: input is checked here (modhex alphabet and lengths) before any decryption; the
 * decrypted block counts only when its CRC-16 (ISO 13239) leaves the residual 0xf0b8 and its
 * private id equals the stored one (constant-time); replay is decided by `isNewer` on the
 * (session counter, use counter) pair, which the caller stores atomically.
 */
import { ecb } from "@noble/ciphers/aes.js";
import { equalBytes } from "../../../src/crypto/constant-time.ts";

const MODHEX = "cbdefghijklnrtuv";

/** The public id and the encrypted block of an OTP; undefined when it is not a Yubico OTP. */
export function splitOtp(otp: string): { publicId: string; block: string } | undefined {
  const s = otp.toLowerCase();
  if (s.length < 32 || s.length > 48 || !/^[cbdefghijklnrtuv]+$/.test(s)) return undefined;
  return { publicId: s.slice(0, s.length - 32), block: s.slice(-32) };
}

/** Modhex to bytes (two characters per byte). */
export function modhexDecode(s: string): Uint8Array {
  if (s.length % 2 !== 0 || !/^[cbdefghijklnrtuv]*$/.test(s)) throw new RangeError("not modhex");
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = (MODHEX.indexOf(s[2 * i]!) << 4) | MODHEX.indexOf(s[2 * i + 1]!);
  return out;
}

export function modhexEncode(b: Uint8Array): string {
  return Array.from(b, (x) => MODHEX[x >> 4]! + MODHEX[x & 15]!).join("");
}

/** CRC-16 as the YubiKey computes it (ISO 13239, reflected 0x8408, initial 0xffff). */
export function crc16(b: Uint8Array): number {
  let crc = 0xffff;
  for (const x of b) {
    crc ^= x;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0x8408 : crc >>> 1;
  }
  return crc;
}

export interface OtpToken {
  privateId: Uint8Array;
  /** Non-volatile counter: advances at each power-up (session). */
  sessionCounter: number;
  /** Counter within a session. */
  useCounter: number;
  /** The 24-bit 8 Hz timestamp since power-up. */
  timestamp: number;
}

/** Decrypts and checks one OTP block; undefined when the key is wrong or the block was altered. */
export function openOtp(block: string, aesKey: Uint8Array, privateId: Uint8Array): OtpToken | undefined {
  const plain = ecb(aesKey, { disablePadding: true }).decrypt(modhexDecode(block));
  try {
    if (crc16(plain) !== 0xf0b8) return undefined;
    const uid = plain.slice(0, 6);
    if (!equalBytes(uid, privateId)) return undefined;
    return {
      privateId: uid,
      sessionCounter: plain[6]! | ((plain[7]! & 0x7f) << 8),
      timestamp: plain[8]! | (plain[9]! << 8) | (plain[10]! << 16),
      useCounter: plain[11]!,
    };
  } finally {
    plain.fill(0);
  }
}

/** True when (session, use) comes strictly after the stored pair: anything else is a replay or out of order. */
export function isNewer(t: { sessionCounter: number; useCounter: number }, stored: { session: number; use: number }): boolean {
  return t.sessionCounter > stored.session || (t.sessionCounter === stored.session && t.useCounter > stored.use);
}
