/** Kysely queries of sm-secrets. Every query takes the tenant: there is no query without one. */
import type { Kysely, Transaction } from "kysely";
import { GroupTransaction, precompileStatement, withTransaction } from "../../src/storage/index.ts";

export interface KeyRow {
  tenant: string;
  path: string;
  cas_required: number;
  max_versions: number;
  delete_version_after: number;
  custom_metadata: string | null;
  current_version: number;
  oldest_version: number;
  created_time: string;
  updated_time: string;
}

export interface VersionRow {
  tenant: string;
  path: string;
  version: number;
  data: Uint8Array | null;
  created_time: string;
  deletion_time: string | null;
  destroyed: number;
}

export interface ConfigRow {
  tenant: string;
  max_versions: number;
  cas_required: number;
  delete_version_after: number;
}

export interface SecretsDb {
  kv_keys: KeyRow;
  kv_versions: VersionRow;
  kv_config: ConfigRow;
}

type Db = Kysely<SecretsDb> | Transaction<SecretsDb>;

/** A key with its tenant's defaults (null where the tenant has set none), as a write needs them. */
export interface KeyWithConfigRow extends KeyRow {
  tenant_max_versions: number | null;
  tenant_cas_required: number | null;
  tenant_delete_version_after: number | null;
}

/**
 * The queries of every version write and read, compiled once for the store's database and
 * bound on whichever handle runs them (the store, or a write group's transaction: see
 * precompileStatement).
 */
function hotQueries(root: Kysely<SecretsDb>) {
  const sample = new Uint8Array(1);
  return {
    key: precompileStatement(root, (tenant: string, path: string) => root.selectFrom("kv_keys").selectAll().where("tenant", "=", tenant).where("path", "=", path), ["t", "p"]),
    // Scalar subqueries, not a join: bun:sqlite reads a joined row several times slower.
    keyWithConfig: precompileStatement(
      root,
      (tenant: string, path: string) =>
        root
          .selectFrom("kv_keys")
          .selectAll("kv_keys")
          .select((eb) => {
            const tenantDefault = (column: "max_versions" | "cas_required" | "delete_version_after") =>
              eb.selectFrom("kv_config").select(column).whereRef("kv_config.tenant", "=", "kv_keys.tenant");
            return [
              tenantDefault("max_versions").as("tenant_max_versions"),
              tenantDefault("cas_required").as("tenant_cas_required"),
              tenantDefault("delete_version_after").as("tenant_delete_version_after"),
            ];
          })
          .where("tenant", "=", tenant)
          .where("path", "=", path),
      ["t", "p"],
    ),
    version: precompileStatement(root, (tenant: string, path: string, version: number) => root.selectFrom("kv_versions").selectAll().where("tenant", "=", tenant).where("path", "=", path).where("version", "=", version), ["t", "p", 1]),
    config: precompileStatement(root, (tenant: string) => root.selectFrom("kv_config").selectAll().where("tenant", "=", tenant), ["t"]),
    insertVersion: precompileStatement(
      root,
      (tenant: string, path: string, version: number, data: Uint8Array | null, created_time: string, deletion_time: string | null, destroyed: number) =>
        root.insertInto("kv_versions").values({ tenant, path, version, data, created_time, deletion_time, destroyed }),
      ["t", "p", 1, sample, "c", "d", 0],
    ),
    advance: precompileStatement(
      root,
      (current_version: number, oldest_version: number, updated_time: string, tenant: string, path: string) =>
        root.updateTable("kv_keys").set({ current_version, oldest_version, updated_time }).where("tenant", "=", tenant).where("path", "=", path),
      [2, 1, "u", "t", "p"],
    ),
    pruneBelow: precompileStatement(root, (tenant: string, path: string, keepFrom: number) => root.deleteFrom("kv_versions").where("tenant", "=", tenant).where("path", "=", path).where("version", "<", keepFrom), ["t", "p", 3]),
  };
}
type HotQueries = ReturnType<typeof hotQueries>;

/** Queries on one database handle (the store itself, or a transaction's). */
export class KvQueries {
  constructor(
    protected readonly db: Db,
    private readonly hot: HotQueries,
  ) {}

  async key(tenant: string, path: string): Promise<KeyRow | undefined> {
    return (await this.hot.key<KeyRow>(this.db, tenant, path)).rows[0];
  }

  /** The key with its tenant's defaults, in one statement (undefined when there is no key). */
  async keyWithConfig(tenant: string, path: string): Promise<KeyWithConfigRow | undefined> {
    return (await this.hot.keyWithConfig<KeyWithConfigRow>(this.db, tenant, path)).rows[0];
  }

  async version(tenant: string, path: string, version: number): Promise<VersionRow | undefined> {
    return (await this.hot.version<VersionRow>(this.db, tenant, path, version)).rows[0];
  }

  /** Every version of a key without its data, oldest first. */
  versions(tenant: string, path: string): Promise<Omit<VersionRow, "data">[]> {
    return this.db
      .selectFrom("kv_versions")
      .select(["tenant", "path", "version", "created_time", "deletion_time", "destroyed"])
      .where("tenant", "=", tenant)
      .where("path", "=", path)
      .orderBy("version")
      .execute();
  }

