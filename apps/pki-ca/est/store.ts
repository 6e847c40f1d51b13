/** Kysely queries of pki-ca's EST front end. Every query takes the tenant, except the credential lookup by username (the tenant comes from it). */
import type { Kysely } from "kysely";

export interface EstCredentialRow {
  username: string;
  tenant: string;
  profile: string;
  secret_sha256: string;
  created_at: string;
  last_used_at: string | null;
}

export interface EstRequestRow {
  tenant: string;
  username: string;
  csr_sha256: string;
  request_id: string;
  created_at: string;
}

export interface EstDb {
  est_credentials: EstCredentialRow;
  est_requests: EstRequestRow;
}

export class EstStore {
  constructor(readonly db: Kysely<EstDb>) {}

  async insertCredential(row: EstCredentialRow): Promise<void> {
    await this.db.insertInto("est_credentials").values(row).execute();
  }

  credential(username: string): Promise<EstCredentialRow | undefined> {
    return this.db.selectFrom("est_credentials").selectAll().where("username", "=", username).executeTakeFirst();
  }

  credentials(tenant: string): Promise<Array<Omit<EstCredentialRow, "secret_sha256">>> {
    return this.db.selectFrom("est_credentials").select(["username", "tenant", "profile", "created_at", "last_used_at"]).where("tenant", "=", tenant).orderBy("created_at").execute();
  }

  async deleteCredential(tenant: string, username: string): Promise<boolean> {
    const r = await this.db.deleteFrom("est_credentials").where("tenant", "=", tenant).where("username", "=", username).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  async touchCredential(username: string, at: string): Promise<void> {
    await this.db.updateTable("est_credentials").set({ last_used_at: at }).where("username", "=", username).execute();
  }

  request(tenant: string, username: string, csrSha256: string): Promise<EstRequestRow | undefined> {
    return this.db.selectFrom("est_requests").selectAll().where("tenant", "=", tenant).where("username", "=", username).where("csr_sha256", "=", csrSha256).executeTakeFirst();
  }

  /** Records a queued request; a concurrent duplicate keeps the first. */
  async insertRequest(row: EstRequestRow): Promise<void> {
    await this.db.insertInto("est_requests").values(row).onConflict((oc) => oc.doNothing()).execute();
  }

  async deleteRequest(tenant: string, username: string, csrSha256: string): Promise<void> {
    await this.db.deleteFrom("est_requests").where("tenant", "=", tenant).where("username", "=", username).where("csr_sha256", "=", csrSha256).execute();
  }
}
