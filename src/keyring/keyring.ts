/**
 * Elastic keys: a named, per-tenant ring of material keys of one algorithm. The current
 * (latest) version encrypts and signs; every retained version at or above the minimum
 * decryption version still decrypts and verifies. Shared by sm-kms and jose-ja; no HTTP.
 *
 * Guarantees:
 * - Material is stored only barrier-encrypted, its context naming tenant, key and version,
 *   so sealed material moved to another row does not open.
 * - Where material lives is a key backend (backend.ts): software (barrier-sealed JWK) or, with
 *   an HSM, the token; a version's row origin names its backend.
 * - With an HSM (`opts.hsm`), every new version of an algorithm the token can hold is generated
 *   in (or imported into) the token as a sensitive, non-extractable object; its row holds only
 *   the sealed reference and public JWK (origin `hsm` / `hsm-imported`), never private or secret
 *   bytes. Other algorithms are refused (`algorithm_not_in_hsm`) unless `softwareFallback`.
 *   Purging a key destroys its token objects.
 * - Opened material lives only as non-extractable CryptoKeys in a bounded LRU; material
 *   versions never change once written, so the cache needs no invalidation but purge.
 * - Every lookup is tenant-scoped: another tenant's key is "not found", never "forbidden".
 * - Status (disabled, pending deletion) and the minimum decryption version are read from
 *   the database on every use, so a change takes effect on the next request.
 */
import { decodePageToken, encodePageToken } from "../storage/page-token.ts";
import { mapStorageError } from "../storage/database.ts";
import type { Kysely } from "kysely";
import type { JWK } from "jose";
import type { DataProtector } from "../service/context.ts";
import { AppError, notFound } from "../service/errors.ts";
import { algorithmSpec, hasPrivateMembers, type AlgorithmSpec, type KeyPurpose, type UsableKey } from "./algorithms.ts";
import { KeyringHsm, algorithmNotInHsm, type HsmMaterialDoc } from "./hsm.ts";
import { pkcs11Backend, softwareBackend, type KeyBackend } from "./backend.ts";
import { TokenKeyObjects } from "../crypto/pkcs11/keyring-objects.ts";
import type { Pkcs11Provider } from "../crypto/pkcs11/provider.ts";
import { Lru } from "./lru.ts";
import { KeyringStore, type ElasticKeyRow, type KeyringDb, type MaterialKeyRow } from "./store.ts";

export type KeyStatus = "enabled" | "disabled" | "pending_deletion";
export type MaterialOrigin = "generated" | "imported";
/** The origin column: where the material was made and where it lives. */
type StoredOrigin = MaterialOrigin | "hsm" | "hsm-imported";
const VIEW_ORIGIN: Record<string, MaterialOrigin> = { generated: "generated", imported: "imported", hsm: "generated", "hsm-imported": "imported" };
const IN_TOKEN = new Set(["hsm", "hsm-imported"]);

/** A material key as shown to callers: never the material. */
export interface MaterialKey {
  version: number;
  kid: string;
  created_at: string;
  retired_at: string | null;
  origin: MaterialOrigin;
}

export interface ElasticKey {
  id: string;
  name: string;
  description: string | null;
  algorithm: string;
  purpose: KeyPurpose;
  status: KeyStatus;
  deletion_date: string | null;
  rotation_period_days: number | null;
  next_rotation_at: string | null;
  current_version: number;
  min_decryption_version: number;
  import_allowed: boolean;
  tags: string[];
  created_at: string;
  updated_at: string;
  versions?: MaterialKey[];
}

export interface CreateElasticKey {
  name: string;
  algorithm: string;
  purpose?: KeyPurpose;
  description?: string;
  rotation_period_days?: number;
  import_allowed?: boolean;
  tags?: string[];
}

export interface UpdateElasticKey {
  description?: string | null;
  tags?: string[];
  rotation_period_days?: number | null;
  min_decryption_version?: number;
  import_allowed?: boolean;
}

export interface ListElasticKeys {
  purpose?: KeyPurpose;
  status?: KeyStatus;
  tag?: string;
  limit?: number;
  page_token?: string;
}

