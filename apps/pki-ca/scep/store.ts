/**
 * Kysely queries of pki-ca's SCEP front end. Every query takes the tenant. The two a PKCSReq
 * makes are compiled once (`precompile`), and its transaction record is group-committed with
 * those of concurrent requests (`GroupTransaction`), not a write transaction of its own.
 */
import type { Kysely, Transaction } from "kysely";
import { GroupTransaction, precompile, precompileStatement } from "../../../src/storage/index.ts";

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

/** Transaction records committed together at most (concurrent PKCSReqs). */
const WRITE_BATCH = 256;

export class ScepStore {
  private readonly writes: GroupTransaction<ScepDb, Transaction<ScepDb>>;
  private readonly transactionById: (tenant: string, transactionId: string) => Promise<ScepTransactionRow[]>;
  private readonly insert: ReturnType<typeof precompileStatement<ScepDb, [string, string, string, string, string, string, string]>>;

  constructor(readonly db: Kysely<ScepDb>) {
    this.writes = new GroupTransaction(db, (trx) => trx, { maxBatch: WRITE_BATCH, gatherMs: 0 });
    this.transactionById = precompile(db, (tenant: string, id: string) => db.selectFrom("scep_transactions").selectAll().where("tenant", "=", tenant).where("transaction_id", "=", id), ["t", "i"]);
    this.insert = precompileStatement(
      db,
      (tenant: string, transaction_id: string, profile: string, key_sha256: string, csr_sha256: string, request_id: string, created_at: string) =>
        db.insertInto("scep_transactions").values({ tenant, transaction_id, profile, key_sha256, csr_sha256, request_id, created_at }).onConflict((oc) => oc.doNothing()).returning("transaction_id"),
      ["t", "x", "p", "k", "c", "r", "a"],
    );
  }

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

  async transaction(tenant: string, transactionId: string): Promise<ScepTransactionRow | undefined> {
    return (await this.transactionById(tenant, transactionId))[0];
  }

  /** Records a transaction, once on disk; false when one with that id exists already (a concurrent duplicate). */
  insertTransaction(r: ScepTransactionRow): Promise<boolean> {
    return this.writes.run(async (trx) => (await this.insert<{ transaction_id: string }>(trx, r.tenant, r.transaction_id, r.profile, r.key_sha256, r.csr_sha256, r.request_id, r.created_at)).rows.length === 1, { savepoint: false });
  }
}
