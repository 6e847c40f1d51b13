/**
 * Kysely dialect for embedded databases (`:memory:` and files) over libSQL's native
 * binding (`libsql`, the engine `@libsql/client` itself uses for local files), with a
 * prepared-statement cache. `@libsql/client` prepares every statement anew and adds a
 * promise layer per call; on a hot read path that was 5-10x the cost of the query.
 *
 * Kysely's SQLite driver runs one query at a time on the single connection, so PRAGMAs
 * (foreign keys, busy timeout) stay on the connection they were set on. BLOBs come back
 * as `Uint8Array`, as with the client-based dialect.
 */
import { SqliteDialect, type SqliteDatabase, type SqliteStatement } from "kysely";
import Libsql from "libsql";

const MAX_CACHED_STATEMENTS = 512;

type NativeDb = InstanceType<typeof Libsql>;

function toUint8(rows: unknown[]): unknown[] {
  for (const row of rows) {
    if (row && typeof row === "object") {
      const r = row as Record<string, unknown>;
      for (const k in r) if (r[k] instanceof ArrayBuffer) r[k] = new Uint8Array(r[k] as ArrayBuffer);
    }
  }
  return rows;
}

/** Wraps a native database in the shape Kysely's SQLite driver expects, caching statements. */
function cachingDatabase(native: NativeDb, onClose: () => void): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    prepare(sql: string): SqliteStatement {
      // Kysely opens transactions with a deferred BEGIN; a deferred reader that later writes
      // gets SQLITE_BUSY at once when another process holds the write lock (no busy wait).
      // IMMEDIATE takes the write lock up front, so the busy timeout applies instead.
      if (sql === "begin") sql = "begin immediate";
      let st = cache.get(sql);
      if (!st) {
        const s = native.prepare(sql);
        st = {
          get reader() {
            return s.reader;
          },
          all: (params: ReadonlyArray<unknown>) => toUint8(s.all(...(params as unknown[]))),
          run: (params: ReadonlyArray<unknown>) => s.run(...(params as unknown[])) as { changes: number; lastInsertRowid: number },
          iterate: (params: ReadonlyArray<unknown>) => s.iterate(...(params as unknown[])) as IterableIterator<unknown>,
        };
        if (cache.size >= MAX_CACHED_STATEMENTS) cache.clear();
        cache.set(sql, st);
      }
      return st;
    },
    close() {
      cache.clear();
      native.close();
      onClose();
    },
  };
}

/** Opens a native embedded database (path or ":memory:") and returns it with its dialect. */
export function openNative(path: string, onClose: () => void): { native: NativeDb; dialect: SqliteDialect } {
  const native = new Libsql(path);
  return { native, dialect: new SqliteDialect({ database: cachingDatabase(native, onClose) }) };
}
