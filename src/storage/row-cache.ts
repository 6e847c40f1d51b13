/**
 * Results of recent direct reads (precompiled point reads), kept while the database has not
 * changed since they were read.
 *
 * Validity comes from SQLite itself, checked once per shared read transaction (see
 * `CachingDatabase.readShared`): `data_version` changes when any other connection, in this
 * process or another, commits; `total_changes()` counts this connection's own inserts,
 * updates and deletes, committed or not. While both are unchanged, every row a cached read
 * returned is still what the same read would return now. Statements that are not reads
 * (schema changes too) clear the cache at once.
 *
 * Under load a served point read from SQLite costs several times its in-loop cost (its code
 * and pages leave the CPU caches between requests); a hit costs a copy of the rows. Callers
 * get their own copies (BLOBs included), so one that wipes or edits a row never changes the
 * cached one. Only reads whose parameters are all strings or numbers and that return at most
 * MAX_ROWS rows of at most MAX_ENTRY_BYTES are kept; the cache starts over beyond MAX_ENTRIES
 * entries or MAX_BYTES bytes (counted as string lengths and BLOB sizes).
 */
const MAX_ENTRIES = 10_000;
const MAX_ROWS = 16;
const MAX_ENTRY_BYTES = 64 * 1024;
const MAX_BYTES = 32 * 1024 * 1024;

/** The statement that reads the version pair; run inside the read transaction it validates. */
export const VERSION_SQL = "select total_changes() as own, data_version as other from pragma_data_version()";

export class RowCache {
  private readonly bySql = new Map<string, Map<string, unknown[]>>();
  private entries = 0;
  private bytes = 0;
  private own = -1;
  private other = -1;

  /** Drops every entry unless the database is at the version the entries were read at. */
  validate(version: { own: number; other: number }): void {
    if (version.own === this.own && version.other === this.other) return;
    this.own = version.own;
    this.other = version.other;
    this.clear();
  }

  clear(): void {
    if (this.entries === 0) return;
    this.bySql.clear();
    this.entries = 0;
    this.bytes = 0;
  }

  /**
   * The rows of `sql` with `params`: a copy of the cached ones, or those `load` reads (kept,
   * when they may be, and then also handed out as a copy).
   */
  read(sql: string, params: readonly unknown[], load: () => unknown[]): unknown[] {
    const key = paramsKey(params);
    if (key === undefined) return load();
    let byKey = this.bySql.get(sql);
    const cached = byKey?.get(key);
    if (cached) return copyRows(cached);
    const rows = load();
    if (rows.length > MAX_ROWS) return rows;
    const size = sizeOf(rows) + key.length + sql.length;
    if (size > MAX_ENTRY_BYTES) return rows;
    if (this.entries >= MAX_ENTRIES || this.bytes + size > MAX_BYTES) {
      this.clear();
      byKey = undefined;
    }
    if (!byKey) this.bySql.set(sql, (byKey = new Map()));
    this.entries++;
    this.bytes += size;
    byKey.set(key, rows);
    return copyRows(rows);
  }
}

/** An injective key for string and number parameters (length-prefixed); undefined for others. */
function paramsKey(params: readonly unknown[]): string | undefined {
  let key = "";
  for (const p of params) {
    if (typeof p === "string") key += `${p.length}:${p}`;
    else if (typeof p === "number") key += `#${p};`;
    else return undefined;
  }
  return key;
}

/** Approximate bytes held by rows: string lengths, BLOB sizes, 8 per other value. */
function sizeOf(rows: unknown[]): number {
  let n = 0;
  for (const row of rows) {
    if (row === null || typeof row !== "object") {
      n += 8;
      continue;
    }
    const r = row as Record<string, unknown>;
    for (const k in r) {
      const v = r[k];
      n += k.length + (typeof v === "string" ? v.length : v instanceof Uint8Array ? v.byteLength : 8);
    }
  }
  return n;
}

function copyRows(rows: unknown[]): unknown[] {
  const out = new Array<unknown>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    if (row === null || typeof row !== "object") {
      out[i] = row;
      continue;
    }
    const copy: Record<string, unknown> = { ...(row as Record<string, unknown>) };
    for (const k in copy) {
      const v = copy[k];
      if (v instanceof Uint8Array) copy[k] = v.slice();
    }
    out[i] = copy;
  }
  return out;
}
