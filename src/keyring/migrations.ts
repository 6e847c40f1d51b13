/**
 * The keyring's tables. An app that uses the keyring appends these to its own migrations
 * (their versions are offset by the app). Never edit an applied entry; add one.
 */
import type { Kysely } from "kysely";
import type { Migration } from "../service/context.ts";

/** Keyring migrations, renumbered from `first` so they fit in an app's own sequence. */
export function keyringMigrations(first: number): Migration[] {
  return [
    {
      version: first,
      name: "keyring: elastic and material keys",
      async up(db: Kysely<any>) {
        await db.schema
          .createTable("elastic_keys")
          .addColumn("id", "text", (c) => c.primaryKey())
          .addColumn("tenant", "text", (c) => c.notNull())
          .addColumn("name", "text", (c) => c.notNull())
          .addColumn("description", "text")
          .addColumn("algorithm", "text", (c) => c.notNull())
          .addColumn("purpose", "text", (c) => c.notNull())
          .addColumn("status", "text", (c) => c.notNull())
          .addColumn("deletion_date", "text")
          .addColumn("rotation_period_s", "integer")
          .addColumn("next_rotation_at", "text")
          .addColumn("current_version", "integer", (c) => c.notNull())
          .addColumn("min_decryption_version", "integer", (c) => c.notNull())
          .addColumn("import_allowed", "integer", (c) => c.notNull())
          .addColumn("tags", "text", (c) => c.notNull())
          .addColumn("created_at", "text", (c) => c.notNull())
          .addColumn("updated_at", "text", (c) => c.notNull())
          .addColumn("seq", "integer", (c) => c.notNull())
          .execute();
        await db.schema.createIndex("elastic_keys_by_tenant_name").unique().on("elastic_keys").columns(["tenant", "name"]).execute();
        await db.schema.createIndex("elastic_keys_by_tenant_seq").on("elastic_keys").columns(["tenant", "seq"]).execute();
        await db.schema.createIndex("elastic_keys_by_rotation").on("elastic_keys").columns(["next_rotation_at"]).execute();
        await db.schema
          .createTable("material_keys")
          .addColumn("key_id", "text", (c) => c.notNull())
          .addColumn("version", "integer", (c) => c.notNull())
          .addColumn("tenant", "text", (c) => c.notNull())
          .addColumn("origin", "text", (c) => c.notNull())
          .addColumn("material", "blob", (c) => c.notNull()) // barrier ciphertext of the private/secret JWK
          .addColumn("created_at", "text", (c) => c.notNull())
          .addColumn("retired_at", "text")
          .addPrimaryKeyConstraint("material_keys_pk", ["key_id", "version"])
          .execute();
      },
    },
  ];
}
