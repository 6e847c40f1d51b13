/**
 * The few places where SQL differs between SQLite and PostgreSQL, in one file. Prefer Kysely's
 * builder, which compiles each query for its engine; use these where it cannot express the
 * query, instead of branching on the engine elsewhere.
 */
import { PostgresAdapter, sql, type CreateTableBuilder, type Expression, type Kysely, type RawBuilder } from "kysely";
import { MIGRATION_LOCK_SQL } from "./postgres.ts";

export type Engine = "sqlite" | "postgres";

/** The engine behind a Kysely instance or transaction. */
export function engineOf(db: Kysely<any>): Engine {
  return db.getExecutor().adapter instanceof PostgresAdapter ? "postgres" : "sqlite";
}

/** The larger of two values: SQLite's two-argument max(), PostgreSQL's greatest(). */
export function greatest<T>(db: Kysely<any>, a: Expression<T>, b: Expression<T>): RawBuilder<T> {
  return engineOf(db) === "postgres" ? sql<T>`greatest(${a}, ${b})` : sql<T>`max(${a}, ${b})`;
}

/** A LIKE that ignores ASCII case on both engines, as SQLite's LIKE does (PostgreSQL's does not). */
export function likeIgnoringCase(db: Kysely<any>): "like" | "ilike" {
  return engineOf(db) === "postgres" ? "ilike" : "like";
}

/**
 * A table stored as its primary key's B-tree alone: SQLite's WITHOUT ROWID (no rowid B-tree
 * beside the key's index); on PostgreSQL, whose tables are heaps anyway, the table as built.
 * For tables that are only ever reached by their key.
 */
export function clusteredByKey<T extends string, C extends string>(db: Kysely<any>, table: CreateTableBuilder<T, C>): CreateTableBuilder<T, C> {
  return engineOf(db) === "postgres" ? table : table.modifyEnd(sql`without rowid`);
}

/**
 * A read-write transaction for a migration: READ COMMITTED on PostgreSQL, so that once
 * `lockForMigrations` returns, its statements see what the instance that held the lock
 * committed (a SERIALIZABLE snapshot would predate the wait). SQLite's BEGIN IMMEDIATE as usual.
 */
export function migrationTransaction<DB>(db: Kysely<DB>) {
  return engineOf(db) === "postgres" ? db.transaction().setIsolationLevel("read committed") : db.transaction();
}

/**
 * Makes the transaction `trx` wait until no other instance is migrating the database. On
 * SQLite, the migration's BEGIN IMMEDIATE already holds the only write lock.
 */
export async function lockForMigrations(trx: Kysely<any>): Promise<void> {
  if (engineOf(trx) === "postgres") await sql.raw(MIGRATION_LOCK_SQL).execute(trx);
}
