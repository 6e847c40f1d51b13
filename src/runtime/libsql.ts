/**
 * An embedded SQLite engine over libSQL's native binding (the `libsql` package), for
 * runtimes without a SQLite engine of their own (Deno). It reads and writes the same
 * SQLite-format file as Bun's engine and libSQL servers, so the choice is invisible on disk.
 */
import type { SqliteEngine } from "./types.ts";

function toUint8(rows: unknown[]): unknown[] {
  for (const row of rows) {
    if (row && typeof row === "object") {
      const r = row as Record<string, unknown>;
      for (const k in r) if (r[k] instanceof ArrayBuffer) r[k] = new Uint8Array(r[k] as ArrayBuffer);
    }
  }
  return rows;
}

export async function openLibsql(path: string): Promise<SqliteEngine> {
  const { default: Libsql } = await import("libsql");
  const db = new Libsql(path);
  return {
    prepare(sql) {
      const s = db.prepare(sql);
      const reader = s.reader; // a native call each time; constant per statement
      return {
        reader,
        all: (params) => toUint8(s.all(...(params as unknown[]))),
        run: (params) => s.run(...(params as unknown[])) as { changes: number; lastInsertRowid: number },
        iterate: (params) => s.iterate(...(params as unknown[])) as IterableIterator<unknown>,
      };
    },
    exec: (sql) => void db.exec(sql),
    scalar: (sql) => (db.prepare(sql).raw().get() as unknown[] | undefined)?.[0],
    close: () => db.close(),
  };
}
