/**
 * Passphrase-encrypted PKCS#8 (RFC 5958 EncryptedPrivateKeyInfo) with PBES2 (RFC 8018):
 * PBKDF2-HMAC-SHA256 and AES-256-CBC, the form `openssl pkcs8 -passin` opens.
 *
 * Guarantees: the DER is built and read by hand with strict lengths; only PBES2 with
 * hmacWithSHA256 and aes256-CBC is accepted, with an iteration count bounded on read (so
 * a crafted file cannot make decryption run for hours); salt and IV come from the WebCrypto
 * CSPRNG; a wrong passphrase and a corrupt file give the same `unseal_failed` error (CBC
 * padding is not a passphrase oracle worth distinguishing). Plaintext key bytes are zeroed
 * after use where this code holds them.
 */
import { AppError } from "../../../src/service/errors.ts";

/** OWASP 2023 figure for PBKDF2-HMAC-SHA256. */
export const PBKDF2_ITERATIONS = 600_000;
/** Upper bound accepted on read: a file asking for more is refused rather than run. */
const MAX_ITERATIONS = 10_000_000;

const OID_PBES2 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0d]; // 1.2.840.113549.1.5.13
const OID_PBKDF2 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x05, 0x0c]; // 1.2.840.113549.1.5.12
const OID_HMAC_SHA256 = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x09]; // 1.2.840.113549.2.9
const OID_AES256_CBC = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a]; // 2.16.840.1.101.3.4.1.42

// --- minimal DER ---

function len(n: number): number[] {
  if (n < 0x80) return [n];
  const out: number[] = [];
  while (n > 0) {
    out.unshift(n & 0xff);
    n >>>= 8;
  }
  return [0x80 | out.length, ...out];
}

function tlv(tag: number, content: Uint8Array | number[]): Uint8Array {
  const c = content instanceof Uint8Array ? content : Uint8Array.from(content);
  const head = [tag, ...len(c.length)];
  const out = new Uint8Array(head.length + c.length);
  out.set(head, 0);
  out.set(c, head.length);
  return out;
}

const seq = (...parts: Uint8Array[]) => tlv(0x30, concat(parts));
const oid = (bytes: number[]) => tlv(0x06, bytes);
const octets = (b: Uint8Array) => tlv(0x04, b);
const NULL = Uint8Array.of(0x05, 0x00);

function integer(n: number): Uint8Array {
  const bytes: number[] = [];
  do {
    bytes.unshift(n & 0xff);
    n = Math.floor(n / 256);
  } while (n > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return tlv(0x02, bytes);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface Node {
  tag: number;
  content: Uint8Array;
  end: number;
}

/** Reads one TLV at `at` (definite, minimal-enough lengths only), bounded by `limit`. */
function read(b: Uint8Array, at: number, limit: number, tag: number): Node {
  if (at + 2 > limit || b[at] !== tag) throw new Error("unexpected DER");
  let n = b[at + 1]!;
  let q = at + 2;
  if (n & 0x80) {
    const k = n & 0x7f;
    if (k === 0 || k > 3 || q + k > limit) throw new Error("bad DER length");
    n = 0;
    for (let i = 0; i < k; i++) n = n * 256 + b[q + i]!;
    q += k;
  }
  if (q + n > limit) throw new Error("DER past its end");
  return { tag, content: b.subarray(q, q + n), end: q + n };
}

function children(n: Node): Uint8Array {
  return n.content;
}

function sameBytes(a: Uint8Array, b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// --- PBES2 ---

async function deriveAesKey(passphrase: Uint8Array, salt: Uint8Array, iterations: number, usage: KeyUsage): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey("raw", passphrase.slice().buffer as ArrayBuffer, "PBKDF2", false, ["deriveBits"]);
  const bits = new Uint8Array(await crypto.subtle.deriveBits({ name: "PBKDF2", salt: salt.slice().buffer as ArrayBuffer, iterations, hash: "SHA-256" }, base, 256));
  try {
    return await crypto.subtle.importKey("raw", bits.slice().buffer as ArrayBuffer, { name: "AES-CBC" }, false, [usage]);
  } finally {
    bits.fill(0);
  }
}

/** Encrypts PKCS#8 DER under a passphrase; returns EncryptedPrivateKeyInfo DER. */
export async function encryptPkcs8(pkcs8: Uint8Array, passphrase: Uint8Array, iterations = PBKDF2_ITERATIONS): Promise<Uint8Array> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(16));
  const key = await deriveAesKey(passphrase, salt, iterations, "encrypt");
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-CBC", iv }, key, pkcs8.slice().buffer as ArrayBuffer));
  // keyLength is omitted (optional; AES-256 fixes it) and the PRF is named, as it is not the SHA-1 default.
  const pbkdf2Params = seq(octets(salt), integer(iterations), seq(oid(OID_HMAC_SHA256), NULL));
  const pbes2Params = seq(seq(oid(OID_PBKDF2), pbkdf2Params), seq(oid(OID_AES256_CBC), octets(iv)));
  return seq(seq(oid(OID_PBES2), pbes2Params), octets(ct));
}

