/**
 * The barrier's tables, created by its own migrations (app "barrier").
 *
 * barrier_keys holds every wrapped key: one row per (layer, version), `parent_version`
 * naming the key that wraps it (0 for root keys, wrapped by the unseal key). Rows hold only
 * ciphertext (see format.ts); plaintext keys never reach the database.
 * barrier_unseal holds the single unseal verifier.
 */
import { sql, type Kysely } from "kysely";
import type { Migration } from "../storage/migrations.ts";
import type { KeyLayer } from "./format.ts";

export interface BarrierTables {
  barrier_keys: {
    layer: KeyLayer;
    version: number;
    parent_version: number;
    wrapped: Uint8Array;
    created_at: string;
  };
  barrier_unseal: {
    id: number;
    verifier: Uint8Array;
    created_at: string;
  };
}

/** Executor the barrier uses: the database or an open transaction on it. */
export type BarrierDb = Kysely<BarrierTables>;

export const BARRIER_MIGRATION_APP = "barrier";

export const barrierMigrations: readonly Migration[] = [
  {
    version: 1,
    name: "barrier-keys",
    async up(db) {
      // The schema builder, so the column types also translate for PostgreSQL (storage/postgres.ts).
      await db.schema
        .createTable("barrier_keys")
        .addColumn("layer", "text", (c) => c.notNull().check(sql`layer in ('root', 'intermediate', 'content')`))
        .addColumn("version", "integer", (c) => c.notNull().check(sql`version > 0`))
        .addColumn("parent_version", "integer", (c) => c.notNull().check(sql`parent_version >= 0`))
        .addColumn("wrapped", "blob", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addPrimaryKeyConstraint("barrier_keys_pk", ["layer", "version"])
        .execute();
      await db.schema
        .createTable("barrier_unseal")
        .addColumn("id", "integer", (c) => c.primaryKey().check(sql`id = 1`))
        .addColumn("verifier", "blob", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .execute();
    },
  },
];
