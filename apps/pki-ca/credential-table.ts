/**
 * The table of an enrollment front end's per-profile shared secrets (CMP's PBM secrets, CMC's
 * identity-proof secrets): the protocol needs the secret itself (a MAC is computed with it), so it
 * is kept barrier-encrypted, never hashed and never as plaintext.
 */
import type { Kysely } from "kysely";

export async function createSealedCredentialTable(db: Kysely<any>, table: string, idColumn: string): Promise<void> {
  await db.schema
    .createTable(table)
    .addColumn(idColumn, "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("profile", "text", (c) => c.notNull())
    .addColumn("secret_sealed", "blob", (c) => c.notNull())
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("last_used_at", "text")
    .execute();
  await db.schema.createIndex(`${table}_by_tenant`).on(table).columns(["tenant", "created_at"]).execute();
}
