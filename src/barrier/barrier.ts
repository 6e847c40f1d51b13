/**
 * The barrier: data-at-rest encryption for one service's database.
 *
 *   unseal secrets --HKDF--> unseal key --wraps--> root keys --wrap--> intermediate keys
 *   --wrap--> content keys --encrypt--> column values
 *
 * Guarantees:
 * - AES-256-GCM everywhere, fresh random 96-bit IV per encryption; every ciphertext's AAD
 *   names its purpose and key version, and data ciphertexts also the caller's context, so a
 *   value moved to another column or row, or under another key header, fails to decrypt.
 * - Keys in memory are non-extractable `CryptoKey`s; raw key bytes exist only briefly while
 *   being wrapped or unwrapped and are zeroed right after (`fill(0)`; copies the JS engine
 *   or WebCrypto make internally are out of our reach). `seal()` drops every key.
 * - Every failure to decrypt (tampering, wrong context, unknown key version, bad format)
 *   is the same `AppError("decrypt_failed")`: no oracle on which check failed.
 * - While sealed every operation throws `AppError("sealed")` (503).
 *
 * Not covered: coordination of rotations across several instances sharing one database
 * (rotate from one instance; the others pick up new versions lazily when they decrypt).
 */
import type { Kysely } from "kysely";
import { AppError } from "../service/errors.ts";
import { runMigrations } from "../storage/migrations.ts";
import { mapStorageError } from "../storage/database.ts";
import { webCryptoBarrierCrypto, type BarrierCrypto } from "./aead.ts";
import {
  HEADER_LENGTH,
  IV_LENGTH,
  KEY_LENGTH,
  dataAad,
  encodeContext,
  encodeHeader,
  parseCiphertext,
  wrapAad,
  type KeyLayer,
} from "./format.ts";
import { SoftwareRootLayer, decryptFailed, unwrapKey, wrapKey, type RootLayer, type RootLayerFactory } from "./root-layer.ts";
import { BARRIER_MIGRATION_APP, barrierMigrations, type BarrierDb, type BarrierTables } from "./schema.ts";
import { readUnsealSecretFiles } from "./unseal-files.ts";

export interface BarrierOptions {
  /** The service's database (the barrier creates its tables through its migrations). */
  db: Kysely<any>;
  /** Service name; part of the unseal key derivation. */
  service: string;
  /** Crypto primitives; default WebCrypto. */
  crypto?: BarrierCrypto;
  /** Where root keys live; default software (unseal secret files). */
  rootLayer?: RootLayerFactory;
}

/** What readyz/healthz may show. Never key bytes. */
export interface BarrierStatus {
  state: "sealed" | "unsealed";
  sealed: boolean;
  rootLayer: string;
  /** Current versions of each layer (present while unsealed). */
  versions?: { root: number; intermediate: number; content: number };
}

interface UnsealedState {
  root: RootLayer;
  rootCurrent: number;
  intermediates: Map<number, CryptoKey>;
  intermediateCurrent: number;
  contents: Map<number, CryptoKey>;
  contentCurrent: number;
}

const sealedError = () => new AppError("sealed", "barrier is sealed");
const utf8 = new TextEncoder();
const utf8Decode = new TextDecoder("utf-8", { fatal: true });

/**
 * Encrypts and decrypts column values under the service's key hierarchy.
 *
 * @example
 *   const barrier = new Barrier({ db, service: "sm-kms" });
 *   await barrier.unsealFromFiles(["/run/secrets/unseal-1"]);
 *   const ct = await barrier.encrypt("s3cret", "sm-kms/secrets/value/42");
 *   const pt = await barrier.decryptString(ct, "sm-kms/secrets/value/42");
 */
