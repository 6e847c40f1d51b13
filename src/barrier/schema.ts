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
      await sql`create table barrier_keys (
        layer text not null check (layer in ('root', 'intermediate', 'content')),
        version integer not null check (version > 0),
        parent_version integer not null check (parent_version >= 0),
        wrapped blob not null,
        created_at text not null,
        primary key (layer, version)
      )`.execute(db);
      await sql`create table barrier_unseal (
        id integer primary key check (id = 1),
        verifier blob not null,
        created_at text not null
      )`.execute(db);
    },
  },
];
