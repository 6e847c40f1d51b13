/**
 * Sealing of private keys at rest, and the key that seals the shared suite CA.
 *
 * `Sealer` is the small interface the per-service barrier implements; this
 * module only provides `AesGcmSealer` over a WebCrypto AES-256-GCM key, used for
 * the suite CA, whose keys are shared by several processes that do not share a
 * barrier. That key is HKDF-SHA-256 over the suite's unseal secret files with an
 * info string of its own, so it is independent of every barrier key derived from
 * the same files, and it is never stored.
 *
 * Guarantees: a fresh random 96-bit IV per seal; the context string is bound as
 * AES-GCM additional data, so a sealed blob opens only under the context it was
 * sealed for; tampering or a wrong key gives AppError("sealed_open_failed").
 */
import { AppError } from "../service/errors.ts";
import { toArrayBuffer } from "./keys.ts";

/** Encrypts and authenticates secrets at rest; `context` names what is sealed and must match on open. */
export interface Sealer {
  seal(plaintext: Uint8Array, context: string): Promise<Uint8Array>;
  open(ciphertext: Uint8Array, context: string): Promise<Uint8Array>;
}

const VERSION = 1;
const IV_BYTES = 12;
const enc = new TextEncoder();

/** AES-256-GCM sealer. Blob layout: version(1) || iv(12) || ciphertext+tag. */
export class AesGcmSealer implements Sealer {
  readonly #key: CryptoKey;

  constructor(key: CryptoKey) {
    this.#key = key;
  }

  async seal(plaintext: Uint8Array, context: string): Promise<Uint8Array> {
    const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const ct = new Uint8Array(
      await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: enc.encode(context) },
        this.#key,
        toArrayBuffer(plaintext),
      ),
    );
    const out = new Uint8Array(1 + IV_BYTES + ct.length);
    out[0] = VERSION;
    out.set(iv, 1);
    out.set(ct, 1 + IV_BYTES);
    return out;
  }

  async open(ciphertext: Uint8Array, context: string): Promise<Uint8Array> {
    if (ciphertext.length < 1 + IV_BYTES + 16 || ciphertext[0] !== VERSION) {
      throw new AppError("sealed_open_failed", "sealed blob is malformed", { status: 500 });
    }
    try {
      const pt = await crypto.subtle.decrypt(
        { name: "AES-GCM", iv: ciphertext.slice(1, 1 + IV_BYTES), additionalData: enc.encode(context) },
        this.#key,
        ciphertext.slice(1 + IV_BYTES),
      );
      return new Uint8Array(pt);
    } catch (cause) {
      throw new AppError("sealed_open_failed", "sealed blob does not open with this key and context", { status: 500, cause });
    }
  }
}

/** HKDF info for the suite CA key; changing it changes the key. */
export const SUITE_CA_KEY_INFO = "cryptoutil/suite-ca/key-sealing/v1";
const SUITE_CA_KEY_SALT = "cryptoutil/suite-ca/salt/v1";
/** Least total secret material accepted, in bytes (256 bits). */
export const MIN_SECRET_BYTES = 32;

/**
 * Derives the suite CA sealer from the contents of the suite's unseal secret files.
 * Order does not matter (the contents are sorted) so services may list the files differently.
 *
 * @throws AppError("config_invalid") when there is no secret or less than 32 bytes in total.
 */
export async function suiteCaSealerFromSecrets(secrets: Uint8Array[]): Promise<AesGcmSealer> {
  if (secrets.length === 0 || secrets.some((s) => s.length === 0)) {
    throw new AppError("config_invalid", "tls: the suite CA needs at least one non-empty unseal secret file");
  }
  const total = secrets.reduce((n, s) => n + s.length, 0);
  if (total < MIN_SECRET_BYTES) {
    throw new AppError("config_invalid", `tls: unseal secret files hold ${total} bytes, at least ${MIN_SECRET_BYTES} are needed`);
  }
  const sorted = [...secrets].sort(compareBytes);
  // Length-prefix every secret so that different splits of the same bytes give different keys.
  const ikm = new Uint8Array(sorted.reduce((n, s) => n + 4 + s.length, 0));
  let off = 0;
  for (const s of sorted) {
    new DataView(ikm.buffer).setUint32(off, s.length);
    ikm.set(s, off + 4);
    off += 4 + s.length;
  }
  const base = await crypto.subtle.importKey("raw", ikm, "HKDF", false, ["deriveKey"]);
  ikm.fill(0);
  const key = await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: enc.encode(SUITE_CA_KEY_SALT), info: enc.encode(SUITE_CA_KEY_INFO) },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
  return new AesGcmSealer(key);
}

/** Reads the unseal secret files and derives the suite CA sealer from them. */
export async function suiteCaSealerFromFiles(paths: string[]): Promise<AesGcmSealer> {
  const { readFile } = await import("node:fs/promises");
  const secrets: Uint8Array[] = [];
  for (const p of paths) {
    try {
      secrets.push(new Uint8Array(await readFile(p)));
    } catch (cause) {
      throw new AppError("config_invalid", `tls: cannot read unseal secret file ${p}`, { cause });
    }
  }
  try {
    return await suiteCaSealerFromSecrets(secrets);
  } finally {
    for (const s of secrets) s.fill(0);
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}