/** A version ready for use: the key's row, its algorithm and the imported CryptoKeys. */
export interface ActiveVersion {
  key: ElasticKeyRow;
  spec: AlgorithmSpec;
  version: number;
  kid: string;
  usable: UsableKey;
}

/** An exported public key: always with kty, kid, alg and use. */
export type PublicJwk = JWK & { kty: string; kid: string; alg: string; use: string };

export const DELETION_WAIT_MIN_DAYS = 7;
export const DELETION_WAIT_MAX_DAYS = 30;
const DAY_MS = 86_400_000;

/** `<key-id>.v<version>`: the kid of every output of a key. */
export const kidOf = (id: string, version: number) => `${id}.v${version}`;

/** Splits a kid into key id and version; undefined when it is not one of ours. */
export function parseKid(kid: unknown): { id: string; version: number } | undefined {
  if (typeof kid !== "string") return undefined;
  const m = /^([0-9a-f-]{36})\.v([1-9][0-9]{0,8})$/.exec(kid);
  return m ? { id: m[1]!, version: Number(m[2]) } : undefined;
}

/** The barrier context of a material key: binds its ciphertext to tenant, key and version. */
const materialContext = (tenant: string, id: string, version: number) => `keyring/${tenant}/${id}/v${version}`;
const utf8 = new TextEncoder();
const utf8Decode = new TextDecoder();


export const keyDisabled = () => new AppError("key_disabled", "the key is disabled", { status: 409 });
export const keyPendingDeletion = () => new AppError("key_pending_deletion", "the key is scheduled for deletion", { status: 409 });
export const versionBelowMinimum = (min: number) =>
  new AppError("key_version_below_minimum", `this key version is below the key's minimum decryption version (${min})`, { status: 409 });
export const purposeMismatch = (purpose: string) => new AppError("key_purpose_mismatch", `this operation is not allowed for a ${purpose} key`);

export interface KeyringOptions {
  /** How many opened material versions stay in memory (default 1000). */
  cacheSize?: number;
  /** Clock, for tests of scheduled rotation and deletion. */
  now?: () => Date;
  /** The HSM: new material of every algorithm it can hold is generated and kept there. */
  hsm?: Pkcs11Provider;
  /** With an HSM, whether algorithms it cannot hold may still have (barrier-sealed) software keys. */
  softwareFallback?: boolean;
  /** Told of every completed rotation, on request (`scheduled` false) or by the sweep (true). */
  onRotated?: (r: { tenant: string; key_id: string; name: string; algorithm: string; version: number; scheduled: boolean }) => void;
}

/** A sealed material row, and how to undo what was made for it outside the database. */
interface SealedMaterial {
  row: MaterialKeyRow;
  discard: () => Promise<void>;
}

export class Keyring {
  readonly store: KeyringStore;
  private readonly cache: Lru<string, Promise<UsableKey>>;
  private readonly now: () => Date;
  /** The token keeping new material, when an HSM is configured. */
  readonly hsm?: KeyringHsm;
  /** The HSM as a key backend (backend.ts); software is the other. */
  private readonly tokenBackend?: KeyBackend;
  private readonly softwareFallback: boolean;
  private readonly onRotated?: KeyringOptions["onRotated"];

  constructor(
    db: Kysely<any>,
    private readonly protector: DataProtector,
    opts: KeyringOptions = {},
  ) {
    this.store = new KeyringStore(db as Kysely<KeyringDb>);
    this.cache = new Lru(opts.cacheSize ?? 1000);
    // Sealed means no usable key in memory: the next use decrypts again, which the barrier refuses.
    protector.onSeal(() => this.cache.clear());
    this.now = opts.now ?? (() => new Date());
    this.hsm = opts.hsm ? new KeyringHsm(new TokenKeyObjects(opts.hsm)) : undefined;
    this.tokenBackend = this.hsm && pkcs11Backend(this.hsm);
    this.softwareFallback = opts.softwareFallback ?? false;
    this.onRotated = opts.onRotated;
  }

