/**
 * The ACME tables, added to pki-ca's one migration history (migrations.ts, version 5).
 * Every row carries its tenant; certificates stay in pki_certificates, orders only point at them.
 */
import { sql, type CreateTableBuilder, type Kysely } from "kysely";
import { clusteredByKey, engineOf } from "../../../src/storage/dialect.ts";

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

/**
 * Version 7: the other challenge types (the one a client answered is kept on the authorization),
 * wildcard authorizations, ARI's `replaces`, nonces that any instance can check (a sealed HMAC
 * key shared through the database and the table of used nonces), and the rate-limit events every
 * instance counts.
 */
export async function addAcmeChallengesAriLimits(db: Kysely<any>): Promise<void> {
  await db.schema.alterTable("acme_authorizations").addColumn("wildcard", "integer", (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable("acme_authorizations").addColumn("challenge_type", "text").execute(); // http-01 | dns-01 | tls-alpn-01, once answered
  await db.schema.alterTable("acme_orders").addColumn("replaces", "text").execute(); // the certID (RFC 9773) of the certificate an ARI renewal replaces
  await db.schema.createIndex("acme_orders_by_replaces").on("acme_orders").columns(["tenant", "replaces"]).execute();
  await db.schema
    .createTable("acme_nonce_keys")
    .addColumn("id", "text", (c) => c.primaryKey())
    .addColumn("key_sealed", "blob", (c) => c.notNull()) // barrier ciphertext of the nonce HMAC key
    .addColumn("created_at", "text", (c) => c.notNull())
    .execute();
  await db.schema
    .createTable("acme_nonces_used")
    .addColumn("nonce", "text", (c) => c.primaryKey())
    .addColumn("expires", "integer", (c) => c.notNull()) // epoch ms, after which the row can go
    .execute();
  await db.schema.createIndex("acme_nonces_used_by_expiry").on("acme_nonces_used").columns(["expires"]).execute();
  await db.schema
    .createTable("acme_rate_events")
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull()) // account-orders | identifier-orders | ip-accounts
    .addColumn("subject", "text", (c) => c.notNull()) // the account id, identifier or IP
    .addColumn("at", "integer", (c) => c.notNull()) // epoch ms
    .execute();
  await db.schema.createIndex("acme_rate_events_by_subject").on("acme_rate_events").columns(["tenant", "kind", "subject", "at"]).execute();
}

/**
 * Version 8: authorizations shared between orders (RFC 8555 §7.1.4: an order for identifiers the
 * account holds a live authorization for reuses it), through a table linking orders to their
 * authorizations (filled from each existing authorization's own order); and the validity an order
 * asks for (`notBefore`/`notAfter`).
 */
export async function addAcmeAuthorizationReuseValidity(db: Kysely<any>): Promise<void> {
  await db.schema
    .createTable("acme_order_authorizations")
    .addColumn("tenant", "text", (c) => c.notNull())
    .addColumn("order_id", "text", (c) => c.notNull())
    .addColumn("authz_id", "text", (c) => c.notNull())
    .addPrimaryKeyConstraint("acme_order_authorizations_pk", ["tenant", "order_id", "authz_id"])
    .execute();
  await db
    .insertInto("acme_order_authorizations")
    .columns(["tenant", "order_id", "authz_id"])
    .expression((eb: any) => eb.selectFrom("acme_authorizations").select(["tenant", "order_id", "id"]))
    .execute();
  await db.schema.createIndex("acme_authorizations_by_identifier").on("acme_authorizations").columns(["tenant", "account_id", "identifier_type", "identifier_value"]).execute();
  await db.schema.alterTable("acme_orders").addColumn("not_before", "text").execute(); // ISO time the order asked for, or null (the profile's)
  await db.schema.alterTable("acme_orders").addColumn("not_after", "text").execute();
}

/**
 * Version 13: spent nonces keyed by (expires, nonce) in a table that is that key alone. The
 * nonce part is random, so with it leading every insert landed on a random page of an index
 * that holds up to a nonce lifetime of requests, and a table B-tree and an expiry index came on
 * top; expiry first, the inserts of a moment share the key's last pages, and pruning deletes
 * from its start. A nonce's expiry is part of what its HMAC covers, so (expires, nonce) is
 * unique exactly when the nonce is. The nonces spent before are carried over (still refused).
 */
export async function keyAcmeNoncesByExpiry(db: Kysely<any>): Promise<void> {
  await clusteredByKey(
    db,
    db.schema
      .createTable("acme_nonces_spent")
      .addColumn("expires", "integer", (c) => c.notNull()) // epoch ms, after which the row can go
      .addColumn("nonce", "text", (c) => c.notNull())
      .addPrimaryKeyConstraint("acme_nonces_spent_pk", ["expires", "nonce"]),
  ).execute();
  await db
    .insertInto("acme_nonces_spent")
    .columns(["expires", "nonce"])
    .expression((eb: any) => eb.selectFrom("acme_nonces_used").select(["expires", "nonce"]))
    .execute();
  await db.schema.dropTable("acme_nonces_used").execute();
}

/**
 * Version 14: fewer pages written per order.
 * - On SQLite, orders and authorizations become tables clustered by their id (WITHOUT ROWID):
 *   they were rowid tables with a separate index on the id, so every insert wrote two B-trees
 *   where one does, and every read by id walked two. Their rows are copied over. PostgreSQL's
 *   tables are heaps whatever the key, and stay as they are.
 * - An order has a serial only once issued and names a certificate it replaces only for an ARI
 *   renewal: both indexes hold only the rows where the column is set (every lookup is
 *   `column = ?`, which implies it).
 * - The authorizations' index by order goes: the link table (version 8) has carried an order's
 *   authorizations since.
 */
export async function clusterAcmeOrdersAuthorizations(db: Kysely<any>): Promise<void> {
  if (engineOf(db) === "postgres") {
    await db.schema.dropIndex("acme_authorizations_by_order").execute();
    await db.schema.dropIndex("acme_orders_by_serial").execute();
    await db.schema.dropIndex("acme_orders_by_replaces").execute();
  } else {
    await rebuildClustered(db, "acme_orders", (t) =>
      t
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("identifiers", "text", (c) => c.notNull())
        .addColumn("profile", "text", (c) => c.notNull())
        .addColumn("expires", "text", (c) => c.notNull())
        .addColumn("error", "text")
        .addColumn("request_id", "text")
        .addColumn("serial", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("replaces", "text")
        .addColumn("not_before", "text")
        .addColumn("not_after", "text"),
    );
    await rebuildClustered(db, "acme_authorizations", (t) =>
      t
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("account_id", "text", (c) => c.notNull())
        .addColumn("order_id", "text", (c) => c.notNull())
        .addColumn("identifier_type", "text", (c) => c.notNull())
        .addColumn("identifier_value", "text", (c) => c.notNull())
        .addColumn("status", "text", (c) => c.notNull())
        .addColumn("expires", "text", (c) => c.notNull())
        .addColumn("token", "text", (c) => c.notNull())
        .addColumn("challenge_status", "text", (c) => c.notNull())
        .addColumn("validated_at", "text")
        .addColumn("error", "text")
        .addColumn("wildcard", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("challenge_type", "text"),
    );
    // The tables' other indexes went with the old tables; the one kept as it was comes back.
    await db.schema.createIndex("acme_orders_by_account").on("acme_orders").columns(["tenant", "account_id", "created_at"]).execute();
    await db.schema.createIndex("acme_authorizations_by_identifier").on("acme_authorizations").columns(["tenant", "account_id", "identifier_type", "identifier_value"]).execute();
  }
  await db.schema.createIndex("acme_orders_by_serial").on("acme_orders").columns(["tenant", "serial"]).where(sql.ref("serial"), "is not", null).execute();
  await db.schema.createIndex("acme_orders_by_replaces").on("acme_orders").columns(["tenant", "replaces"]).where(sql.ref("replaces"), "is not", null).execute();
}

/** SQLite: `table` rebuilt WITHOUT ROWID with the columns `define` gives (all of its columns, same names), its rows copied; its indexes are dropped with the old table. */
async function rebuildClustered(db: Kysely<any>, table: string, define: (t: CreateTableBuilder<string, string>) => CreateTableBuilder<string, string>): Promise<void> {
  const next = `${table}_clustered`;
  const builder = define(db.schema.createTable(next));
  await clusteredByKey(db, builder).execute();
  const columns = builder.toOperationNode().columns.map((c) => c.column.column.name);
  const list = sql.join(columns.map((c) => sql.ref(c)));
  await sql`insert into ${sql.table(next)} (${list}) select ${list} from ${sql.table(table)}`.execute(db);
  await db.schema.dropTable(table).execute();
  await db.schema.alterTable(next).renameTo(table).execute();
}
