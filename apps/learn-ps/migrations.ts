/** learn-ps's schema, versioned. A new change is a new entry; never edit an applied one. */
import type { Kysely } from "kysely";

export const migrations = [
  {
    version: 1,
    name: "create pets",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("pets")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("species", "text", (c) => c.notNull())
        .addColumn("age_years", "integer")
        .addColumn("tags", "text", (c) => c.notNull())
        .addColumn("owner_note", "blob") // barrier ciphertext, never plaintext
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .addColumn("seq", "integer", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("pets_by_tenant_seq").on("pets").columns(["tenant", "seq"]).execute();
    },
  },
];
