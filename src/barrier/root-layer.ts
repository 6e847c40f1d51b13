/**
 * The top of the key hierarchy: whatever protects the intermediate keys.
 *
 * `RootLayer` is the seam for an HSM: a PKCS#11 implementation keeps the root keys as
 * non-extractable objects in the token, logs in on open (its "unseal"), and implements
 * wrap/unwrap with C_Encrypt/C_Decrypt (AES-GCM, same AAD). The barrier only ever calls
 * this interface, and stores whatever `wrap` returns.
 *
 * `SoftwareRootLayer` is the default: unseal secrets -> HKDF -> unseal key (kept in memory
 * only, never stored) -> root keys stored wrapped in barrier_keys. A wrong secret is
 * detected with the stored verifier (AES-GCM authentication fails) and reported as
 * `unseal_failed`, with nothing about the secret or the stored values.
 */
import { AppError } from "../service/errors.ts";
import type { BarrierCrypto } from "./aead.ts";
import {
  IV_LENGTH,
  KEY_LENGTH,
  UNSEAL_INFO,
  VERIFIER_AAD,
  VERIFIER_PLAINTEXT,
  WRAPPED_KEY_LENGTH,
  unsealIkm,
  unsealSalt,
  wrapAad,
} from "./format.ts";
import type { BarrierDb } from "./schema.ts";
import { checkUnsealSecrets } from "./unseal-files.ts";

/** What a root layer is given when the barrier unseals. */
export interface RootLayerOpenContext {
  /** The open write transaction of the unseal; use it for every read and write. */
  db: BarrierDb;
  crypto: BarrierCrypto;
  service: string;
  /** Unseal secrets (software layer); an HSM layer may ignore them. Owned by the caller. */
  secrets: readonly Uint8Array[];
}

/** Root keys, however they are kept. Versions are positive integers. */
export interface RootLayer {
  /** "software", "pkcs11", ... (shown in status, never secret). */
  readonly kind: string;
  /** Versions known to this layer, ascending. */
  versions(): number[];
  /** Creates a new root version (persisting what it must through `db`) and returns it. */
  create(db: BarrierDb): Promise<number>;
  /** Encrypts a 32-byte key under root `version`; returns IV || ciphertext || tag. */
  wrap(version: number, key: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Decrypts a wrapped key; `db` lets it load a version another instance created. Throws `decrypt_failed`. */
  unwrap(version: number, wrapped: Uint8Array, aad: Uint8Array, db: BarrierDb): Promise<Uint8Array>;
  /** Deletes the given versions (all keys they wrapped have been re-wrapped) and forgets them. */
  retire(versions: readonly number[], db: BarrierDb): Promise<void>;
  /** Forgets every key (seal). */
  close(): void;
}

/** Opens the root layer inside the unseal transaction, creating the first root if none exists. */
export type RootLayerFactory = (ctx: RootLayerOpenContext) => Promise<RootLayer>;

export function decryptFailed(cause?: unknown): AppError {
  return new AppError("decrypt_failed", "barrier ciphertext is invalid or does not match its context", {
    status: 500,
    cause,
  });
}

async function wrapWith(crypto: BarrierCrypto, key: CryptoKey, raw: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  const iv = crypto.randomBytes(IV_LENGTH);
  const sealed = await crypto.encrypt(key, iv, raw, aad);
  const out = new Uint8Array(IV_LENGTH + sealed.length);
  out.set(iv, 0);
  out.set(sealed, IV_LENGTH);
  return out;
}

async function unwrapWith(crypto: BarrierCrypto, key: CryptoKey, wrapped: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
  return crypto.decrypt(key, wrapped.subarray(0, IV_LENGTH), wrapped.subarray(IV_LENGTH), aad);
}

/** Wraps `raw` under `key` (exported for the intermediate and content layers). */
export const wrapKey = wrapWith;

/** Unwraps a 60-byte wrapped key, mapping any failure to `decrypt_failed`. */
export async function unwrapKey(
  crypto: BarrierCrypto,
  key: CryptoKey,
  wrapped: Uint8Array,
  aad: Uint8Array,
): Promise<Uint8Array> {
  if (!(wrapped instanceof Uint8Array) || wrapped.length !== WRAPPED_KEY_LENGTH) throw decryptFailed();
  let raw: Uint8Array;
  try {
    raw = await unwrapWith(crypto, key, wrapped, aad);
  } catch (err) {
    throw decryptFailed(err);
  }
  if (raw.length !== KEY_LENGTH) {
    raw.fill(0);
    throw decryptFailed();
  }
  return raw;
}

/** Root keys wrapped by an unseal key derived from secret files. */
export class SoftwareRootLayer implements RootLayer {
  readonly kind = "software";
  readonly #crypto: BarrierCrypto;
  #unsealKey: CryptoKey | undefined;
  readonly #roots = new Map<number, CryptoKey>();

  private constructor(crypto: BarrierCrypto, unsealKey: CryptoKey) {
    this.#crypto = crypto;
    this.#unsealKey = unsealKey;
  }