  async config(tenant: string): Promise<ConfigRow | undefined> {
    return (await this.hot.config<ConfigRow>(this.db, tenant)).rows[0];
  }

  async insertKey(row: KeyRow): Promise<void> {
    await this.db.insertInto("kv_keys").values(row).execute();
  }

  async updateKey(tenant: string, path: string, set: Partial<Omit<KeyRow, "tenant" | "path" | "created_time">>): Promise<void> {
    await this.db.updateTable("kv_keys").set(set).where("tenant", "=", tenant).where("path", "=", path).execute();
  }

  async insertVersion(r: VersionRow): Promise<void> {
    await this.hot.insertVersion(this.db, r.tenant, r.path, r.version, r.data, r.created_time, r.deletion_time, r.destroyed);
  }

  /** Makes `version` current after a write (and `oldest` the oldest kept). */
  async advance(tenant: string, path: string, version: number, oldest: number, updatedTime: string): Promise<void> {
    await this.hot.advance(this.db, version, oldest, updatedTime, tenant, path);
  }

  /** Removes the versions below `keepFrom` (max_versions pruning). */
  async pruneBelow(tenant: string, path: string, keepFrom: number): Promise<void> {
    await this.hot.pruneBelow(this.db, tenant, path, keepFrom);
  }

  /** Soft-deletes the listed versions that are live at `now` (not destroyed, not already deleted). */
  async softDelete(tenant: string, path: string, versions: number[], now: string): Promise<void> {
    await this.db
      .updateTable("kv_versions")
      .set({ deletion_time: now })
      .where("tenant", "=", tenant)
      .where("path", "=", path)
      .where("version", "in", versions)
      .where("destroyed", "=", 0)
      .where((eb) => eb.or([eb("deletion_time", "is", null), eb("deletion_time", ">", now)]))
      .execute();
  }

  async undelete(tenant: string, path: string, versions: number[]): Promise<void> {
    await this.db
      .updateTable("kv_versions")
      .set({ deletion_time: null })
      .where("tenant", "=", tenant)
      .where("path", "=", path)
      .where("version", "in", versions)
      .where("destroyed", "=", 0)
      .execute();
  }

  /** Destroys the listed versions: their ciphertext is dropped for good. */
  async destroy(tenant: string, path: string, versions: number[]): Promise<void> {
    await this.db.updateTable("kv_versions").set({ data: null, destroyed: 1 }).where("tenant", "=", tenant).where("path", "=", path).where("version", "in", versions).execute();
  }

  /** Removes a key, its metadata and every version. */
  async deleteKey(tenant: string, path: string): Promise<void> {
    await this.db.deleteFrom("kv_versions").where("tenant", "=", tenant).where("path", "=", path).execute();
    await this.db.deleteFrom("kv_keys").where("tenant", "=", tenant).where("path", "=", path).execute();
  }

  /** The paths of the tenant's keys that start with `prefix`, sorted. */
  async pathsUnder(tenant: string, prefix: string, limit: number): Promise<string[]> {
    let q = this.db.selectFrom("kv_keys").select("path").where("tenant", "=", tenant);
    if (prefix) q = q.where("path", ">=", prefix).where("path", "<", prefix + "\uffff");
    const rows = await q.orderBy("path").limit(limit).execute();
    return rows.map((r) => r.path);
  }

  async upsertConfig(row: ConfigRow): Promise<void> {
    await this.db
      .insertInto("kv_config")
      .values(row)
      .onConflict((oc) => oc.column("tenant").doUpdateSet({ max_versions: row.max_versions, cas_required: row.cas_required, delete_version_after: row.delete_version_after }))
      .execute();
  }
}

/** Writes per group transaction at most, and how long the first waits for others (ms). */
const WRITE_BATCH = 128;
const WRITE_GATHER_MS = 0;

export class KvStore extends KvQueries {
  /** Concurrent version writes share one transaction and one WAL sync (see GroupTransaction). */
  private readonly writes: GroupTransaction<SecretsDb, KvQueries>;
  private readonly hotQueries: HotQueries;

  constructor(private readonly root: Kysely<SecretsDb>) {
    const hot = hotQueries(root);
    super(root, hot);
    this.writes = new GroupTransaction(root, (trx) => new KvQueries(trx, hot), { maxBatch: WRITE_BATCH, gatherMs: WRITE_GATHER_MS });
    this.hotQueries = hot;
  }

  /**
   * Runs one check-and-set write in a transaction shared with the writes that arrive meanwhile,
   * each in its own savepoint (a refused one changes nothing); resolves once it is on disk.
   */
  write<T>(fn: (q: KvQueries) => Promise<T>): Promise<T> {
    return this.writes.run(fn);
  }

  /** Runs `fn` in one read-write transaction: check-and-set and version numbering happen inside. */
  transaction<T>(fn: (q: KvQueries) => Promise<T>): Promise<T> {
    return withTransaction(this.root, (trx) => fn(new KvQueries(trx, this.hotQueries)));
  }
}
