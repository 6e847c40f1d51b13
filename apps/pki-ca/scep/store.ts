/** Kysely queries of pki-ca's SCEP front end. Every query takes the tenant. */
import type { Kysely } from "kysely";

export interface ScepChallengeRow {
  secret_sha256: string;
  tenant: string;
  profile: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
}

export interface ScepTransactionRow {
  tenant: string;
  transaction_id: string;
  profile: string;
  key_sha256: string;
  csr_sha256: string;
  request_id: string;
  created_at: string;
}

export interface ScepDb {
  scep_challenges: ScepChallengeRow;
  scep_transactions: ScepTransactionRow;
}

export class ScepStore {
  constructor(readonly db: Kysely<ScepDb>) {}

  async insertChallenge(row: ScepChallengeRow): Promise<void> {
    await this.db.insertInto("scep_challenges").values(row).execute();
  }

  /** Uses a one-time challenge of the tenant and profile: true once, while it is unused and unexpired. */
  async consumeChallenge(tenant: string, profile: string, secretSha256: string, now: string): Promise<boolean> {
    const r = await this.db
      .updateTable("scep_challenges")
      .set({ used_at: now })
      .where("secret_sha256", "=", secretSha256)
      .where("tenant", "=", tenant)
      .where("profile", "=", profile)
      .where("used_at", "is", null)
      .where("expires_at", ">", now)
      .executeTakeFirst();
    return r.numUpdatedRows > 0n;
  }

  transaction(tenant: string, transactionId: string): Promise<ScepTransactionRow | undefined> {
    return this.db.selectFrom("scep_transactions").selectAll().where("tenant", "=", tenant).where("transaction_id", "=", transactionId).executeTakeFirst();
  }

  /** Records a transaction; false when one with that id exists already (a concurrent duplicate). */
  async insertTransaction(row: ScepTransactionRow): Promise<boolean> {
    const r = await this.db.insertInto("scep_transactions").values(row).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return (r.numInsertedOrUpdatedRows ?? 0n) > 0n;
  }
}
