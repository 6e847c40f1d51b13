/** sm-im's schema, versioned. A new change is a new entry; never edit an applied one. */
import type { Kysely } from "kysely";

export const migrations = [
  {
    version: 1,
    name: "create devices, messages and copies",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("im_devices")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("id", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("subject_name", "text")
        .addColumn("name", "text", (c) => c.notNull())
        .addColumn("public_key", "text", (c) => c.notNull()) // public JWK (JSON)
        .addColumn("created_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("im_devices_pk", ["tenant", "id"])
        .execute();
      await db.schema.createIndex("im_devices_subject").on("im_devices").columns(["tenant", "subject"]).execute();
      await db.schema
        .createTable("im_messages")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("id", "text", (c) => c.notNull())
        .addColumn("seq", "integer", (c) => c.notNull())
        .addColumn("sender", "text", (c) => c.notNull())
        .addColumn("sender_name", "text")
        .addColumn("recipients", "text", (c) => c.notNull()) // JSON array of subjects
        .addColumn("protected", "text", (c) => c.notNull())
        .addColumn("iv", "text", (c) => c.notNull())
        .addColumn("ciphertext", "text", (c) => c.notNull())
        .addColumn("tag", "text", (c) => c.notNull())
        .addColumn("size", "integer", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("expires_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("im_messages_pk", ["tenant", "id"])
        .execute();
      await db.schema.createIndex("im_messages_expiry").on("im_messages").columns(["expires_at"]).execute();
      // Who sees a message: its sender (box sent) and each recipient (box inbox), until they delete it.
      await db.schema
        .createTable("im_boxes")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("box", "text", (c) => c.notNull())
        .addColumn("message_id", "text", (c) => c.notNull())
        .addColumn("seq", "integer", (c) => c.notNull())
        .addPrimaryKeyConstraint("im_boxes_pk", ["tenant", "subject", "box", "message_id"])
        .execute();
      await db.schema.createIndex("im_boxes_list").on("im_boxes").columns(["tenant", "subject", "box", "seq"]).execute();
      // The content key wrapped for one device (its JWE recipient entry).
      await db.schema
        .createTable("im_copies")
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("message_id", "text", (c) => c.notNull())
        .addColumn("device_id", "text", (c) => c.notNull())
        .addColumn("subject", "text", (c) => c.notNull())
        .addColumn("header", "text", (c) => c.notNull()) // JSON: alg, kid, epk
        .addColumn("encrypted_key", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("im_copies_pk", ["tenant", "message_id", "device_id"])
        .execute();
    },
  },
  {
    version: 2,
    name: "devices may publish an ML-KEM-768 encapsulation key (the opt-in hybrid)",
    async up(db: Kysely<any>) {
      await db.schema.alterTable("im_devices").addColumn("kem_public_key", "text").execute();
    },
  },
];
