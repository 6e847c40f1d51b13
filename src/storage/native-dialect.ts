/**
 * Kysely dialect for embedded databases (`:memory:` and files), with a prepared-statement
 * cache, over the runtime's SQLite engine (src/runtime: Bun's built-in engine on Bun,
 * libSQL's native binding on Deno). Both read and write the same SQLite-format file that
 * libSQL servers and embedded replicas use, so the choice is invisible on disk.
 *
 * Why not @libsql/client for local files: it prepares every statement anew and adds a
 * promise layer per call; here a point read costs ~3 us.
 *
 * Kysely's SQLite driver runs one query at a time on the single connection, so PRAGMAs
 * (foreign keys, busy timeout) stay on the connection they were set on. BLOBs come back
 * as `Uint8Array` on both engines.
 */
import { setImmediate } from "node:timers";
import { SqliteDialect, type SqliteDatabase, type SqliteStatement } from "kysely";
import { RowCache, VERSION_SQL } from "./row-cache.ts";
import { runtime, type SqliteEngine as Engine } from "../runtime/index.ts";

const MAX_CACHED_STATEMENTS = 512;

/**
 * Wraps an engine in the shape Kysely's SQLite driver expects, caching statements, and
 * tracks whether a transaction is open on the connection (Kysely sends every statement,
 * BEGIN/COMMIT/ROLLBACK included, through `prepare`).
 */
class CachingDatabase implements SqliteDatabase {
  private readonly cache = new Map<string, SqliteStatement>();
  /** True between BEGIN and COMMIT/ROLLBACK of a Kysely transaction. */
  inTransaction = false;
  /** True while the direct reads of this event-loop turn share one read transaction. */
  private sharedRead = false;
  /** Results of direct reads, valid while the database is unchanged (see row-cache.ts). */
  private readonly rows = new RowCache();

  constructor(
    private readonly engine: Engine,
    private readonly onClose: () => void,
  ) {}

  /**
   * A direct read inside the turn's shared read transaction, opened by the turn's first
   * direct read and committed in the next check phase (or before any other statement).
   *
   * Outside a transaction every SELECT is its own read transaction, and starting one on a
   * WAL file (file locks, the WAL index) costs about two thirds of a point read: 3.1 us
   * alone against 1.2 us per read when eight share one (in a loop, bun:sqlite). Under load
   * the public pipeline runs a turn's requests together (src/service/turn.ts), so their
   * reads share one.
   *
   * Freshness: the snapshot is taken at the turn's first direct read. Requests behind the
   * pipeline's turn barrier arrived before it was taken (the commit is queued before the
   * next turn's barrier opens), so what they read was current at a moment during their
   * request; the snapshot is at most one event-loop turn old for anything else. Writes of
   * this process never meet it: every statement through Kysely commits it first.
   *
   * The transaction's first statement reads the database's version, which keeps or drops
   * the row cache; reads then come from the cache when they can.
   */
  readShared(sql: string, params: readonly unknown[]): unknown[] | undefined {
    if (this.inTransaction) return undefined;
    if (!this.sharedRead) {
      this.statement("begin").run([]);
      this.sharedRead = true;
      setImmediate(this.endSharedRead);
      this.rows.validate(this.statement(VERSION_SQL).all([])[0] as { own: number; other: number });
    }
    return this.rows.read(sql, params, () => this.statement(sql).all(params));
  }

  /**
   * Commits the shared read transaction, if one is open. Never throws: it also runs from a
   * timer, and a read-only transaction that cannot commit is rolled back instead (there is
   * nothing in it to lose).
   */
  readonly endSharedRead = (): void => {
    if (!this.sharedRead) return;
    this.sharedRead = false;
    try {
      this.statement("commit").run([]);
    } catch {
      try {
        this.statement("rollback").run([]);
      } catch {
        // Then the connection itself is broken, and its next statement reports that.
      }
    }
  };

  prepare(sql: string): SqliteStatement {
    this.endSharedRead();
    // Kysely opens transactions with a deferred BEGIN; a deferred reader that later writes
    // gets SQLITE_BUSY at once when another process holds the write lock (no busy wait).
    // IMMEDIATE takes the write lock up front, so the busy timeout applies instead.
    if (sql === "begin") {
      // Open only once BEGIN has succeeded: a BEGIN refused for a busy lock opens nothing.
      const begin = this.statement("begin immediate");
      return {
        ...begin,
        run: (params) => {
          const r = begin.run(params);
          this.inTransaction = true;
          return r;
        },
      };
    }
    if (sql === "commit" || sql === "rollback") this.inTransaction = false;
    const st = this.statement(sql);
    // Writes and schema changes: total_changes() would catch the first at the next shared
    // read, but not the second.
    if (!st.reader) this.rows.clear();
    return st;
  }

  statement(sql: string): SqliteStatement {
    let st = this.cache.get(sql);
    if (!st) {
      st = this.engine.prepare(sql);
      if (this.cache.size >= MAX_CACHED_STATEMENTS) this.cache.clear();
      this.cache.set(sql, st);
    }
    return st;
  }

  /** For statements outside Kysely (PRAGMAs, schema changes): ends the shared read, drops cached rows. */
  beforeExec(): void {
    this.endSharedRead();
    this.rows.clear();
  }

  close(): void {
    this.endSharedRead();
    this.rows.clear();
    this.cache.clear();
    this.engine.close();
    this.onClose();
  }
}

export interface EmbeddedDatabase {
  engine: "bun:sqlite" | "libsql";
  exec(sql: string): void;
  scalar(sql: string): unknown;
  close(): void;
  dialect: SqliteDialect;
  /**
   * Runs a read statement directly on the connection, in the turn's shared read transaction
   * (see `CachingDatabase.readShared`), skipping Kysely's per-query machinery; or returns
   * undefined while a Kysely transaction is open on it (the caller then goes through Kysely,
   * which waits its turn, so it never sees another caller's uncommitted rows).
   */
  readDirect(sql: string, params: readonly unknown[]): unknown[] | undefined;
  /**
   * Runs a statement directly on the connection, for callers inside one of their own Kysely
   * transactions on it (Kysely holds the single connection for the transaction's callback,
   * so nothing else runs in between): a read's rows, or how many rows a write changed.
   * Throws when no transaction is open.
   */
  runInTransaction(sql: string, params: readonly unknown[]): DirectResult;
}

/** What a direct statement gives back: the rows it read, the number of rows it changed. */
export interface DirectResult {
  rows: unknown[];
  changes: number;
}

/** Opens an embedded database (path or ":memory:") and returns it with its Kysely dialect. */
export async function openNative(path: string, onClose: () => void): Promise<EmbeddedDatabase> {
  const engine = await runtime.openSqlite(path);
  const database = new CachingDatabase(engine, onClose);
  return {
    engine: runtime.name === "bun" ? "bun:sqlite" : "libsql",
    exec: (sql) => {
      database.beforeExec();
      engine.exec(sql);
    },
    scalar: (sql) => {
      database.beforeExec();
      return engine.scalar(sql);
    },
    close: () => {
      database.endSharedRead();
      engine.close();
    },
    dialect: new SqliteDialect({ database }),
    readDirect: (sql, params) => database.readShared(sql, params),
    runInTransaction: (sql, params) => {
      if (!database.inTransaction) throw new Error("a direct statement needs an open transaction");
      const st = database.statement(sql);
      return st.reader ? { rows: st.all(params) as unknown[], changes: 0 } : { rows: [], changes: Number(st.run(params).changes) };
    },
  };
}