  private view(row: ElasticKeyRow, versions?: Array<Omit<MaterialKeyRow, "material">>): ElasticKey {
    const v: ElasticKey = {
      id: row.id,
      name: row.name,
      description: row.description,
      algorithm: row.algorithm,
      purpose: row.purpose as KeyPurpose,
      status: row.status as KeyStatus,
      deletion_date: row.deletion_date,
      rotation_period_days: row.rotation_period_s === null ? null : row.rotation_period_s / 86_400,
      next_rotation_at: row.next_rotation_at,
      current_version: row.current_version,
      min_decryption_version: row.min_decryption_version,
      import_allowed: row.import_allowed === 1,
      tags: JSON.parse(row.tags) as string[],
      created_at: row.created_at,
      updated_at: row.updated_at,
    };
    if (versions) {
      v.versions = versions.map((m) => ({ version: m.version, kid: kidOf(m.key_id, m.version), created_at: m.created_at, retired_at: m.retired_at, origin: VIEW_ORIGIN[m.origin] ?? "generated" }));
    }
    return v;
  }

  /**
   * The backend a new version's material goes to: with an HSM, the token for every algorithm it
   * can hold (software otherwise only with `softwareFallback`); public-only imports have nothing
   * secret and stay in software. Without an HSM, software.
   */
  private backendFor(spec: AlgorithmSpec, supplied?: JWK): KeyBackend {
    const hasSecret = !supplied || hasPrivateMembers(supplied);
    if (!this.tokenBackend || !hasSecret) return softwareBackend;
    if (this.tokenBackend.holds(spec, supplied)) return this.tokenBackend;
    if (!this.softwareFallback) throw algorithmNotInHsm(spec.name);
    return softwareBackend;
  }

  /** The backend that holds a stored version, from its origin; the token's must be configured. */
  private backendOf(origin: string): KeyBackend {
    if (!IN_TOKEN.has(origin)) return softwareBackend;
    if (!this.tokenBackend) throw new AppError("unavailable", "this key version lives in an HSM, which is not configured");
    return this.tokenBackend;
  }

  /**
   * Makes and seals a version's material: the caller's (imported, already validated) or fresh,
   * in the backend `backendFor` picks; the barrier seals the backend's document (the key itself
   * in software, a reference and public JWK for a token).
   */
  private async seal(tenant: string, id: string, version: number, spec: AlgorithmSpec, createdAt: string, supplied?: JWK): Promise<SealedMaterial> {
    const backend = this.backendFor(spec, supplied);
    const made = await backend.create(spec, { tenant, keyId: id, version }, supplied);
    try {
      const row = await this.sealDoc(tenant, id, version, made.doc, (supplied ? backend.origins.imported : backend.origins.generated) as StoredOrigin, createdAt);
      return { row, discard: made.discard };
    } catch (e) {
      await made.discard().catch(() => undefined);
      throw e;
    }
  }

  private async sealDoc(tenant: string, id: string, version: number, doc: JWK | HsmMaterialDoc, origin: StoredOrigin, createdAt: string): Promise<MaterialKeyRow> {
    const bytes = utf8.encode(JSON.stringify(doc));
    try {
      const material = await this.protector.encrypt(bytes, materialContext(tenant, id, version));
      return { key_id: id, version, tenant, origin, material, created_at: createdAt, retired_at: null };
    } finally {
      bytes.fill(0);
    }
  }

  private nextRotation(from: Date, periodS: number | null): string | null {
    return periodS === null ? null : new Date(from.getTime() + periodS * 1000).toISOString();
  }

