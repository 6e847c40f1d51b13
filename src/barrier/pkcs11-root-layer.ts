/**
 * The barrier's root layer in an HSM (PKCS#11): root keys are AES-256 keys generated inside
 * the token as sensitive, non-extractable, persistent objects. Intermediate keys are wrapped
 * and unwrapped by AES-GCM computed in the token (same IV || ciphertext || tag format and
 * AAD as the software layer), so no root key ever exists outside it.
 *
 * The database keeps, per root version, only the key's label in the token. Unsealing is the
 * token login (done when the service opened the HSM): unseal secret files are not used here.
 * A database whose root keys are not in this token refuses to unseal (`unseal_failed`).
 *
 * Not covered: a key generated for a rotation whose database transaction then rolls back
 * stays in the token, unreferenced (it protects nothing).
 */
import type { Pkcs11Provider } from "../crypto/pkcs11/index.ts";
import type { TokenKey } from "../crypto/provider.ts";
import { AppError } from "../service/errors.ts";
import { IV_LENGTH, KEY_LENGTH, WRAPPED_KEY_LENGTH } from "./format.ts";
import { decryptFailed, type RootLayer, type RootLayerFactory } from "./root-layer.ts";
import type { BarrierDb } from "./schema.ts";

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

class Pkcs11RootLayer implements RootLayer {
  readonly kind = "pkcs11";
  readonly #keys = new Map<number, TokenKey>();

  constructor(
    private readonly hsm: Pkcs11Provider,
    private readonly prefix: string,
  ) {}

  /** Finds the token key a stored root row names. */
  async load(version: number, stored: Uint8Array): Promise<TokenKey> {
    let label: string;
    try {
      label = fromUtf8.decode(stored);
    } catch {
      label = "";
    }
    if (!label.startsWith(this.prefix)) {
      throw new AppError("unseal_failed", "this database's root keys are not kept in an HSM; it cannot be unsealed with hsm.* configured");
    }
    let key: TokenKey;
    try {
      key = await this.hsm.findKey(label);
    } catch (e) {
      throw new AppError("unseal_failed", `root key version ${version} is not in the configured HSM token`, { cause: e });
    }
    this.#keys.set(version, key);
    return key;
  }

  async #get(version: number, db: BarrierDb): Promise<TokenKey> {
    const known = this.#keys.get(version);
    if (known) return known;
    const row = await db.selectFrom("barrier_keys").select("wrapped").where("layer", "=", "root").where("version", "=", version).executeTakeFirst();
    if (!row) throw decryptFailed();
    return this.load(version, row.wrapped);
  }

  versions(): number[] {
    return [...this.#keys.keys()].sort((a, b) => a - b);
  }

  async create(db: BarrierDb): Promise<number> {
    const max = await db.selectFrom("barrier_keys").select((eb) => eb.fn.max("version").as("v")).where("layer", "=", "root").executeTakeFirst();
    const version = Number(max?.v ?? 0) + 1;
    // A random suffix keeps labels unique even when a rolled-back rotation reuses a version.
    const suffix = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join("");
    const label = `${this.prefix}v${version}-${suffix}`;
    const key = (await this.hsm.generateAesKey(256, { location: "token", label, persistent: true })) as TokenKey;
    await db
      .insertInto("barrier_keys")
      .values({ layer: "root", version, parent_version: 0, wrapped: utf8.encode(label), created_at: new Date().toISOString() })
      .execute();
    this.#keys.set(version, key);
    return version;
  }

  async wrap(version: number, key: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const root = this.#keys.get(version);
    if (!root) throw new AppError("internal", `root key version ${version} is not loaded`, { status: 500 });
    const iv = crypto.getRandomValues(new Uint8Array(IV_LENGTH));
    const sealed = await this.hsm.aesGcmEncrypt(root, iv, key, aad);
    const out = new Uint8Array(IV_LENGTH + sealed.length);
    out.set(iv, 0);
    out.set(sealed, IV_LENGTH);
    return out;
  }

  async unwrap(version: number, wrapped: Uint8Array, aad: Uint8Array, db: BarrierDb): Promise<Uint8Array> {
    if (!(wrapped instanceof Uint8Array) || wrapped.length !== WRAPPED_KEY_LENGTH) throw decryptFailed();
    const root = await this.#get(version, db);
    let raw: Uint8Array;
    try {
      raw = await this.hsm.aesGcmDecrypt(root, wrapped.subarray(0, IV_LENGTH), wrapped.subarray(IV_LENGTH), aad);
    } catch (e) {
      throw decryptFailed(e);
    }
    if (raw.length !== KEY_LENGTH) {
      raw.fill(0);
      throw decryptFailed();
    }
    return raw;
  }

  async retire(versions: readonly number[], db: BarrierDb): Promise<void> {
    if (versions.length === 0) return;
    await db.deleteFrom("barrier_keys").where("layer", "=", "root").where("version", "in", [...versions]).execute();
    for (const v of versions) {
      const key = this.#keys.get(v);
      this.#keys.delete(v);
      if (key) await this.hsm.destroyKey(key);
    }
  }

  close(): void {
    // The keys stay in the token; sealing forgets the handles.
    this.#keys.clear();
  }
}

/** The root-layer factory for a service whose barrier is rooted in `hsm`. */
export function pkcs11RootLayer(hsm: Pkcs11Provider): RootLayerFactory {
  return async (ctx) => {
    const layer = new Pkcs11RootLayer(hsm, `cryptoutil/${ctx.service}/barrier/root/`);
    const rows = await ctx.db.selectFrom("barrier_keys").select(["version", "wrapped"]).where("layer", "=", "root").orderBy("version").execute();
    for (const r of rows) await layer.load(r.version, r.wrapped);
    if (rows.length === 0) await layer.create(ctx.db);
    return layer;
  };
}
