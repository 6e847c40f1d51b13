/**
 * A Kysely dialect over one `@libsql/client` Client.
 *
 * Why not `@libsql/kysely-libsql`: it pins an older client, and it lets queries outside an
 * open transaction race for the client's connections; on a single-connection database
 * (`:memory:`, embedded replica) those fail with TRANSACTION_ACTIVE instead of waiting.
 * Here, for a local database (`serialize: true`), every Kysely connection is one FIFO-ordered
 * turn on the client: a transaction holds the turn from BEGIN to COMMIT/ROLLBACK, other
 * queries wait their turn. That matches SQLite's single writer and keeps per-connection
 * PRAGMAs (foreign keys, busy timeout) on the one local connection they were set on.
 * For a remote server each Kysely connection is independent (a transaction is its own
 * server-side stream), so queries run concurrently.
 *
 * Blobs are returned as `Uint8Array` (libSQL gives `ArrayBuffer`), rows as plain objects.
 * Do not use the outer `Kysely` instance inside a transaction callback: it waits for the
 * turn the transaction holds (same rule as Kysely's own SQLite driver).
 */
import type { Client, InArgs, ResultSet, Transaction, TransactionMode } from "@libsql/client";
import {
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from "kysely";

/** A FIFO lock: one holder at a time, waiters served in arrival order. */
class TurnLock {
  #held = false;
  #waiters: Array<() => void> = [];

  async acquire(): Promise<void> {
    if (!this.#held) {
      this.#held = true;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#held = false;
  }
}

function toRows<R>(rs: ResultSet): R[] {
  const cols = rs.columns;
  return rs.rows.map((row) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < cols.length; i++) {
      const v = row[i];
      out[cols[i]!] = v instanceof ArrayBuffer ? new Uint8Array(v) : v;
    }
    return out as R;
  });
}

class LibsqlConnection implements DatabaseConnection {
  readonly #client: Client;
  #tx: Transaction | undefined;

  constructor(client: Client) {
    this.#client = client;
  }

  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    const target = this.#tx ?? this.#client;
    const rs = await target.execute({ sql: q.sql, args: q.parameters as InArgs });
    return {
      rows: toRows<R>(rs),
      numAffectedRows: BigInt(rs.rowsAffected),
      insertId: rs.lastInsertRowid,
    };
  }

  async *streamQuery<R>(q: CompiledQuery): AsyncIterableIterator<QueryResult<R>> {
    // libSQL has no cursor API; one chunk keeps the Kysely contract.
    yield await this.executeQuery<R>(q);
  }

  async begin(mode: TransactionMode): Promise<void> {
    if (this.#tx) throw new Error("transaction already open on this connection");
    this.#tx = await this.#client.transaction(mode);
  }

  async commit(): Promise<void> {
    const tx = this.#tx;
    if (!tx) throw new Error("no open transaction");
    // On failure the transaction stays attached: Kysely then calls rollback(), which must
    // still reach it (a failed local COMMIT leaves the transaction open).
    await tx.commit();
    this.#tx = undefined;
  }

  async rollback(): Promise<void> {
    const tx = this.#tx;
    this.#tx = undefined;
    if (!tx) throw new Error("no open transaction");
    try {
      await tx.rollback();
    } finally {
      tx.close();
    }
  }

  /** Runs raw SQL inside the open transaction (savepoints). */
  async raw(sql: string): Promise<void> {
    if (!this.#tx) throw new Error("no open transaction");
    await this.#tx.execute(sql);
  }
}

class LibsqlDriver implements Driver {
  readonly #client: Client;
  readonly #lock: TurnLock | undefined;
  readonly #onDestroy: () => void;

  constructor(client: Client, serialize: boolean, onDestroy: () => void) {
    this.#client = client;
    this.#lock = serialize ? new TurnLock() : undefined;
    this.#onDestroy = onDestroy;
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    await this.#lock?.acquire();
    return new LibsqlConnection(this.#client);
  }

  async releaseConnection(): Promise<void> {
    this.#lock?.release();
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    // "write" is BEGIN IMMEDIATE: take the write lock up front rather than fail on upgrade.
    await (conn as LibsqlConnection).begin(settings.accessMode === "read only" ? "read" : "write");
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await (conn as LibsqlConnection).commit();
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await (conn as LibsqlConnection).rollback();
  }

  async savepoint(conn: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await (conn as LibsqlConnection).raw(savepointSql("savepoint", name, compile));
  }

  async rollbackToSavepoint(conn: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await (conn as LibsqlConnection).raw(savepointSql("rollback to", name, compile));
  }

  async releaseSavepoint(conn: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]): Promise<void> {
    await (conn as LibsqlConnection).raw(savepointSql("release", name, compile));
  }

  async destroy(): Promise<void> {
    this.#onDestroy();
    this.#client.close();
  }
}

function savepointSql(verb: string, name: string, _compile: QueryCompiler["compileQuery"]): string {
  // Kysely generates these names itself; still refuse anything that is not an identifier.
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new Error("invalid savepoint name");
  return `${verb} "${name}"`;
}

/** The Kysely dialect: SQLite SQL, executed through the given libSQL client. */
export class LibsqlClientDialect implements Dialect {
  readonly #client: Client;
  readonly #serialize: boolean;
  readonly #onDestroy: () => void;

  /**
   * `serialize`: one query or transaction at a time (required for local databases, whose
   * client has one connection). `onDestroy` runs once when `Kysely.destroy()` closes the client.
   */
  constructor(client: Client, opts: { serialize: boolean; onDestroy?: () => void }) {
    this.#client = client;
    this.#serialize = opts.serialize;
    this.#onDestroy = opts.onDestroy ?? (() => {});
  }

  createAdapter(): DialectAdapter {
    return new SqliteAdapter();
  }

  createDriver(): Driver {
    return new LibsqlDriver(this.#client, this.#serialize, this.#onDestroy);
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db);
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler();
  }
}
