/**
 * The CMC tables, added to pki-ca's one migration history (migrations.ts).
 * Certificates and RA requests stay in pki_certificates and pki_requests; these only point at them.
 */
import type { Kysely } from "kysely";
import { createSealedCredentialTable } from "../credential-table.ts";

export async function createCmcTables(db: Kysely<any>): Promise<void> {
  // Identifications and their shared secrets (identityProofV2 needs the secret itself).
  await createSealedCredentialTable(db, "cmc_credentials", "identification");
  // A request's transaction: a request sent again (after pending) finds its RA request here.
  await db.schema
    .createTable("cmc_transactions")
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("transaction_id", "text", (c) => c.notNull())
    .addColumn("client", "text", (c) => c.notNull()) // the identification or certificate serial that sent it
    .addColumn("csr_sha256", "text", (c) => c.notNull())
    .addColumn("request_id", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("cmc_transactions_pk", ["tenant", "transaction_id"])
    .execute();
  // Every senderNonce accepted, so a replayed request is refused.
  await db.schema
    .createTable("cmc_nonces")
    .addColumn("nonce_sha256", "text", (c) => c.primaryKey())
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
}

/** The senderNonce log by age, for the sweep that deletes nonces past app.cmc.nonce_retention_hours. */
export async function addCmcNonceAgeIndex(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("cmc_nonces_by_age").on("cmc_nonces").column("created_at").execute();
}
