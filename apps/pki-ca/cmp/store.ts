/** Kysely queries of pki-ca's CMP front end. Every query takes the tenant, except the credential lookup by key id (the tenant comes from it). */
import type { Kysely } from "kysely";

export interface CmpCredentialRow {
  kid: string;
  tenant: string;
  profile: string;
  secret_sealed: Uint8Array;
  created_at: string;
  last_used_at: string | null;
}

export type CmpTransactionState = "pending" | "issued" | "confirmed" | "rejected" | "done";

export interface CmpTransactionRow {
  tenant: string;
  transaction_id: string;
  body_type: number;
  profile: string;
  principal: string;
  state: CmpTransactionState;
  request_id: string | null;
  serial: string | null;
  cert_req_id: number;
  implicit_confirm: number;
  created_at: string;
}

export interface CmpDb {
  cmp_credentials: CmpCredentialRow;
  cmp_transactions: CmpTransactionRow;
}

export class CmpStore {
  constructor(readonly db: Kysely<CmpDb>) {}

  async insertCredential(row: CmpCredentialRow): Promise<void> {
    await this.db.insertInto("cmp_credentials").values(row).execute();
  }

  credential(kid: string): Promise<CmpCredentialRow | undefined> {
    return this.db.selectFrom("cmp_credentials").selectAll().where("kid", "=", kid).executeTakeFirst();
  }

  credentials(tenant: string): Promise<Array<Omit<CmpCredentialRow, "secret_sealed">>> {
    return this.db.selectFrom("cmp_credentials").select(["kid", "tenant", "profile", "created_at", "last_used_at"]).where("tenant", "=", tenant).orderBy("created_at").execute();
  }

  async deleteCredential(tenant: string, kid: string): Promise<boolean> {
    const r = await this.db.deleteFrom("cmp_credentials").where("tenant", "=", tenant).where("kid", "=", kid).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  async touchCredential(kid: string, at: string): Promise<void> {
    await this.db.updateTable("cmp_credentials").set({ last_used_at: at }).where("kid", "=", kid).execute();
  }

  transaction(tenant: string, transactionId: string): Promise<CmpTransactionRow | undefined> {
    return this.db.selectFrom("cmp_transactions").selectAll().where("tenant", "=", tenant).where("transaction_id", "=", transactionId).executeTakeFirst();
  }

  /** Records a new transaction; false when its id is taken (a replay, or a concurrent duplicate). */
  async insertTransaction(row: CmpTransactionRow): Promise<boolean> {
    const r = await this.db.insertInto("cmp_transactions").values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }

  /** Moves a transaction from one state to the next; false when it was not in `from` (a concurrent step). */
  async advance(tenant: string, transactionId: string, from: CmpTransactionState, to: Partial<Pick<CmpTransactionRow, "state" | "serial" | "request_id">>): Promise<boolean> {
    const r = await this.db.updateTable("cmp_transactions").set(to).where("tenant", "=", tenant).where("transaction_id", "=", transactionId).where("state", "=", from).executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }
}
