/**
 * sm-secrets's rules, with the semantics of Vault's KV version 2: every write makes a new
 * version; `max_versions` prunes the oldest; check-and-set (`cas`, `cas: 0` create-only,
 * `cas_required` per key or per tenant); soft delete, undelete and destroy of versions;
 * `delete_version_after` schedules a version's soft delete when it is written; JSON merge
 * patch of the current version; list by prefix, one level at a time; subkeys. No HTTP here.
 *
 * Each version's data is encrypted through the barrier with a context naming its tenant, path
 * and version, so a ciphertext moved to another row does not decrypt. Values never reach an
 * error, a log line or a metric: errors name paths and versions only.
 */
import { AppError, notFound } from "../../src/service/errors.ts";
import type { DataProtector } from "../../src/service/context.ts";
import {
  DEFAULT_MAX_VERSIONS,
  MAX_SECRET_BYTES,
  type KeyMetadataView,
  type KvConfigView,
  type PatchMetadataInput,
  type SecretVersionView,
  type VersionMetaView,
  type WriteKvConfigInput,
  type WriteMetadataInput,
} from "../../schemas/sm-secrets.ts";
import type { KeyRow, KvQueries, KvStore, VersionRow } from "./store.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A version's data is bound to its tenant, path and version (tenants hold no `/`; the path comes last). */
const dataContext = (tenant: string, path: string, version: number) => `sm-secrets/kv/${tenant}/${version}/${path}`;

/** Most keys one list answer walks through. */
const LIST_SCAN_LIMIT = 100_000;

export type SecretData = Record<string, unknown>;

/** A version that exists but cannot be read: deleted (possibly by delete_version_after) or destroyed. */
export class VersionGone extends AppError {
  constructor(readonly metadata: VersionMetaView & { custom_metadata: Record<string, string> | null }) {
    super(metadata.destroyed ? "version_destroyed" : "version_deleted", `version ${metadata.version} of this secret is ${metadata.destroyed ? "destroyed" : "deleted"}`, {
      status: 404,
      details: { version: metadata.version, deletion_time: metadata.deletion_time, destroyed: metadata.destroyed },
    });
  }
}

export const casRequired = () => new AppError("cas_required", "check-and-set (cas) is required for this key", { status: 400 });
export const casMismatch = () => new AppError("cas_mismatch", "check-and-set parameter did not match the current version", { status: 409 });