const unseal = (why: string, cause?: unknown) => new AppError("unseal_failed", why, cause === undefined ? {} : { cause });

/**
 * Decrypts EncryptedPrivateKeyInfo DER; returns the PKCS#8 DER (the caller zeroes it).
 * @throws AppError("unseal_failed") for a wrong passphrase, a corrupt file or an unsupported scheme.
 */
export async function decryptPkcs8(der: Uint8Array, passphrase: Uint8Array): Promise<Uint8Array> {
  let salt: Uint8Array, iv: Uint8Array, ct: Uint8Array, iterations: number;
  try {
    const top = read(der, 0, der.length, 0x30);
    if (top.end !== der.length) throw new Error("trailing bytes");
    const body = children(top);
    const alg = read(body, 0, body.length, 0x30);
    const data = read(body, alg.end, body.length, 0x04);
    if (data.end !== body.length) throw new Error("trailing bytes");
    const a = children(alg);
    const algOid = read(a, 0, a.length, 0x06);
    if (!sameBytes(algOid.content, OID_PBES2)) throw unseal("the key file is not PBES2-encrypted (re-encrypt it with PBKDF2-HMAC-SHA256 and AES-256-CBC)");
    const params = read(a, algOid.end, a.length, 0x30);
    const p = children(params);
    const kdf = read(p, 0, p.length, 0x30);
    const enc = read(p, kdf.end, p.length, 0x30);
    const k = children(kdf);
    const kdfOid = read(k, 0, k.length, 0x06);
    if (!sameBytes(kdfOid.content, OID_PBKDF2)) throw unseal("the key file's key derivation is not PBKDF2");
    const kp = read(k, kdfOid.end, k.length, 0x30);
    const kpc = children(kp);
    const s = read(kpc, 0, kpc.length, 0x04);
    const it = read(kpc, s.end, kpc.length, 0x02);
    let next = it.end;
    if (next < kpc.length && kpc[next] === 0x02) {
      const kl = read(kpc, next, kpc.length, 0x02);
      if (!(kl.content.length === 1 && kl.content[0] === 32)) throw unseal("the key file's key length is not 32 bytes");
      next = kl.end;
    }
    if (next >= kpc.length) throw unseal("the key file uses PBKDF2 with HMAC-SHA1; only HMAC-SHA256 is accepted");
    const prf = read(kpc, next, kpc.length, 0x30);
    const prfOid = read(children(prf), 0, prf.content.length, 0x06);
    if (!sameBytes(prfOid.content, OID_HMAC_SHA256)) throw unseal("the key file's PBKDF2 PRF is not HMAC-SHA256");
    const e = children(enc);
    const encOid = read(e, 0, e.length, 0x06);
    if (!sameBytes(encOid.content, OID_AES256_CBC)) throw unseal("the key file's cipher is not AES-256-CBC");
    const ivNode = read(e, encOid.end, e.length, 0x04);
    if (ivNode.content.length !== 16) throw new Error("IV length");
    if (it.content.length === 0 || it.content.length > 4 || it.content[0]! & 0x80) throw new Error("iteration count");
    iterations = it.content.reduce((n, x) => n * 256 + x, 0);
    if (iterations < 1 || iterations > MAX_ITERATIONS) throw unseal(`the key file's iteration count ${iterations} is out of range`);
    salt = s.content;
    iv = ivNode.content;
    ct = data.content;
    if (ct.length === 0 || ct.length % 16 !== 0) throw new Error("ciphertext length");
  } catch (cause) {
    if (cause instanceof AppError) throw cause;
    throw unseal("the key file is not a valid encrypted PKCS#8 key", cause);
  }
  const key = await deriveAesKey(passphrase, salt, iterations, "decrypt");
  let pt: Uint8Array;
  try {
    pt = new Uint8Array(await crypto.subtle.decrypt({ name: "AES-CBC", iv: iv.slice() }, key, ct.slice().buffer as ArrayBuffer));
  } catch (cause) {
    throw unseal("wrong passphrase or corrupt key file", cause);
  }
  // A wrong passphrase passes the CBC padding check about once in 256 tries: the result must also be one DER SEQUENCE.
  let whole = false;
  try {
    whole = read(pt, 0, pt.length, 0x30).end === pt.length;
  } catch {
    whole = false;
  }
  if (!whole) {
    pt.fill(0);
    throw unseal("wrong passphrase or corrupt key file");
  }
  return pt;
}
