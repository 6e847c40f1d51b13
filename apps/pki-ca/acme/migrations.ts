/**
 * The ACME tables, added to pki-ca's one migration history (migrations.ts, version 5).
 * Every row carries its tenant; certificates stay in pki_certificates, orders only point at them.
 */
import type { Kysely } from "kysely";

export async function createAcmeTables(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("acme_accounts")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("thumbprint", "text", (c) => c.notNull()) // RFC 7638 SHA-256 of the account key
    .addColumn("jwk", "text", (c) => c.notNull()) // the public JWK, JSON
    .addColumn("status", "text", (c) => c.notNull()) // valid | deactivated
    .addColumn("contact", "text", (c) => c.notNull()) // JSON array of URLs
    .addColumn("eab_kid", "text")
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("acme_accounts_by_key").on("acme_accounts").columns(["tenant", "thumbprint"]).unique().execute();
  await db.schema
    .createTable("acme_orders")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("account_id", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull()) // pending | ready | processing | valid | invalid
    .addColumn("identifiers", "text", (c) => c.notNull()) // JSON [{type, value}]
    .addColumn("profile", "text", (c) => c.notNull())
    .addColumn("expires", "text", (c) => c.notNull())
    .addColumn("error", "text") // JSON problem document
    .addColumn("request_id", "text") // the RA request made at finalize
    .addColumn("serial", "text") // the issued certificate
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("acme_orders_by_account").on("acme_orders").columns(["tenant", "account_id", "created_at"]).execute();
  await db.schema.createIndex("acme_orders_by_serial").on("acme_orders").columns(["tenant", "serial"]).execute();
  // One http-01 challenge per authorization, kept on its row.
  await db.schema
    .createTable("acme_authorizations")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("account_id", "text", (c) => c.notNull())
    .addColumn("order_id", "text", (c) => c.notNull())
    .addColumn("identifier_type", "text", (c) => c.notNull()) // dns | ip
    .addColumn("identifier_value", "text", (c) => c.notNull())
    .addColumn("status", "text", (c) => c.notNull()) // pending | valid | invalid | deactivated
    .addColumn("expires", "text", (c) => c.notNull())
    .addColumn("token", "text", (c) => c.notNull())
    .addColumn("challenge_status", "text", (c) => c.notNull()) // pending | processing | valid | invalid
    .addColumn("validated_at", "text")
    .addColumn("error", "text") // JSON problem document of the challenge
    .execute();
  await db.schema.createIndex("acme_authorizations_by_order").on("acme_authorizations").columns(["tenant", "order_id"]).execute();
  await db.schema
    .createTable("acme_eab_keys")
    .addColumn("kid", "text", (c) => c.primaryKey())
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("hmac_sealed", "blob", (c) => c.notNull()) // barrier ciphertext of the HMAC key
    .addColumn("account_id", "text") // bound at first use
    .addColumn("created_at", "text", (c) => c.notNull())
    .addColumn("bound_at", "text")
    .execute();
}
