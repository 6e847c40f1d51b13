/** identity-rs's queries. Every query takes the tenant and the owner: a note is only its owner's. */
import type { Kysely } from "kysely";

export interface NoteRow { id: string; tenant: string; owner: string; title: string; body: Uint8Array; created_at: string; updated_at: string }
interface RsDb { notes: NoteRow }

const bytes = (b: unknown) => (b instanceof Uint8Array ? b : new Uint8Array(b as ArrayBuffer));
const withBytes = (r: NoteRow): NoteRow => ({ ...r, body: bytes(r.body) });

/** The most notes one list answer holds. */
export const MAX_NOTES = 100;

export class NoteStore {
  constructor(private readonly db: Kysely<RsDb>) {}

  async insert(row: NoteRow): Promise<void> {
    await this.db.insertInto("notes").values(row).execute();
  }
  async get(tenant: string, owner: string, id: string): Promise<NoteRow | undefined> {
    const r = await this.db.selectFrom("notes").selectAll().where("tenant", "=", tenant).where("owner", "=", owner).where("id", "=", id).executeTakeFirst();
    return r && withBytes(r);
  }
  async list(tenant: string, owner: string): Promise<NoteRow[]> {
    const rows = await this.db.selectFrom("notes").selectAll().where("tenant", "=", tenant).where("owner", "=", owner).orderBy("created_at").orderBy("id").limit(MAX_NOTES).execute();
    return rows.map(withBytes);
  }
  async update(tenant: string, owner: string, id: string, set: Pick<NoteRow, "title" | "body" | "updated_at">): Promise<boolean> {
    const r = await this.db.updateTable("notes").set(set).where("tenant", "=", tenant).where("owner", "=", owner).where("id", "=", id).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async delete(tenant: string, owner: string, id: string): Promise<boolean> {
    const r = await this.db.deleteFrom("notes").where("tenant", "=", tenant).where("owner", "=", owner).where("id", "=", id).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }
}
