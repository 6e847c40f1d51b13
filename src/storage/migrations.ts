/**
 * Versioned migrations, per app, recorded in `schema_migrations (app, version)`.
 *
 * Guarantees: migrations run in ascending version order; each runs in its own write
 * transaction together with its `schema_migrations` row, so a failing migration leaves no
 * trace; a version already recorded is skipped (re-checked inside the transaction, so two
 * processes starting together apply it once). Refused with `AppError("migration_failed")`:
 * duplicate or non-positive versions, a recorded version whose name changed, a recorded
 * version this build does not know (database newer than the code), and a new version lower
 * than one already applied (history must not be rewritten).
 *
 * One history for both engines: migrations name SQLite's column types (`integer`, `blob`,
 * `text`), which PostgreSQL gets translated (see postgres.ts), and use Kysely's schema builder
 * rather than raw SQL. On PostgreSQL each step also takes an advisory lock, so instances that
 * start together on an empty database wait for each other and apply every version once.
 */
import type { Kysely } from "kysely";
import { AppError } from "../service/errors.ts";
import { engineOf, lockForMigrations, migrationTransaction } from "./dialect.ts";

/** One schema change of an app. `up` gets the transaction it must use. */
export interface Migration {
  /** Positive integer, unique within the app; applied in ascending order. */
  version: number;
  /** Short description, stored; must not change once released. */
  name: string;
  up(db: Kysely<any>): Promise<void>;
}

/** What `runMigrations` did. */
export interface MigrationReport {
  app: string;
  /** Versions applied by this call, in order. */
  applied: number[];
  /** Highest version now recorded for the app (0 if none). */
  current: number;
}

interface SchemaMigrationsTable {
  schema_migrations: { app: string; version: number; name: string; applied_at: string };
}

const APP_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function failed(message: string, details?: unknown, cause?: unknown): AppError {
  return new AppError("migration_failed", message, { status: 500, details, cause });
}

/** Creates the bookkeeping table if missing (safe to call any number of times). */
export async function ensureMigrationsTable(db: Kysely<any>): Promise<void> {
  const create = (q: Kysely<any>) =>
    q.schema
      .createTable("schema_migrations")
      .ifNotExists()
      .addColumn("app", "text", (c) => c.notNull())
      .addColumn("version", "integer", (c) => c.notNull())
      .addColumn("name", "text", (c) => c.notNull())
      .addColumn("applied_at", "text", (c) => c.notNull())
      .addPrimaryKeyConstraint("schema_migrations_pk", ["app", "version"])
      .execute();
  // PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent one: lock first.
  if (engineOf(db) === "postgres") {
    await migrationTransaction(db).execute(async (trx) => {
      await lockForMigrations(trx);
      await create(trx);
    });
  } else {
    await create(db);
  }
}

/**
 * Applies the migrations of `app` that are not yet recorded.
 *
 * @example
 *   await runMigrations(db, "learn-ps", [
 *     { version: 1, name: "pets", up: (db) => db.schema.createTable("pets")
 *         .addColumn("id", "text", (c) => c.primaryKey()).execute() },
 *   ]);
 */
export async function runMigrations(
  db: Kysely<any>,
  app: string,
  migrations: readonly Migration[],
): Promise<MigrationReport> {
  if (typeof app !== "string" || !APP_NAME.test(app)) {
    throw failed("migration app name must be 1-63 characters of a-z, 0-9, '_' and '-'");
  }
  const seen = new Set<number>();
  for (const m of migrations) {
    if (!Number.isSafeInteger(m.version) || m.version <= 0) {
      throw failed(`${app}: migration version must be a positive integer`, { version: m.version });
    }
    if (seen.has(m.version)) throw failed(`${app}: duplicate migration version ${m.version}`);
    if (typeof m.name !== "string" || m.name.trim() === "") {
      throw failed(`${app}: migration ${m.version} needs a name`);
    }
    if (typeof m.up !== "function") throw failed(`${app}: migration ${m.version} has no up()`);
    seen.add(m.version);
  }
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  const typed = db as Kysely<SchemaMigrationsTable>;

  try {
    await ensureMigrationsTable(db);
  } catch (err) {
    throw failed(`${app}: cannot create schema_migrations`, undefined, err);
  }

  const recordedRows = await typed
    .selectFrom("schema_migrations")
    .select(["version", "name"])
    .where("app", "=", app)
    .execute();
  const recorded = new Map(recordedRows.map((r) => [Number(r.version), r.name]));
  const known = new Map(ordered.map((m) => [m.version, m]));
  for (const [version, name] of recorded) {
    const m = known.get(version);
    if (!m) throw failed(`${app}: database has migration ${version} that this build does not know`);
    if (m.name !== name) throw failed(`${app}: migration ${version} was recorded as "${name}", now named "${m.name}"`);
  }
  let current = Math.max(0, ...recorded.keys());
  const pending = ordered.filter((m) => !recorded.has(m.version));
  for (const m of pending) {
    if (m.version < current) {
      throw failed(`${app}: migration ${m.version} is older than applied migration ${current}`);
    }
  }

  const applied: number[] = [];
  for (const m of pending) {
    try {
      const ran = await migrationTransaction(db).execute(async (trx) => {
        await lockForMigrations(trx);
        const again = await (trx as unknown as Kysely<SchemaMigrationsTable>)
          .selectFrom("schema_migrations")
          .select("version")
          .where("app", "=", app)
          .where("version", "=", m.version)
          .executeTakeFirst();
        if (again) return false; // another process applied it meanwhile
        await m.up(trx);
        await (trx as unknown as Kysely<SchemaMigrationsTable>)
          .insertInto("schema_migrations")
          .values({ app, version: m.version, name: m.name, applied_at: new Date().toISOString() })
          .execute();
        return true;
      });
      if (ran) applied.push(m.version);
      current = m.version;
    } catch (err) {
      if (err instanceof AppError && err.code === "migration_failed") throw err;
      throw failed(`${app}: migration ${m.version} (${m.name}) failed`, { version: m.version }, err);
    }
  }
  return { app, applied, current };
}
