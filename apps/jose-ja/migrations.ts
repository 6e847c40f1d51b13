/** jose-ja's schema, versioned: the shared keyring's tables, then the audit log. A new change is a new entry; never edit an applied one. */
import type { Kysely } from "kysely";
import { keyringMigrations } from "../../src/keyring/index.ts";

export const migrations = [
  ...keyringMigrations(1),
  {
    version: 2,
    name: "jose-ja: audit log",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("jose_audit")
        .addColumn("seq", "integer", (c) => c.primaryKey().autoIncrement())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("at", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("client_id", "text")
        .addColumn("operation", "text", (c) => c.notNull())
        .addColumn("key_id", "text")
        .addColumn("version", "integer")
        .addColumn("result", "text", (c) => c.notNull()) // "ok" or the error code
        .execute();
      await db.schema.createIndex("jose_audit_by_tenant").on("jose_audit").columns(["tenant", "seq"]).execute();
      await db.schema.createIndex("jose_audit_by_tenant_key").on("jose_audit").columns(["tenant", "key_id", "seq"]).execute();
    },
  },
];