  /**
   * Creates an elastic key. `imported` is caller material for version 1, already checked against
   * the algorithm (src/keyring/import.ts); without it the material is generated.
   */
  async create(tenant: string, input: CreateElasticKey, imported?: JWK): Promise<ElasticKey> {
    const spec = algorithmSpec(input.algorithm);
    if (input.purpose && input.purpose !== spec.purpose) {
      throw new AppError("validation_failed", `algorithm ${spec.name} is for purpose ${spec.purpose}, not ${input.purpose}`);
    }
    const id = crypto.randomUUID();
    const now = this.now();
    const iso = now.toISOString();
    const periodS = input.rotation_period_days ? Math.round(input.rotation_period_days * 86_400) : null;
    const row: Omit<ElasticKeyRow, "seq"> = {
      id,
      tenant,
      name: input.name,
      description: input.description ?? null,
      algorithm: spec.name,
      purpose: spec.purpose,
      status: "enabled",
      deletion_date: null,
      rotation_period_s: periodS,
      next_rotation_at: this.nextRotation(now, periodS),
      current_version: 1,
      min_decryption_version: 1,
      import_allowed: input.import_allowed ? 1 : 0,
      tags: JSON.stringify([...new Set(input.tags ?? [])]),
      created_at: iso,
      updated_at: iso,
    };
    const material = await this.seal(tenant, id, 1, spec, iso, imported);
    try {
      await this.store.insert(row, material.row);
    } catch (e) {
      await material.discard().catch(() => undefined);
      if (mapStorageError(e).code === "conflict") {
        throw new AppError("conflict", `an elastic key named ${input.name} already exists`);
      }
      throw e;
    }
    return this.get(tenant, id);
  }

  private async row(tenant: string, id: string): Promise<ElasticKeyRow> {
    const row = await this.store.get(tenant, id);
    if (!row) throw notFound("elastic key");
    return row;
  }

  async get(tenant: string, id: string): Promise<ElasticKey> {
    const row = await this.row(tenant, id);
    return this.view(row, await this.store.versions(tenant, id));
  }

  async list(tenant: string, q: ListElasticKeys): Promise<{ items: ElasticKey[]; next_page_token: string | null }> {
    const limit = q.limit ?? 20;
    const rows = await this.store.list(tenant, {
      purpose: q.purpose,
      status: q.status,
      tag: q.tag,
      afterSeq: q.page_token ? decodePageToken(q.page_token) : undefined,
      limit: limit + 1,
    });
    const page = rows.slice(0, limit);
    return { items: page.map((r) => this.view(r)), next_page_token: rows.length > limit ? encodePageToken(page[page.length - 1]!.seq) : null };
  }

  async update(tenant: string, id: string, patch: UpdateElasticKey): Promise<ElasticKey> {
    const row = await this.row(tenant, id);
    const now = this.now();
    const set: Partial<ElasticKeyRow> = { updated_at: now.toISOString() };
    if (patch.description !== undefined) set.description = patch.description;
    if (patch.tags !== undefined) set.tags = JSON.stringify([...new Set(patch.tags)]);
    if (patch.import_allowed !== undefined) set.import_allowed = patch.import_allowed ? 1 : 0;
    if (patch.rotation_period_days !== undefined) {
      set.rotation_period_s = patch.rotation_period_days === null ? null : Math.round(patch.rotation_period_days * 86_400);
      set.next_rotation_at = this.nextRotation(now, set.rotation_period_s);
    }
    if (patch.min_decryption_version !== undefined) {
      if (patch.min_decryption_version > row.current_version) {
        throw new AppError("validation_failed", `min_decryption_version cannot exceed the current version (${row.current_version})`);
      }
      set.min_decryption_version = patch.min_decryption_version;
    }
    if (!(await this.store.update(tenant, id, set))) throw notFound("elastic key");
    return this.get(tenant, id);
  }

  /** Adds a new material version and makes it current. */
  /**
   * Rotates: a new version becomes current, generated, or `imported` (caller material already
   * checked against the algorithm; the key must allow import).
   */
  async rotate(tenant: string, id: string, imported?: JWK): Promise<ElasticKey> {
    const row = await this.row(tenant, id);
    if (row.status === "pending_deletion") throw keyPendingDeletion();
    if (imported && row.import_allowed !== 1) throw new AppError("import_not_allowed", "this key does not allow import", { status: 409 });
    await this.rotateRow(row, false, imported);
    return this.get(tenant, id);
  }

