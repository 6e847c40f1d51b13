/**
 * Small primitives of identity-authz: random tokens, SHA-256 hashes, base64url
 * (node:crypto/node:buffer, present in Bun, Node and Deno, for speed on the token path).
 * Guarantees: tokens carry 256 bits from the CSPRNG; `equalConstantTime` does not
 * branch on the content of its inputs (only on their lengths, which are public).
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";

const enc = new TextEncoder();

export function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

/** A fresh random token, base64url of `bytes` random bytes. */
export const randomToken = (bytes = 32) => b64url(crypto.getRandomValues(new Uint8Array(bytes)));

/**
 * A fresh random identifier: hex of `bytes` random bytes. Unlike base64url it always starts
 * with a letter or digit, as client ids must (schemas/identity-authz.ts).
 */
export const randomId = (bytes = 16) => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");

export async function sha256(s: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", enc.encode(s)));
}

/** SHA-256 hex: how high-entropy secrets (client secrets, codes, refresh tokens) are stored. Synchronous: it is on the token path. */
export async function sha256Hex(s: string): Promise<string> {
  return createHash("sha256").update(s, "utf8").digest("hex");
}

export async function sha256B64url(s: string): Promise<string> {
  return b64url(await sha256(s));
}

/** Constant-time string equality (the one in src/crypto). */
export { equalStrings as equalConstantTime } from "../../../src/crypto/constant-time.ts";

export const nowS = () => Math.floor(Date.now() / 1000);
