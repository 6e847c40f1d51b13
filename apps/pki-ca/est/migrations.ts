/**
 * The EST tables, added to pki-ca's one migration history (migrations.ts, version 6).
 * Certificates and RA requests stay in pki_certificates and pki_requests; these only point at them.
 */
import type { Kysely } from "kysely";

export async function createEstTables(db: Kysely<any>): Promise<void> {
  // HTTP Basic credentials, one profile each; the password only as its SHA-256 (it is 256 random bits).
  await db.schema
    .createTable("est_credentials")
    .addColumn("username", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("profile", "text", (c) => c.notNull())
    .addColumn("secret_sha256", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("last_used_at", "text")
    .execute();
  await db.schema.createIndex("est_credentials_by_tenant").on("est_credentials").columns(["tenant", "created_at"]).execute();
  // A CSR sent again after a 202 (RFC 7030 §4.2.3) finds its RA request here.
  await db.schema
    .createTable("est_requests")
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("username", "text", (c) => c.notNull())
    .addColumn("csr_sha256", "text", (c) => c.notNull())
    .addColumn("request_id", "text", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("est_requests_pk", ["tenant", "username", "csr_sha256"])
    .execute();
}
