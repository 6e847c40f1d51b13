/**
 * The SCEP tables, added to pki-ca's one migration history (migrations.ts, version 6).
 * Certificates and RA requests stay in pki_certificates and pki_requests; these only point at them.
 */
import type { Kysely } from "kysely";

export async function createScepTables(db: Kysely<any>): Promise<void> {
  // One-time challenge passwords from the admin API, only as their SHA-256.
  await db.schema
    .createTable("scep_challenges")
    .addColumn("secret_sha256", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("profile", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("expires_at", "text", (c) => c.notNull())
    .addColumn("used_at", "text")
    .execute();
  // A PKCSReq's transaction: resent PKCSReqs and CertPolls find its RA request here.
  await db.schema
    .createTable("scep_transactions")
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("transaction_id", "text", (c) => c.notNull())
    .addColumn("profile", "text", (c) => c.notNull())
    .addColumn("key_sha256", "text", (c) => c.notNull()) // of the requester's SubjectPublicKeyInfo
    .addColumn("csr_sha256", "text", (c) => c.notNull())
    .addColumn("request_id", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("scep_transactions_pk", ["tenant", "transaction_id"])
    .execute();
}
