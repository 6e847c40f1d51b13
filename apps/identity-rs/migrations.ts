/** identity-rs's schema, versioned. A new change is a new entry; never edit an applied one. */
import type { Kysely } from "kysely";

export const migrations = [
  {
    version: 1,
    name: "notes",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("notes")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("owner", "text", (c) => c.notNull()) // the token's subject
        .addColumn("title", "text", (c) => c.notNull())
        .addColumn("body", "blob", (c) => c.notNull()) // barrier ciphertext, never plaintext
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("notes_by_owner").on("notes").columns(["tenant", "owner", "created_at"]).execute();
    },
  },
];
