/** Kysely queries of pki-ca's CMC front end. Every query takes the tenant, except the credential lookup by identification (the tenant comes from it) and the nonce log. */
import type { Kysely } from "kysely";

export interface CmcCredentialRow {
  identification: string;
  tenant: string;
  profile: string;
  secret_sealed: Uint8Array;
  created_at: string;
  last_used_at: string | null;
}

export interface CmcTransactionRow {
  tenant: string;
  transaction_id: string;
  client: string;
  csr_sha256: string;
  request_id: string;
  created_at: string;
}

export interface CmcDb {
  cmc_credentials: CmcCredentialRow;
  cmc_transactions: CmcTransactionRow;
  cmc_nonces: { nonce_sha256: string; created_at: string };
}

export class CmcStore {
  constructor(readonly db: Kysely<CmcDb>) {}

  async insertCredential(row: CmcCredentialRow): Promise<void> {
    await this.db.insertInto("cmc_credentials").values(row).execute();
  }

  credential(identification: string): Promise<CmcCredentialRow | undefined> {
    return this.db.selectFrom("cmc_credentials").selectAll().where("identification", "=", identification).executeTakeFirst();
  }

  credentials(tenant: string): Promise<Array<Omit<CmcCredentialRow, "secret_sealed">>> {
    return this.db.selectFrom("cmc_credentials").select(["identification", "tenant", "profile", "created_at", "last_used_at"]).where("tenant", "=", tenant).orderBy("created_at").execute();
  }

  async deleteCredential(tenant: string, identification: string): Promise<boolean> {
    const r = await this.db.deleteFrom("cmc_credentials").where("tenant", "=", tenant).where("identification", "=", identification).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  async touchCredential(identification: string, at: string): Promise<void> {
    await this.db.updateTable("cmc_credentials").set({ last_used_at: at }).where("identification", "=", identification).execute();
  }

  transaction(tenant: string, transactionId: string): Promise<CmcTransactionRow | undefined> {
    return this.db.selectFrom("cmc_transactions").selectAll().where("tenant", "=", tenant).where("transaction_id", "=", transactionId).executeTakeFirst();
  }

  /** Records a transaction; false when one with that id exists already (a concurrent duplicate). */
  async insertTransaction(row: CmcTransactionRow): Promise<boolean> {
    const r = await this.db.insertInto("cmc_transactions").values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /** Deletes the senderNonces recorded before `before` (ISO time); returns how many. */
  async pruneNonces(before: string): Promise<number> {
    const r = await this.db.deleteFrom("cmc_nonces").where("created_at", "<", before).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Records a senderNonce; false when it was seen before (a replay). */
  async useNonce(nonceSha256: string, at: string): Promise<boolean> {
    const r = await this.db.insertInto("cmc_nonces").values({ nonce_sha256: nonceSha256, created_at: at }).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }
}
