/** sm-secrets's schema, versioned. A new change is a new entry; never edit an applied one. */
import type { Kysely } from "kysely";

export const migrations = [
  {
    version: 1,
    name: "create kv keys, versions and config",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("kv_keys")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("path", "text", (c) => c.notNull())
        .addColumn("cas_required", "integer", (c) => c.notNull())
        .addColumn("max_versions", "integer", (c) => c.notNull())
        .addColumn("delete_version_after", "integer", (c) => c.notNull()) // seconds; 0: the tenant's default
        .addColumn("custom_metadata", "text") // JSON object of strings; metadata, not secret
        .addColumn("current_version", "integer", (c) => c.notNull())
        .addColumn("oldest_version", "integer", (c) => c.notNull())
        .addColumn("created_time", "text", (c) => c.notNull())
        .addColumn("updated_time", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("kv_keys_pk", ["tenant", "path"])
        .execute();
      await db.schema
        .createTable("kv_versions")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("path", "text", (c) => c.notNull())
        .addColumn("version", "integer", (c) => c.notNull())
        .addColumn("data", "blob") // barrier ciphertext of the JSON value; null once destroyed
        .addColumn("created_time", "text", (c) => c.notNull())
        .addColumn("deletion_time", "text")
        .addColumn("destroyed", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("kv_versions_pk", ["tenant", "path", "version"])
        .execute();
      await db.schema
        .createTable("kv_config")
        .addColumn("tenant", "text", (c) => c.primaryKey())
        .addColumn("max_versions", "integer", (c) => c.notNull())
        .addColumn("cas_required", "integer", (c) => c.notNull())
        .addColumn("delete_version_after", "integer", (c) => c.notNull())
        .execute();
    },
  },
];
