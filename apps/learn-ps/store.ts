/** Kysely queries of learn-ps. Every query is scoped by tenant: there is no query without one. */
import type { Kysely } from "kysely";
import { likeIgnoringCase, nextSeq, precompile } from "../../src/storage/index.ts";

export interface PetRow {
  id: string;
  tenant: string;
  name: string;
  species: string;
  age_years: number | null;
  tags: string; // JSON array
  owner_note: Uint8Array | null;
  created_at: string;
  updated_at: string;
  seq: number;
}

export interface PetsDb {
  pets: PetRow;
}

export interface PetFilter {
  species?: string;
  namePrefix?: string;
  tag?: string;
  afterSeq?: number;
  limit: number;
}

export class PetStore {
  /** The hot read path (GET /pets/{id}), compiled once. */
  private readonly getById: (tenant: string, id: string) => Promise<PetRow[]>;

  constructor(private readonly db: Kysely<PetsDb>) {
    this.getById = precompile(db, (tenant: string, id: string) => db.selectFrom("pets").selectAll().where("tenant", "=", tenant).where("id", "=", id), ["t", "i"]);
  }

  async insert(row: Omit<PetRow, "seq">): Promise<void> {
    // seq orders pages stably; taken in the same statement so it stays monotonic per tenant.
    await this.db.transaction().execute((trx) => trx.insertInto("pets").values({ ...row, seq: nextSeq(trx, "pets", row.tenant) }).execute());
  }

  async get(tenant: string, id: string): Promise<PetRow | undefined> {
    return (await this.getById(tenant, id))[0];
  }

  list(tenant: string, f: PetFilter): Promise<PetRow[]> {
    let q = this.db.selectFrom("pets").selectAll().where("tenant", "=", tenant);
    if (f.species) q = q.where("species", "=", f.species);
    if (f.namePrefix) q = q.where("name", ">=", f.namePrefix).where("name", "<", f.namePrefix + "\uffff");
    if (f.tag) q = q.where("tags", likeIgnoringCase(this.db), `%"${f.tag}"%`);
    if (f.afterSeq !== undefined) q = q.where("seq", ">", f.afterSeq);
    return q.orderBy("seq").limit(f.limit).execute();
  }

  async update(tenant: string, id: string, patch: Partial<Omit<PetRow, "id" | "tenant" | "seq" | "created_at">>): Promise<boolean> {
    const r = await this.db.updateTable("pets").set(patch).where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  async delete(tenant: string, id: string): Promise<boolean> {
    const r = await this.db.deleteFrom("pets").where("tenant", "=", tenant).where("id", "=", id).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }
}