export class Barrier {
  readonly #db: BarrierDb;
  readonly #service: string;
  readonly #crypto: BarrierCrypto;
  readonly #rootFactory: RootLayerFactory;
  #state: UnsealedState | undefined;
  readonly #sealListeners: Array<() => void> = [];
  #rootKind = "software";
  #migrated = false;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(opts: BarrierOptions) {
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(opts.service)) {
      throw new AppError("validation_failed", "barrier service name must be 1-63 characters of a-z, 0-9 and '-'");
    }
    this.#db = opts.db as BarrierDb;
    this.#service = opts.service;
    this.#crypto = opts.crypto ?? webCryptoBarrierCrypto;
    this.#rootFactory = opts.rootLayer ?? SoftwareRootLayer.open;
  }

  /** Serializes unseal/seal/rotate so they never interleave. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  get sealed(): boolean {
    return this.#state === undefined;
  }

  status(): BarrierStatus {
    const s = this.#state;
    if (!s) return { state: "sealed", sealed: true, rootLayer: this.#rootKind };
    return {
      state: "unsealed",
      sealed: false,
      rootLayer: s.root.kind,
      versions: { root: s.rootCurrent, intermediate: s.intermediateCurrent, content: s.contentCurrent },
    };
  }

  /**
   * Unseals with the given secrets (first start: creates verifier, root, intermediate and
   * content keys). Wrong secrets: `unseal_failed`, state unchanged. Already unsealed: the
   * secrets are still checked, then nothing changes. The caller owns and zeroes `secrets`.
   */
  unseal(secrets: readonly Uint8Array[]): Promise<BarrierStatus> {
    return this.#exclusive(async () => {
      if (!this.#migrated) {
        await runMigrations(this.#db, BARRIER_MIGRATION_APP, barrierMigrations);
        this.#migrated = true;
      }
      const state = await this.#transaction(async (trx) => {
        const root = await this.#rootFactory({ db: trx, crypto: this.#crypto, service: this.#service, secrets });
        try {
          return await this.#loadState(trx, root);
        } catch (err) {
          root.close();
          throw err;
        }
      });
      if (this.#state) {
        state.root.close(); // verified; keep the keys already in use
      } else {
        this.#state = state;
        this.#rootKind = state.root.kind;
      }
      return this.status();
    });
  }

  /** Reads the secret files, unseals, and zeroes what it read. */
  async unsealFromFiles(paths: readonly string[]): Promise<BarrierStatus> {
    const secrets = await readUnsealSecretFiles(paths);
    try {
      return await this.unseal(secrets);
    } finally {
      for (const s of secrets) s.fill(0);
    }
  }

  /** Forgets every key. Operations fail with `sealed` until the next `unseal`. */
  seal(): Promise<BarrierStatus> {
    return this.#exclusive(async () => {
      const s = this.#state;
      this.#state = undefined;
      if (s) {
        s.root.close();
        s.intermediates.clear();
        s.contents.clear();
      }
      // Holders of keys this barrier decrypted drop them too (see onSeal).
      for (const fn of this.#sealListeners) {
        try {
          fn();
        } catch {
          // a listener's failure must not leave the barrier half sealed
        }
      }
      return this.status();
    });
  }

  /** Runs `fn` at every seal, after the barrier's own keys are gone. */
  onSeal(fn: () => void): void {
    this.#sealListeners.push(fn);
  }

  /** Encrypts `plaintext` (bytes or UTF-8 text) bound to `context`; returns the v1 ciphertext (format.ts). */
  async encrypt(plaintext: Uint8Array | string, context: string): Promise<Uint8Array> {
    const s = this.#state;
    if (!s) throw sealedError();
    const ctx = encodeContext(context);
    if (!ctx) throw new AppError("bad_request", "barrier context must be 1 to 1024 bytes of text");
    const pt = typeof plaintext === "string" ? utf8.encode(plaintext) : plaintext;
    if (!(pt instanceof Uint8Array)) throw new AppError("bad_request", "barrier plaintext must be bytes or a string");
    const version = s.contentCurrent;
    const key = s.contents.get(version);
    if (!key) throw sealedError();
    const header = encodeHeader(version);
    const iv = this.#crypto.randomBytes(IV_LENGTH);
    const sealed = await this.#crypto.encrypt(key, iv, pt, dataAad(header, ctx));
    if (typeof plaintext === "string") pt.fill(0);
    const out = new Uint8Array(HEADER_LENGTH + IV_LENGTH + sealed.length);
    out.set(header, 0);
    out.set(iv, HEADER_LENGTH);
    out.set(sealed, HEADER_LENGTH + IV_LENGTH);
    return out;
  }

  /** Decrypts a ciphertext made by `encrypt` with the same `context`; else `decrypt_failed`. */
  async decrypt(ciphertext: Uint8Array, context: string): Promise<Uint8Array> {
    const s = this.#state;
    if (!s) throw sealedError();
    const ctx = encodeContext(context);
    if (!ctx) throw new AppError("bad_request", "barrier context must be 1 to 1024 bytes of text");
    const parsed = parseCiphertext(ciphertext);
    if (!parsed) throw decryptFailed();
    const key = await this.#contentKey(s, parsed.contentVersion);
    try {
      return await this.#crypto.decrypt(key, parsed.iv, parsed.sealed, dataAad(parsed.header, ctx));
    } catch (err) {
      throw decryptFailed(err);
    }
  }

  /** `decrypt`, then UTF-8 decoding (invalid UTF-8 is `decrypt_failed`). */
  async decryptString(ciphertext: Uint8Array, context: string): Promise<string> {
    const bytes = await this.decrypt(ciphertext, context);
    try {
      return utf8Decode.decode(bytes);
    } catch (err) {
      throw decryptFailed(err);
    } finally {
      bytes.fill(0);
    }
  }

  /** New root version; every intermediate key is re-wrapped under it and old roots are deleted. */
  rotateRoot(): Promise<BarrierStatus> {
    return this.#exclusive(async () => {
      const s = this.#requireState();
      const version = await this.#transaction(async (trx) => {
        const v = await s.root.create(trx);
        const rows = await trx
          .selectFrom("barrier_keys")
          .select(["version", "parent_version", "wrapped"])
          .where("layer", "=", "intermediate")
          .execute();
        for (const r of rows) {
          const raw = await s.root.unwrap(
            r.parent_version,
            r.wrapped,
            wrapAad("intermediate", r.version, "root", r.parent_version),
            trx,
          );
          try {
            const wrapped = await s.root.wrap(v, raw, wrapAad("intermediate", r.version, "root", v));
            await trx
              .updateTable("barrier_keys")
              .set({ wrapped, parent_version: v })
              .where("layer", "=", "intermediate")
              .where("version", "=", r.version)
              .execute();
          } finally {
            raw.fill(0);
          }
        }
        const old = await trx
          .selectFrom("barrier_keys")
          .select("version")
          .where("layer", "=", "root")
          .where("version", "!=", v)
          .execute();
        await s.root.retire(
          old.map((r) => r.version),
          trx,
        );
        return v;
      });
      s.rootCurrent = version;
      return this.status();
    });
  }

  /** New intermediate version under the current root; later content keys are wrapped by it. */
  rotateIntermediate(): Promise<BarrierStatus> {
    return this.#exclusive(async () => {
      const s = this.#requireState();
      const { version, key } = await this.#transaction((trx) => this.#createIntermediate(trx, s.root, s.rootCurrent));
      s.intermediates.set(version, key);
      s.intermediateCurrent = version;
      return this.status();
    });
  }

  /** New content key version under the current intermediate; new ciphertexts use it. */
  rotateContent(): Promise<BarrierStatus> {
    return this.#exclusive(async () => {
      const s = this.#requireState();
      const parent = s.intermediates.get(s.intermediateCurrent);
      if (!parent) throw sealedError();
      const { version, key } = await this.#transaction((trx) =>
        this.#createChild(trx, "content", "intermediate", s.intermediateCurrent, parent),
      );
      s.contents.set(version, key);
      s.contentCurrent = version;
      return this.status();
    });
  }

  #requireState(): UnsealedState {
    if (!this.#state) throw sealedError();
    return this.#state;
  }

  async #transaction<T>(fn: (trx: BarrierDb) => Promise<T>): Promise<T> {
    try {
      return await this.#db.transaction().execute((trx) => fn(trx as unknown as BarrierDb));
    } catch (err) {
      throw mapStorageError(err);
    }
  }

  async #nextVersion(db: BarrierDb, layer: KeyLayer): Promise<number> {
    const row = await db
      .selectFrom("barrier_keys")
      .select((eb) => eb.fn.max("version").as("v"))
      .where("layer", "=", layer)
      .executeTakeFirst();
    return Number(row?.v ?? 0) + 1;
  }

  async #createIntermediate(db: BarrierDb, root: RootLayer, rootVersion: number) {
    const version = await this.#nextVersion(db, "intermediate");
    const raw = this.#crypto.randomBytes(KEY_LENGTH);
    try {
      const wrapped = await root.wrap(rootVersion, raw, wrapAad("intermediate", version, "root", rootVersion));
      await db
        .insertInto("barrier_keys")
        .values({
          layer: "intermediate",
          version,
          parent_version: rootVersion,
          wrapped,
          created_at: new Date().toISOString(),
        })
        .execute();
      return { version, key: await this.#crypto.importKey(raw) };
    } finally {
      raw.fill(0);
    }
  }

  async #createChild(db: BarrierDb, layer: "content", parentLayer: "intermediate", parentVersion: number, parent: CryptoKey) {
    const version = await this.#nextVersion(db, layer);
    const raw = this.#crypto.randomBytes(KEY_LENGTH);
    try {
      const wrapped = await wrapKey(this.#crypto, parent, raw, wrapAad(layer, version, parentLayer, parentVersion));
      await db
        .insertInto("barrier_keys")
        .values({ layer, version, parent_version: parentVersion, wrapped, created_at: new Date().toISOString() })
        .execute();
      return { version, key: await this.#crypto.importKey(raw) };
    } finally {
      raw.fill(0);
    }
  }

  /** Loads (creating on first start) intermediate and content keys, inside the unseal transaction. */
  async #loadState(db: BarrierDb, root: RootLayer): Promise<UnsealedState> {
    const rootVersions = root.versions();
    const rootCurrent = rootVersions[rootVersions.length - 1];
    if (rootCurrent === undefined) throw new AppError("internal", "root layer has no key", { status: 500 });

    const intermediates = new Map<number, CryptoKey>();
    const iRows = await db
      .selectFrom("barrier_keys")
      .select(["version", "parent_version", "wrapped"])
      .where("layer", "=", "intermediate")
      .orderBy("version")
      .execute();
    for (const r of iRows) {
      intermediates.set(r.version, await this.#openIntermediate(db, root, r.version, r.parent_version, r.wrapped));
    }
    if (intermediates.size === 0) {
      const created = await this.#createIntermediate(db, root, rootCurrent);
      intermediates.set(created.version, created.key);
    }
    const intermediateCurrent = Math.max(...intermediates.keys());

    const contents = new Map<number, CryptoKey>();
    const cRows = await db
      .selectFrom("barrier_keys")
      .select(["version", "parent_version", "wrapped"])
      .where("layer", "=", "content")
      .orderBy("version")
      .execute();
    for (const r of cRows) {
      const parent = intermediates.get(r.parent_version);
      if (!parent) throw decryptFailed();
      contents.set(r.version, await this.#openKey(parent, "content", r.version, "intermediate", r.parent_version, r.wrapped));
    }
    if (contents.size === 0) {
      const parent = intermediates.get(intermediateCurrent)!;
      const created = await this.#createChild(db, "content", "intermediate", intermediateCurrent, parent);
      contents.set(created.version, created.key);
    }
    const contentCurrent = Math.max(...contents.keys());
    return { root, rootCurrent, intermediates, intermediateCurrent, contents, contentCurrent };
  }

  async #openIntermediate(db: BarrierDb, root: RootLayer, version: number, parentVersion: number, wrapped: Uint8Array) {
    const raw = await root.unwrap(parentVersion, wrapped, wrapAad("intermediate", version, "root", parentVersion), db);
    try {
      return await this.#crypto.importKey(raw);
    } finally {
      raw.fill(0);
    }
  }

  async #openKey(
    parent: CryptoKey,
    layer: KeyLayer,
    version: number,
    parentLayer: "intermediate",
    parentVersion: number,
    wrapped: Uint8Array,
  ): Promise<CryptoKey> {
    const raw = await unwrapKey(this.#crypto, parent, wrapped, wrapAad(layer, version, parentLayer, parentVersion));
    try {
      return await this.#crypto.importKey(raw);
    } finally {
      raw.fill(0);
    }
  }

  /** A content key by version, loading one created by another instance on demand. */
  async #contentKey(s: UnsealedState, version: number): Promise<CryptoKey> {
    const known = s.contents.get(version);
    if (known) return known;
    const row = await this.#db
      .selectFrom("barrier_keys")
      .select(["parent_version", "wrapped"])
      .where("layer", "=", "content")
      .where("version", "=", version)
      .executeTakeFirst()
      .catch((err: unknown) => {
        throw mapStorageError(err);
      });
    if (!row) throw decryptFailed();
    let parent = s.intermediates.get(row.parent_version);
    if (!parent) {
      const iRow = await this.#db
        .selectFrom("barrier_keys")
        .select(["parent_version", "wrapped"])
        .where("layer", "=", "intermediate")
        .where("version", "=", row.parent_version)
        .executeTakeFirst();
      if (!iRow) throw decryptFailed();
      parent = await this.#openIntermediate(this.#db, s.root, row.parent_version, iRow.parent_version, iRow.wrapped);
      s.intermediates.set(row.parent_version, parent);
    }
    const key = await this.#openKey(parent, "content", version, "intermediate", row.parent_version, row.wrapped);
    if (this.#state === s) s.contents.set(version, key);
    return key;
  }
}

export type { BarrierTables };