  private async rotateRow(row: ElasticKeyRow, scheduled: boolean, imported?: JWK): Promise<void> {
    const now = this.now();
    const iso = now.toISOString();
    const version = row.current_version + 1;
    const material = await this.seal(row.tenant, row.id, version, algorithmSpec(row.algorithm), iso, imported);
    let ok = false;
    try {
      ok = await this.store.addVersion(row.tenant, row.id, row.current_version, material.row, {
        updated_at: iso,
        next_rotation_at: this.nextRotation(now, row.rotation_period_s),
      });
    } finally {
      if (!ok) await material.discard().catch(() => undefined);
    }
    if (!ok) throw new AppError("conflict", "the key was rotated concurrently; retry");
    this.onRotated?.({ tenant: row.tenant, key_id: row.id, name: row.name, algorithm: row.algorithm, version, scheduled });
  }

  /**
   * The scheduled sweep: rotates enabled keys whose rotation is due and purges keys whose
   * deletion date has passed. Returns how many of each.
   */
  async sweep(now = this.now(), batch = 100): Promise<{ rotated: number; purged: number }> {
    const iso = now.toISOString();
    let rotated = 0;
    for (const row of await this.store.dueForRotation(iso, batch)) {
      try {
        await this.rotateRow(row, true);
        rotated++;
      } catch (e) {
        // Another instance rotated it; or the HSM cannot hold its algorithm (a fallback key after the fallback was turned off).
        if ((e as AppError)?.code !== "conflict" && (e as AppError)?.code !== "algorithm_not_in_hsm") throw e;
      }
    }
    let purged = 0;
    for (const row of await this.store.dueForDeletion(iso, batch)) {
      const inToken = (await this.store.versions(row.tenant, row.id)).filter((m) => IN_TOKEN.has(m.origin));
      // Without the HSM its objects cannot be destroyed: the key waits for a sweep that has it.
      if (inToken.length > 0 && !this.tokenBackend) continue;
      // Token objects first: if this fails the rows stay, and the next sweep tries again.
      for (const m of inToken) await this.backendOf(m.origin).destroy({ tenant: row.tenant, keyId: row.id, version: m.version });
      await this.store.purge(row.tenant, row.id);
      this.cache.deletePrefix(`${row.tenant}/${row.id}.`);
      purged++;
    }
    return { rotated, purged };
  }

  /** Rotation on schedule only (see `sweep`). */
  async rotateDue(now = this.now()): Promise<number> {
    return (await this.sweep(now)).rotated;
  }

  async disable(tenant: string, id: string): Promise<ElasticKey> {
    return this.setStatus(tenant, id, "disabled", ["enabled", "disabled"]);
  }

  async enable(tenant: string, id: string): Promise<ElasticKey> {
    return this.setStatus(tenant, id, "enabled", ["enabled", "disabled"]);
  }

  private async setStatus(tenant: string, id: string, status: KeyStatus, from: KeyStatus[]): Promise<ElasticKey> {
    const row = await this.row(tenant, id);
    if (!from.includes(row.status as KeyStatus)) {
      throw row.status === "pending_deletion" ? keyPendingDeletion() : new AppError("conflict", `the key is ${row.status}`);
    }
    await this.store.update(tenant, id, { status, updated_at: this.now().toISOString() });
    return this.get(tenant, id);
  }

  /** Schedules deletion after `waitingDays` (7..30, default 30); the key is refused meanwhile. */
  async scheduleDeletion(tenant: string, id: string, waitingDays = DELETION_WAIT_MAX_DAYS): Promise<ElasticKey> {
    if (!Number.isInteger(waitingDays) || waitingDays < DELETION_WAIT_MIN_DAYS || waitingDays > DELETION_WAIT_MAX_DAYS) {
      throw new AppError("validation_failed", `waiting period must be ${DELETION_WAIT_MIN_DAYS}..${DELETION_WAIT_MAX_DAYS} days`);
    }
    const row = await this.row(tenant, id);
    if (row.status === "pending_deletion") throw keyPendingDeletion();
    const now = this.now();
    await this.store.update(tenant, id, {
      status: "pending_deletion",
      deletion_date: new Date(now.getTime() + waitingDays * DAY_MS).toISOString(),
      updated_at: now.toISOString(),
    });
    return this.get(tenant, id);
  }

