/** identity-rp's queries. Sessions are found by the hash of their id, ended by deleting them. */
import type { Kysely } from "kysely";

export interface SessionRow {
  id_hash: string;
  tenant: string;
  subject: string;
  sid: string | null;
  name: string | null;
  tokens: Uint8Array;
  access_expires_at: number;
  version: number;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
}
interface RpDb {
  rp_sessions: SessionRow;
}

const bytes = (b: unknown) => (b instanceof Uint8Array ? b : new Uint8Array(b as ArrayBuffer));

export class RpStore {
  constructor(private readonly db: Kysely<RpDb>) {}

  async insert(row: SessionRow): Promise<void> {
    await this.db.insertInto("rp_sessions").values(row).execute();
  }
  async get(idHash: string): Promise<SessionRow | undefined> {
    const r = await this.db.selectFrom("rp_sessions").selectAll().where("id_hash", "=", idHash).executeTakeFirst();
    return r && { ...r, tokens: bytes(r.tokens) };
  }
  async touch(idHash: string, at: number): Promise<void> {
    await this.db.updateTable("rp_sessions").set({ last_seen_at: at }).where("id_hash", "=", idHash).execute();
  }
  /** Stores a refreshed token set, only over the version it was refreshed from; false when another refresh won. */
  async replaceTokens(idHash: string, fromVersion: number, tokens: Uint8Array, accessExpiresAt: number): Promise<boolean> {
    const r = await this.db
      .updateTable("rp_sessions")
      .set({ tokens, access_expires_at: accessExpiresAt, version: fromVersion + 1 })
      .where("id_hash", "=", idHash)
      .where("version", "=", fromVersion)
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
  async delete(idHash: string): Promise<void> {
    await this.db.deleteFrom("rp_sessions").where("id_hash", "=", idHash).execute();
  }
  /** Ends the sessions a logout token names: its `sid` (of `subject` when it names one too), else every session of `subject`. */
  async deleteMatching(tenant: string, m: { sid?: string; subject?: string }): Promise<number> {
    let q = this.db.deleteFrom("rp_sessions").where("tenant", "=", tenant);
    if (m.sid !== undefined) q = q.where("sid", "=", m.sid);
    if (m.subject !== undefined) q = q.where("subject", "=", m.subject);
    if (m.sid === undefined && m.subject === undefined) return 0;
    const r = await q.executeTakeFirst();
    return Number(r.numDeletedRows);
  }
  async sweep(now: number, idleS: number): Promise<void> {
    await this.db.deleteFrom("rp_sessions").where((eb) => eb.or([eb("expires_at", "<=", now), eb("last_seen_at", "<=", now - idleS)])).execute();
  }
}
