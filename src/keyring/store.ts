/** Kysely queries of the keyring. Every query is scoped by tenant: there is no query without one. */
import type { Kysely } from "kysely";
import { likeIgnoringCase, nextSeq, precompile } from "../storage/index.ts";

export interface ElasticKeyRow {
  id: string;
  tenant: string;
  name: string;
  description: string | null;
  algorithm: string;
  purpose: string;
  status: string;
  deletion_date: string | null;
  rotation_period_s: number | null;
  next_rotation_at: string | null;
  current_version: number;
  min_decryption_version: number;
  import_allowed: number;
  tags: string; // JSON array
  created_at: string;
  updated_at: string;
  seq: number;
}

export interface MaterialKeyRow {
  key_id: string;
  version: number;
  tenant: string;
  origin: string;
  material: Uint8Array;
  created_at: string;
  retired_at: string | null;
}

export interface KeyringDb {
  elastic_keys: ElasticKeyRow;
  material_keys: MaterialKeyRow;
}

export interface ElasticKeyFilter {
  purpose?: string;
  status?: string;
  tag?: string;
  afterSeq?: number;
  limit: number;
}

export class KeyringStore {
  /** Hot reads (every data operation), compiled once. */
  private readonly getKey: (tenant: string, id: string) => Promise<ElasticKeyRow[]>;
  private readonly getMaterial: (tenant: string, id: string, version: number) => Promise<MaterialKeyRow[]>;

  constructor(private readonly db: Kysely<KeyringDb>) {
    this.getKey = precompile(db, (tenant: string, id: string) => db.selectFrom("elastic_keys").selectAll().where("tenant", "=", tenant).where("id", "=", id), ["t", "i"]);
    this.getMaterial = precompile(
      db,
      (tenant: string, id: string, version: number) =>
        db.selectFrom("material_keys").selectAll().where("tenant", "=", tenant).where("key_id", "=", id).where("version", "=", version),
      ["t", "i", 1],
    );
  }

  /** Inserts the key and its first material in one transaction. */
  async insert(row: Omit<ElasticKeyRow, "seq">, material: MaterialKeyRow): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      // seq orders pages stably; taken in the same statement so it stays monotonic per tenant.
      await tx.insertInto("elastic_keys").values({ ...row, seq: nextSeq(tx, "elastic_keys", row.tenant) }).execute();
      await tx.insertInto("material_keys").values(material).execute();
    });
  }

  async get(tenant: string, id: string): Promise<ElasticKeyRow | undefined> {
    return (await this.getKey(tenant, id))[0];
  }

  async material(tenant: string, id: string, version: number): Promise<MaterialKeyRow | undefined> {
    return (await this.getMaterial(tenant, id, version))[0];
  }

  /** Versions of a key without the sealed material, oldest first. */
  versions(tenant: string, id: string): Promise<Array<Omit<MaterialKeyRow, "material">>> {
    return this.db
      .selectFrom("material_keys")
      .select(["key_id", "version", "tenant", "origin", "created_at", "retired_at"])
      .where("tenant", "=", tenant)
      .where("key_id", "=", id)
      .orderBy("version")
      .execute();
  }

  list(tenant: string, f: ElasticKeyFilter): Promise<ElasticKeyRow[]> {
    let q = this.db.selectFrom("elastic_keys").selectAll().where("tenant", "=", tenant);
    if (f.purpose) q = q.where("purpose", "=", f.purpose);
    if (f.status) q = q.where("status", "=", f.status);
    if (f.tag) q = q.where("tags", likeIgnoringCase(this.db), `%"${f.tag}"%`);
    if (f.afterSeq !== undefined) q = q.where("seq", ">", f.afterSeq);
    return q.orderBy("seq").limit(f.limit).execute();
  }

  async update(tenant: string, id: string, patch: Partial<Omit<ElasticKeyRow, "id" | "tenant" | "seq" | "created_at">>): Promise<boolean> {
    const r = await this.db.updateTable("elastic_keys").set(patch).where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  /**
   * Adds version `material.version` and makes it current, only if the key's current version
   * is still `expectedCurrent` (two concurrent rotations cannot both win).
   */
  async addVersion(tenant: string, id: string, expectedCurrent: number, material: MaterialKeyRow, patch: Partial<ElasticKeyRow>): Promise<boolean> {
    return this.db.transaction().execute(async (tx) => {
      const r = await tx
        .updateTable("elastic_keys")
        .set({ ...patch, current_version: material.version })
        .where("tenant", "=", tenant)
        .where("id", "=", id)
        .where("current_version", "=", expectedCurrent)
        .executeTakeFirst();
      if (r.numUpdatedRows === 0n) return false;
      await tx.updateTable("material_keys").set({ retired_at: material.created_at }).where("tenant", "=", tenant).where("key_id", "=", id).where("version", "=", expectedCurrent).execute();
      await tx.insertInto("material_keys").values(material).execute();
      return true;
    });
  }

  /** Enabled keys whose scheduled rotation is due, across tenants (the sweep's only cross-tenant read). */
  dueForRotation(nowIso: string, limit: number): Promise<ElasticKeyRow[]> {
    return this.db.selectFrom("elastic_keys").selectAll().where("status", "=", "enabled").where("next_rotation_at", "<=", nowIso).limit(limit).execute();
  }

  /** Keys whose deletion date has passed, across tenants. */
  dueForDeletion(nowIso: string, limit: number): Promise<ElasticKeyRow[]> {
    return this.db.selectFrom("elastic_keys").selectAll().where("status", "=", "pending_deletion").where("deletion_date", "<=", nowIso).limit(limit).execute();
  }

  async purge(tenant: string, id: string): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("material_keys").where("tenant", "=", tenant).where("key_id", "=", id).execute();
      await tx.deleteFrom("elastic_keys").where("tenant", "=", tenant).where("id", "=", id).where("status", "=", "pending_deletion").execute();
    });
  }
}