  /** Cancels a scheduled deletion; the key comes back disabled, to be enabled on purpose. */
  async restore(tenant: string, id: string): Promise<ElasticKey> {
    const row = await this.row(tenant, id);
    if (row.status !== "pending_deletion") throw new AppError("conflict", "the key is not scheduled for deletion");
    await this.store.update(tenant, id, { status: "disabled", deletion_date: null, updated_at: this.now().toISOString() });
    return this.get(tenant, id);
  }

  private checkUsable(row: ElasticKeyRow, purposes: readonly KeyPurpose[]): AlgorithmSpec {
    if (row.status === "disabled") throw keyDisabled();
    if (row.status === "pending_deletion") throw keyPendingDeletion();
    if (!purposes.includes(row.purpose as KeyPurpose)) throw purposeMismatch(row.purpose);
    return algorithmSpec(row.algorithm);
  }

  private async usable(row: ElasticKeyRow, spec: AlgorithmSpec, version: number): Promise<UsableKey> {
    const cacheKey = `${row.tenant}/${kidOf(row.id, version)}`;
    let p = this.cache.get(cacheKey);
    if (!p) {
      p = this.open(row, spec, version);
      this.cache.set(cacheKey, p);
      p.catch(() => this.cache.delete(cacheKey));
    }
    return p;
  }

  private async open(row: ElasticKeyRow, spec: AlgorithmSpec, version: number): Promise<UsableKey> {
    const m = await this.store.material(row.tenant, row.id, version);
    if (!m) throw notFound("key version");
    const backend = this.backendOf(m.origin);
    const bytes = await this.protector.decrypt(m.material, materialContext(row.tenant, row.id, version));
    try {
      return await backend.open(spec, JSON.parse(utf8Decode.decode(bytes)), { tenant: row.tenant, keyId: row.id, version });
    } finally {
      bytes.fill(0);
    }
  }

  /** The current version of an enabled key of one of `purposes` (to encrypt, sign, mac). */
  async current(tenant: string, id: string, purposes: readonly KeyPurpose[]): Promise<ActiveVersion> {
    const key = await this.row(tenant, id);
    const spec = this.checkUsable(key, purposes);
    const version = key.current_version;
    return { key, spec, version, kid: kidOf(key.id, version), usable: await this.usable(key, spec, version) };
  }

  /** A retained version of an enabled key, at or above its minimum decryption version (to decrypt, verify). */
  async version(tenant: string, id: string, version: number, purposes: readonly KeyPurpose[]): Promise<ActiveVersion> {
    const key = await this.row(tenant, id);
    const spec = this.checkUsable(key, purposes);
    if (!Number.isInteger(version) || version < 1 || version > key.current_version) throw notFound("key version");
    if (version < key.min_decryption_version) throw versionBelowMinimum(key.min_decryption_version);
    return { key, spec, version, kid: kidOf(key.id, version), usable: await this.usable(key, spec, version) };
  }

  /**
   * The public JWK (with kid, alg, use) of an asymmetric key's version (default current).
   * A disabled key still exports (holders of old signatures may need it); one pending deletion does not.
   */
  async publicKey(tenant: string, id: string, version?: number): Promise<PublicJwk> {
    const key = await this.row(tenant, id);
    const spec = algorithmSpec(key.algorithm);
    if (!spec.asymmetric) throw new AppError("key_not_asymmetric", "only asymmetric keys have a public key");
    if (key.status === "pending_deletion") throw keyPendingDeletion();
    const v = version ?? key.current_version;
    if (!Number.isInteger(v) || v < 1 || v > key.current_version) throw notFound("key version");
    const usable = await this.usable(key, spec, v);
    return { ...usable.publicJwk!, kty: usable.publicJwk!.kty!, kid: kidOf(key.id, v), alg: spec.jose, use: spec.purpose === "sign" ? "sig" : "enc" };
  }
}
