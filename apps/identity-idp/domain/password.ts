/**
 * Passwords: Argon2id hashing (hash-wasm, WebAssembly) and the NIST 800-63B rules.
 *
 * Guarantees: hashes are Argon2id with at least the OWASP parameters (m=19 MiB, t=2, p=1),
 * stored in the PHC string format with a random 128-bit salt; verification recomputes the
 * hash with the stored parameters and compares in constant time. `verifyDummy` costs the
 * same as a real verification, so an unknown user takes as long as a wrong password.
 * Rules: length only (min configurable, max 128 code points) plus a blocklist; no composition rules.
 */
import { readFileSync } from "node:fs";
import { AppError } from "../../../src/service/errors.ts";
import { inThread, type Argon2Runner } from "./argon2-pool.ts";

export interface Argon2Params {
  /** Memory in KiB. */
  m: number;
  t: number;
  p: number;
}

/** OWASP Password Storage Cheat Sheet, first Argon2id option. */
export const OWASP_ARGON2: Argon2Params = { m: 19 * 1024, t: 2, p: 1 };

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b)).replace(/=+$/, "");
const unb64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

function derive(runner: Argon2Runner, password: string, salt: Uint8Array, p: Argon2Params, length: number): Promise<Uint8Array> {
  return runner.derive(password.normalize("NFKC"), salt, p, length);
}

/** Hashes a password to `$argon2id$v=19$m=..,t=..,p=..$salt$hash`. */
export async function hashPassword(password: string, p: Argon2Params = OWASP_ARGON2, runner: Argon2Runner = inThread): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const h = await derive(runner, password, salt, p, 32);
  return `$argon2id$v=19$m=${p.m},t=${p.t},p=${p.p}$${b64(salt)}$${b64(h)}`;
}

const PHC = /^\$argon2id\$v=19\$m=(\d{1,7}),t=(\d{1,3}),p=(\d{1,2})\$([A-Za-z0-9+/]{16,})\$([A-Za-z0-9+/]{16,})$/;

export function parseHash(phc: string): { params: Argon2Params; salt: Uint8Array; hash: Uint8Array } {
  const m = PHC.exec(phc);
  if (!m) throw new AppError("stored_material_corrupt", "a stored password hash is not a valid Argon2id PHC string");
  return { params: { m: Number(m[1]), t: Number(m[2]), p: Number(m[3]) }, salt: unb64(m[4]!), hash: unb64(m[5]!) };
}

/** True when the stored hash uses weaker parameters than `p` (rehash at the next login). */
export function needsRehash(phc: string, p: Argon2Params = OWASP_ARGON2): boolean {
  const s = parseHash(phc).params;
  return s.m < p.m || s.t < p.t || s.p < p.p;
}

export async function verifyPassword(password: string, phc: string, runner: Argon2Runner = inThread): Promise<boolean> {
  const { params, salt, hash } = parseHash(phc);
  const got = await derive(runner, password, salt, params, hash.length);
  let d = 0;
  for (let i = 0; i < hash.length; i++) d |= got[i]! ^ hash[i]!;
  return d === 0;
}

let dummy: Promise<string> | undefined;
/** Computes the dummy hash ahead of the first unknown-user login, so that login costs no extra hash. */
export function prepareDummy(p: Argon2Params = OWASP_ARGON2, runner: Argon2Runner = inThread): Promise<string> {
  dummy ??= hashPassword(crypto.randomUUID() + crypto.randomUUID(), p, runner);
  return dummy;
}

/** Spends the time of one verification against a hash no password matches (unknown users). */
export async function verifyDummy(password: string, p: Argon2Params = OWASP_ARGON2, runner: Argon2Runner = inThread): Promise<false> {
  await verifyPassword(password, await prepareDummy(p, runner), runner);
  return false;
}

let blocklist: Set<string> | undefined;
/** The shipped list of common and breached-password patterns, lower-case. */
export function commonPasswords(): Set<string> {
  blocklist ??= new Set(
    readFileSync(new URL("./common-passwords.txt", import.meta.url), "utf8")
      .split("\n")
      .filter((l) => l && !l.startsWith("#")),
  );
  return blocklist;
}

export interface PasswordRules {
  minLength: number;
  maxLength: number;
}

/** Why a password is refused, or undefined when it is acceptable. Messages are shown to the user. */
export function passwordProblem(password: string, rules: PasswordRules, context: string[] = []): string | undefined {
  const n = [...password.normalize("NFKC")].length;
  if (n < rules.minLength) return `Use at least ${rules.minLength} characters.`;
  if (n > rules.maxLength) return `Use at most ${rules.maxLength} characters.`;
  const lower = password.toLowerCase();
  if (commonPasswords().has(lower)) return "This password is too common; choose another.";
  if (/^(.)\1+$/.test(password)) return "This password repeats one character.";
  for (const c of context) if (c.length >= 3 && lower.includes(c.toLowerCase())) return "The password must not contain your username or email.";
  return undefined;
}

/** Throws `weak_password` (400) when a password breaks the rules. */
export function assertPassword(password: string, rules: PasswordRules, context: string[] = []): void {
  const why = passwordProblem(password, rules, context);
  if (why) throw new AppError("weak_password", why, { status: 400 });
}
