/**
 * The storage engine a test suite runs on: the embedded database (the default) or PostgreSQL.
 * A suite written once takes a `TestEngine`; one test file runs it embedded, a small wrapper
 * file runs it on a PostgreSQL server started for that file (see test/support/postgres.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { sql } from "kysely";
import { openDatabase, type Database } from "../../src/storage/index.ts";
import type { ServiceConfig } from "../../src/service/config.ts";
import { startPostgres, type PostgresServer } from "./postgres.ts";

/**
 * `runtime: "deno"`: the service under test runs on Deno, as a child process of the test
 * (apps/<name>/main.ts with the test's config in a file), on its embedded database.
 */
export type TestEngine = { readonly kind: "embedded"; readonly runtime?: "deno" } | PostgresEngine;

export interface PostgresEngine {
  readonly kind: "postgres";
  readonly server: PostgresServer;
  /** The database of each service data directory, so a restart on the same directory finds its data. */
  readonly byDataDir: Map<string, string>;
}

export const EMBEDDED: TestEngine = { kind: "embedded" };

/** The embedded database, the service started on Deno. */
export const ON_DENO: TestEngine = { kind: "embedded", runtime: "deno" };

/** Whether services on `engine` run in this test process (their context, database and barrier are at hand). */
export const inProcess = (engine: TestEngine): boolean => engine.kind !== "embedded" || engine.runtime !== "deno";

/** A PostgreSQL engine on its own server, or undefined (skipped, see startPostgres) without the package. */
export async function startPostgresEngine(): Promise<PostgresEngine | undefined> {
  const server = await startPostgres();
  return server ? { kind: "postgres", server, byDataDir: new Map() } : undefined;
}

/** The `database` config section of a service on the engine: empty for embedded, its own database on PostgreSQL. */
export async function databaseConfig(engine: TestEngine, dataDir: string): Promise<Partial<ServiceConfig["database"]>> {
  if (engine.kind !== "postgres") return {};
  let url = engine.byDataDir.get(dataDir);
  if (!url) {
    url = await engine.server.createDatabase("svc");
    engine.byDataDir.set(dataDir, url);
  }
  // Small pools: a test file starts several services on one server.
  return { url, password_file: engine.server.passwordFile, pool_size: 4 };
}

/** A fresh database for a suite that opens storage itself: `:memory:`, or a new PostgreSQL database. */
export async function openTestDatabase<DB = any>(engine: TestEngine, service = "test"): Promise<Database<DB>> {
  if (engine.kind === "embedded") return openDatabase<DB>({ service, url: ":memory:" });
  return openDatabase<DB>({
    service,
    url: await engine.server.createDatabase(service.replace(/-/g, "_")),
    password: readFileSync(engine.server.passwordFile, "utf8").trim(),
    poolSize: 4,
  });
}

/**
 * Everything a database holds, as latin1 text, to check that a secret is not stored in the
 * clear: the file and its WAL when embedded, every row of every table on PostgreSQL.
 */
export async function storedText(database: Database<any>): Promise<string> {
  if (database.mode !== "postgres") {
    const file = database.filePath!;
    return [file, `${file}-wal`].map((f) => (existsSync(f) ? readFileSync(f).toString("latin1") : "")).join("");
  }
  const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = current_schema()`.execute(database.db);
  let text = "";
  for (const { name } of tables.rows) {
    for (const row of await database.db.selectFrom(name).selectAll().execute()) {
      for (const v of Object.values(row)) text += (v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : String(v)) + "\n";
    }
  }
  return text;
}