/** RFC 7386 JSON merge patch; members are defined, never assigned, so `__proto__` stays data. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const base = target !== null && typeof target === "object" && !Array.isArray(target) ? (target as Record<string, unknown>) : {};
  const out: Record<string, unknown> = {};
  const put = (k: string, value: unknown) => Object.defineProperty(out, k, { value, enumerable: true, writable: true, configurable: true });
  for (const k of Object.keys(base)) put(k, base[k]);
  for (const [k, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete out[k];
    else put(k, mergePatch(Object.prototype.hasOwnProperty.call(out, k) ? out[k] : undefined, value));
  }
  return out;
}

/** The shape of a value with every leaf replaced by null, down to `depth` levels (0: all). */
export function subkeysOf(data: SecretData, depth: number, level = 1): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, value] of Object.entries(data)) {
    const nested = value !== null && typeof value === "object" && !Array.isArray(value) && (depth === 0 || level < depth);
    Object.defineProperty(out, k, { value: nested ? subkeysOf(value as SecretData, depth, level + 1) : null, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

const bytesOf = (x: Uint8Array | ArrayBuffer) => (x instanceof Uint8Array ? x : new Uint8Array(x));

/** Ciphertexts compared as identities (not secrets: both sides are stored ciphertext). */
function sameBytes(a: Uint8Array | undefined, b: Uint8Array): boolean {
  if (!a || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The tenant's defaults from their stored columns (absent: none set). */
const configView = (maxVersions: number | null | undefined, casRequired: number | null | undefined, deleteAfter: number | null | undefined): KvConfigView => ({
  max_versions: maxVersions ?? 0,
  cas_required: casRequired === 1,
  delete_version_after_s: deleteAfter ?? 0,
});

/** A new version's data sealed before its write: for the version after `base`, from the ciphertext `from` (patch). */
interface SealedAhead {
  base: number;
  from: Uint8Array | undefined;
  ciphertext: Uint8Array;
}

export class SecretKv {
  constructor(
    private readonly store: KvStore,
    private readonly protector: DataProtector,
    private readonly now: () => Date = () => new Date(),
  ) {}

  private isDeleted(row: Pick<VersionRow, "deletion_time">, nowIso: string): boolean {
    return row.deletion_time !== null && row.deletion_time <= nowIso;
  }

  private versionMeta(row: Omit<VersionRow, "data">): VersionMetaView {
    return { version: row.version, created_time: row.created_time, deletion_time: row.deletion_time, destroyed: row.destroyed === 1 };
  }

  private customOf(key: KeyRow): Record<string, string> | null {
    return key.custom_metadata ? (JSON.parse(key.custom_metadata) as Record<string, string>) : null;
  }

  async config(tenant: string, q: KvQueries = this.store): Promise<KvConfigView> {
    const row = await q.config(tenant);
    return configView(row?.max_versions, row?.cas_required, row?.delete_version_after);
  }

  async setConfig(tenant: string, input: WriteKvConfigInput): Promise<KvConfigView> {
    return this.store.transaction(async (q) => {
      const cur = await this.config(tenant, q);
      const next = { ...cur, ...input };
      await q.upsertConfig({ tenant, max_versions: next.max_versions, cas_required: next.cas_required ? 1 : 0, delete_version_after: next.delete_version_after_s });
      return next;
    });
  }

  /** A key's effective max_versions and delete_version_after under the tenant's config. */
  private effective(key: Pick<KeyRow, "max_versions" | "delete_version_after"> | undefined, cfg: KvConfigView) {
    const maxVersions = key?.max_versions || cfg.max_versions || DEFAULT_MAX_VERSIONS;
    const own = key?.delete_version_after ?? 0;
    // As in Vault: the key's value, but never beyond the tenant's when that is set.
    const deleteAfter = own > 0 && cfg.delete_version_after_s > 0 ? Math.min(own, cfg.delete_version_after_s) : own || cfg.delete_version_after_s;
    return { maxVersions, deleteAfter };
  }

  /** The current (or given) version, decrypted; 404 when missing, VersionGone when deleted or destroyed. */
  async read(tenant: string, path: string, version?: number): Promise<SecretVersionView> {
    const key = await this.store.key(tenant, path);
    const v = version ?? key?.current_version ?? 0;
    const row = key && v > 0 ? await this.store.version(tenant, path, v) : undefined;
    if (!key || !row) throw notFound("secret version");
    const meta = { ...this.versionMeta(row), custom_metadata: this.customOf(key) };
    if (row.destroyed === 1 || !row.data || this.isDeleted(row, this.now().toISOString())) throw new VersionGone(meta);
    return { path, data: await this.open(tenant, path, row as VersionRow & { data: Uint8Array }), metadata: meta };
  }

  async subkeys(tenant: string, path: string, version: number | undefined, depth: number): Promise<{ path: string; subkeys: Record<string, unknown>; metadata: VersionMetaView }> {
    const r = await this.read(tenant, path, version);
    const { custom_metadata: _, ...metadata } = r.metadata;
    return { path, subkeys: subkeysOf(r.data, depth), metadata };
  }

  /** The current version's row of `key`, if it can be read; else not found or VersionGone. */
  private async liveCurrentRow(tenant: string, path: string, key: KeyRow | undefined, q: KvQueries, nowIso: string): Promise<VersionRow & { data: Uint8Array }> {
    const current = key?.current_version ?? 0;
    const row = key && current > 0 ? await q.version(tenant, path, current) : undefined;
    if (!key || !row) throw notFound("secret");
    if (row.destroyed === 1 || !row.data || this.isDeleted(row, nowIso)) throw new VersionGone({ ...this.versionMeta(row), custom_metadata: this.customOf(key) });
    return row as VersionRow & { data: Uint8Array };
  }

  private async open(tenant: string, path: string, row: VersionRow & { data: Uint8Array }): Promise<SecretData> {
    return JSON.parse(dec.decode(await this.protector.decrypt(bytesOf(row.data), dataContext(tenant, path, row.version)))) as SecretData;
  }

  /** `data` encrypted as `version` of the secret; payload_too_large beyond the size limit. */
  private async seal(tenant: string, path: string, version: number, data: SecretData): Promise<Uint8Array> {
    const plain = enc.encode(JSON.stringify(data));
    try {
      if (plain.length > MAX_SECRET_BYTES) throw new AppError("payload_too_large", `a secret holds at most ${MAX_SECRET_BYTES} bytes of JSON`);
      return await this.protector.encrypt(plain, dataContext(tenant, path, version));
    } finally {
      plain.fill(0);
    }
  }

  /**
   * The new value sealed ahead of its write, outside the write group's transaction, for the
   * version after the one that is current now (a patch: merged into that version's data);
   * undefined when that fails: the write then meets the reason inside, in the rules' order.
   */
  private async sealAhead(tenant: string, path: string, derive: (current: SecretData | undefined) => SecretData, needsCurrent: boolean, nowIso: string): Promise<SealedAhead | undefined> {
    try {
      const key = await this.store.key(tenant, path);
      const base = key?.current_version ?? 0;
      const from = needsCurrent ? await this.liveCurrentRow(tenant, path, key, this.store, nowIso) : undefined;
      const ciphertext = await this.seal(tenant, path, base + 1, derive(from && (await this.open(tenant, path, from))));
      return { base, from: from?.data, ciphertext };
    } catch {
      return undefined;
    }
  }

  /**
   * Writes a new version: `data`, or what `derive` makes of the current one, under
   * check-and-set. The write runs in a group transaction shared with concurrent writes, so it
   * encrypts ahead (a round trip to the crypto thread pool inside would hold the whole group)
   * and again inside only when another write took its version meanwhile.
   */
  private async writeVersion(tenant: string, path: string, cas: number | undefined, derive: (current: SecretData | undefined) => SecretData, needsCurrent: boolean) {
    const now = this.now();
    const nowIso = now.toISOString();
    const ahead = await this.sealAhead(tenant, path, derive, needsCurrent, nowIso);
    return this.store.write(async (q) => {
      const key = await q.keyWithConfig(tenant, path);
      const cfg = key ? configView(key.tenant_max_versions, key.tenant_cas_required, key.tenant_delete_version_after) : await this.config(tenant, q);
      if ((cfg.cas_required || key?.cas_required === 1) && cas === undefined) throw casRequired();
      const current = key?.current_version ?? 0;
      if (cas !== undefined && cas !== current) throw casMismatch();
      const from = needsCurrent ? await this.liveCurrentRow(tenant, path, key, q, nowIso) : undefined;
      const version = current + 1;
      // A patch sealed ahead holds a merge of the very ciphertext that is current now (IVs are random).
      const fresh = ahead !== undefined && ahead.base === current && (!from || sameBytes(ahead.from, from.data));
      const ciphertext = fresh ? ahead.ciphertext : await this.seal(tenant, path, version, derive(from && (await this.open(tenant, path, from))));
      const { maxVersions, deleteAfter } = this.effective(key, cfg);
      const deletion = deleteAfter > 0 ? new Date(now.getTime() + deleteAfter * 1000).toISOString() : null;
      await q.insertVersion({ tenant, path, version, data: ciphertext, created_time: nowIso, deletion_time: deletion, destroyed: 0 });
      const oldest = Math.max(key?.oldest_version || 1, version - maxVersions + 1);
      if (key) {
        if (oldest > (key.oldest_version || 1)) await q.pruneBelow(tenant, path, oldest);
        await q.advance(tenant, path, version, oldest, nowIso);
      } else {
        await q.insertKey({ tenant, path, cas_required: 0, max_versions: 0, delete_version_after: 0, custom_metadata: null, current_version: version, oldest_version: oldest, created_time: nowIso, updated_time: nowIso });
      }
      return { version, created_time: nowIso, deletion_time: deletion, destroyed: false, custom_metadata: key ? this.customOf(key) : null };
    });
  }

  write(tenant: string, path: string, data: SecretData, cas?: number) {
    return this.writeVersion(tenant, path, cas, () => data, false);
  }

  /** JSON merge patch of the current version into a new one; 404 when there is no live current version. */
  patch(tenant: string, path: string, patch: SecretData, cas?: number) {
    return this.writeVersion(tenant, path, cas, (cur) => mergePatch(cur, patch) as SecretData, true);
  }

  /** Soft-deletes the current version (nothing to do when there is none). */
  async deleteLatest(tenant: string, path: string): Promise<void> {
    const key = await this.store.key(tenant, path);
    if (key && key.current_version > 0) await this.store.softDelete(tenant, path, [key.current_version], this.now().toISOString());
  }

  async deleteVersions(tenant: string, path: string, versions: number[]): Promise<void> {
    await this.store.softDelete(tenant, path, versions, this.now().toISOString());
  }

  async undeleteVersions(tenant: string, path: string, versions: number[]): Promise<void> {
    await this.store.undelete(tenant, path, versions);
  }

  async destroyVersions(tenant: string, path: string, versions: number[]): Promise<void> {
    await this.store.destroy(tenant, path, versions);
  }

  async metadata(tenant: string, path: string): Promise<KeyMetadataView> {
    const key = await this.store.key(tenant, path);
    if (!key) throw notFound("secret");
    const versions = await this.store.versions(tenant, path);
    return {
      path,
      cas_required: key.cas_required === 1,
      created_time: key.created_time,
      updated_time: key.updated_time,
      current_version: key.current_version,
      oldest_version: key.oldest_version,
      max_versions: key.max_versions,
      delete_version_after_s: key.delete_version_after,
      custom_metadata: this.customOf(key),
      versions: versions.map((r) => this.versionMeta(r)),
    };
  }

  /** Sets the key's settings (creating the key without versions if needed); `merge` merges custom_metadata. */
  async writeMetadata(tenant: string, path: string, input: WriteMetadataInput | PatchMetadataInput, merge: boolean): Promise<KeyMetadataView> {
    const nowIso = this.now().toISOString();
    await this.store.transaction(async (q) => {
      const key = await q.key(tenant, path);
      let custom = key ? this.customOf(key) : null;
      if (input.custom_metadata !== undefined) {
        custom = merge ? (mergePatch(custom ?? {}, input.custom_metadata) as Record<string, string>) : (input.custom_metadata as Record<string, string>);
        if (Object.keys(custom).length > 64) throw new AppError("validation_failed", "custom_metadata holds at most 64 members");
      }
      const set = {
        cas_required: input.cas_required === undefined ? (key?.cas_required ?? 0) : input.cas_required ? 1 : 0,
        max_versions: input.max_versions ?? key?.max_versions ?? 0,
        delete_version_after: input.delete_version_after_s ?? key?.delete_version_after ?? 0,
        custom_metadata: custom && Object.keys(custom).length > 0 ? JSON.stringify(custom) : null,
        updated_time: nowIso,
      };
      if (!key) {
        await q.insertKey({ tenant, path, ...set, current_version: 0, oldest_version: 0, created_time: nowIso });
        return;
      }
      // A lower max_versions takes effect at once, as the next write would make it.
      const { maxVersions } = this.effective({ max_versions: set.max_versions, delete_version_after: set.delete_version_after }, await this.config(tenant, q));
      const oldest = Math.max(key.oldest_version || 1, key.current_version - maxVersions + 1);
      if (key.current_version > 0 && oldest > (key.oldest_version || 1)) await q.pruneBelow(tenant, path, oldest);
      await q.updateKey(tenant, path, { ...set, oldest_version: key.current_version > 0 ? oldest : key.oldest_version });
    });
    return this.metadata(tenant, path);
  }

  /** Removes the key and all its versions for good. */
  async deleteMetadata(tenant: string, path: string): Promise<void> {
    await this.store.transaction((q) => q.deleteKey(tenant, path));
  }

  /** The names one level under `prefix` (keys, and folders ending in `/`), those `visible` allows. */
  async list(tenant: string, prefix: string, visible: (fullPath: string) => boolean): Promise<string[]> {
    const names = new Set<string>();
    for (const p of await this.store.pathsUnder(tenant, prefix, LIST_SCAN_LIMIT)) {
      const rest = p.slice(prefix.length);
      const slash = rest.indexOf("/");
      const name = slash < 0 ? rest : rest.slice(0, slash + 1);
      if (name && visible(prefix + name)) names.add(name);
    }
    return [...names].sort();
  }
}
