/**
 * The audit service's schema, versioned. A new change is a new entry; never edit an applied one.
 *
 * The log's tables are append-only in the database itself, not only in the code: triggers
 * refuse every UPDATE and DELETE (and TRUNCATE on PostgreSQL) with an error, so nothing that
 * reaches the database through this service, another program or a console can rewrite the log
 * without first dropping a trigger, which a verification against a checkpoint then exposes.
 */
import { sql, type Kysely } from "kysely";
import { engineOf } from "../../src/storage/index.ts";

/** The tables the database keeps append-only. */
export const APPEND_ONLY_TABLES = ["audit_events", "audit_checkpoints", "audit_keys"] as const;

async function refuseChanges(db: Kysely<any>, table: string): Promise<void> {
  if (engineOf(db) === "postgres") {
    await sql
      .raw(
        `create or replace function audit_refuse_change() returns trigger language plpgsql as $$
         begin raise exception 'the audit log is append-only: % on % refused', tg_op, tg_table_name using errcode = 'P0001'; end $$`,
      )
      .execute(db);
    await sql.raw(`create trigger ${table}_append_only before update or delete on ${table} for each row execute function audit_refuse_change()`).execute(db);
    await sql.raw(`create trigger ${table}_no_truncate before truncate on ${table} for each statement execute function audit_refuse_change()`).execute(db);
    return;
  }
  for (const op of ["update", "delete"]) {
    await sql.raw(`create trigger ${table}_no_${op} before ${op} on ${table} begin select raise(abort, 'the audit log is append-only: ${op} on ${table} refused'); end`).execute(db);
  }
}

export const migrations = [
  {
    version: 1,
    name: "append-only events, checkpoints and keys",
    async up(db: Kysely<any>) {
      await db.schema
        .createTable("audit_events")
        // The leaf index in the Merkle tree: 0, 1, 2, ... with no gap.
        .addColumn("seq", "integer", (c) => c.primaryKey())
        .addColumn("service", "text", (c) => c.notNull())
        .addColumn("event_id", "text", (c) => c.notNull())
        .addColumn("tenant", "text", (c) => c.notNull())
        .addColumn("actor", "text", (c) => c.notNull())
        .addColumn("action", "text", (c) => c.notNull())
        .addColumn("result", "text", (c) => c.notNull())
        .addColumn("time", "text", (c) => c.notNull())
        // The entry's JSON text exactly as hashed into its leaf; the columns above index it.
        .addColumn("entry", "text", (c) => c.notNull())
        // SHA-256(0x00 || entry), as computed when the entry was appended.
        .addColumn("leaf_hash", "blob", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("audit_events_by_sender").unique().on("audit_events").columns(["service", "event_id"]).execute();
      await db.schema.createIndex("audit_events_by_tenant").on("audit_events").columns(["tenant", "seq"]).execute();
      await db.schema.createIndex("audit_events_by_actor").on("audit_events").columns(["tenant", "actor", "seq"]).execute();
      await db.schema.createIndex("audit_events_by_action").on("audit_events").columns(["tenant", "action", "seq"]).execute();
      await db.schema.createIndex("audit_events_by_service").on("audit_events").columns(["tenant", "service", "seq"]).execute();
      await db.schema
        .createTable("audit_checkpoints")
        .addColumn("tree_size", "integer", (c) => c.primaryKey())
        .addColumn("root_hash", "blob", (c) => c.notNull())
        .addColumn("note", "text", (c) => c.notNull())
        .addColumn("created", "text", (c) => c.notNull())
        .execute();
      // The checkpoint signing key and the HMAC key of sensitive fields, barrier-encrypted.
      await db.schema
        .createTable("audit_keys")
        .addColumn("name", "text", (c) => c.primaryKey())
        .addColumn("sealed", "blob", (c) => c.notNull())
        .addColumn("public_key", "blob")
        .addColumn("created", "text", (c) => c.notNull())
        .execute();
      for (const t of APPEND_ONLY_TABLES) await refuseChanges(db, t);
    },
  },
];
