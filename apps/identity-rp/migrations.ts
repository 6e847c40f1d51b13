/** identity-rp's schema, versioned. A new change is a new entry; never edit an applied one. */
import type { Kysely } from "kysely";

export const migrations = [
  {
    version: 1,
    name: "rp sessions",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("rp_sessions")
        .addColumn("id_hash", "text", (c) => c.primaryKey()) // SHA-256 of the cookie's id, never the id
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("sid", "text") // the issuer's session id from the ID token, for back-channel logout
        .addColumn("name", "text")
        .addColumn("tokens", "blob", (c) => c.notNull()) // barrier ciphertext of the token set
        .addColumn("access_expires_at", "integer", (c) => c.notNull())
        .addColumn("version", "integer", (c) => c.notNull()) // bumped at each refresh
        .addColumn("created_at", "integer", (c) => c.notNull())
        .addColumn("last_seen_at", "integer", (c) => c.notNull())
        .addColumn("expires_at", "integer", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("rp_sessions_by_subject").on("rp_sessions").columns(["tenant", "subject"]).execute();
      await db.schema.createIndex("rp_sessions_by_sid").on("rp_sessions").columns(["tenant", "sid"]).execute();
    },
  },
];