  /** The `RootLayerFactory` of the software layer. */
  static readonly open: RootLayerFactory = async (ctx) => {
    checkUnsealSecrets(ctx.secrets);
    const ikm = unsealIkm(ctx.secrets);
    let unsealKey: CryptoKey;
    try {
      unsealKey = await ctx.crypto.deriveKey(ikm, unsealSalt(ctx.service), UNSEAL_INFO);
    } finally {
      ikm.fill(0);
    }
    const layer = new SoftwareRootLayer(ctx.crypto, unsealKey);
    try {
      const row = await ctx.db.selectFrom("barrier_unseal").select("verifier").where("id", "=", 1).executeTakeFirst();
      if (!row) {
        const verifier = await wrapWith(ctx.crypto, unsealKey, VERIFIER_PLAINTEXT, VERIFIER_AAD);
        await ctx.db
          .insertInto("barrier_unseal")
          .values({ id: 1, verifier, created_at: new Date().toISOString() })
          .execute();
        await layer.create(ctx.db);
      } else {
        await layer.#checkVerifier(row.verifier);
        await layer.#loadAll(ctx.db);
        if (layer.#roots.size === 0) await layer.create(ctx.db);
      }
      return layer;
    } catch (err) {
      layer.close();
      throw err;
    }
  };

  async #checkVerifier(verifier: Uint8Array): Promise<void> {
    let plain: Uint8Array;
    try {
      plain = await unwrapWith(this.#crypto, this.#key(), verifier, VERIFIER_AAD);
    } catch (err) {
      throw new AppError("unseal_failed", "the unseal secrets do not match this database", { cause: err });
    }
    // The expected value is public; no need for a constant-time comparison.
    const ok = plain.length === VERIFIER_PLAINTEXT.length && plain.every((b, i) => b === VERIFIER_PLAINTEXT[i]);
    if (!ok) throw new AppError("unseal_failed", "the unseal secrets do not match this database");
  }

  #key(): CryptoKey {
    if (!this.#unsealKey) throw new AppError("sealed", "barrier is sealed");
    return this.#unsealKey;
  }

  async #load(version: number, wrapped: Uint8Array): Promise<CryptoKey> {
    const raw = await unwrapKey(this.#crypto, this.#key(), wrapped, wrapAad("root", version, "unseal", 0));
    try {
      const key = await this.#crypto.importKey(raw);
      this.#roots.set(version, key);
      return key;
    } finally {
      raw.fill(0);
    }
  }

  async #loadAll(db: BarrierDb): Promise<void> {
    const rows = await db
      .selectFrom("barrier_keys")
      .select(["version", "wrapped"])
      .where("layer", "=", "root")
      .orderBy("version")
      .execute();
    for (const r of rows) await this.#load(r.version, r.wrapped);
  }

  async #get(version: number, db: BarrierDb): Promise<CryptoKey> {
    const known = this.#roots.get(version);
    if (known) return known;
    const row = await db
      .selectFrom("barrier_keys")
      .select("wrapped")
      .where("layer", "=", "root")
      .where("version", "=", version)
      .executeTakeFirst();
    if (!row) throw decryptFailed();
    return this.#load(version, row.wrapped);
  }

  versions(): number[] {
    return [...this.#roots.keys()].sort((a, b) => a - b);
  }

  async create(db: BarrierDb): Promise<number> {
    const max = await db
      .selectFrom("barrier_keys")
      .select((eb) => eb.fn.max("version").as("v"))
      .where("layer", "=", "root")
      .executeTakeFirst();
    const version = Number(max?.v ?? 0) + 1;
    const raw = this.#crypto.randomBytes(KEY_LENGTH);
    try {
      const wrapped = await wrapWith(this.#crypto, this.#key(), raw, wrapAad("root", version, "unseal", 0));
      await db
        .insertInto("barrier_keys")
        .values({ layer: "root", version, parent_version: 0, wrapped, created_at: new Date().toISOString() })
        .execute();
      // set, not add: a version number reused after a rolled-back rotation gets the new key
      this.#roots.set(version, await this.#crypto.importKey(raw));
    } finally {
      raw.fill(0);
    }
    return version;
  }

  async wrap(version: number, key: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const root = this.#roots.get(version);
    if (!root) throw new AppError("internal", `root key version ${version} is not loaded`, { status: 500 });
    return wrapWith(this.#crypto, root, key, aad);
  }

  async unwrap(version: number, wrapped: Uint8Array, aad: Uint8Array, db: BarrierDb): Promise<Uint8Array> {
    return unwrapKey(this.#crypto, await this.#get(version, db), wrapped, aad);
  }

  async retire(versions: readonly number[], db: BarrierDb): Promise<void> {
    if (versions.length === 0) return;
    await db.deleteFrom("barrier_keys").where("layer", "=", "root").where("version", "in", [...versions]).execute();
    for (const v of versions) this.#roots.delete(v);
  }

  close(): void {
    // CryptoKeys are non-extractable; dropping the references is all JS allows.
    this.#roots.clear();
    this.#unsealKey = undefined;
  }
}
