/**
 * PostgreSQL, for several identical instances of a service on one database: Kysely's
 * PostgreSQL adapter and compiler over a `pg` connection pool.
 *
 * The apps' schemas and queries were written against SQLite; what differs is bridged here,
 * so the same migrations and stores run on both engines:
 * - Column types: migrations name SQLite's types; on PostgreSQL `integer` becomes `bigint`
 *   (SQLite's integers are 64-bit), `blob` becomes `bytea`, and an autoincrement key an
 *   identity column (`PortableSchemaPlugin`, applied to CREATE and ALTER TABLE only).
 * - Values: int8 and numeric come back as numbers (bigint columns, count(*), max()), as they
 *   do from SQLite; bytea as a plain `Uint8Array` of its own (never a view of a shared pool).
 * - Transactions: on SQLite one write transaction runs at a time (BEGIN IMMEDIATE), and code
 *   that reads and then writes inside a transaction relies on it. Here every read-write
 *   transaction runs SERIALIZABLE, which gives the same guarantee (the outcome is that of some
 *   one-at-a-time order) without making unrelated transactions wait for each other: the
 *   transactions of all instances run concurrently, and one that PostgreSQL aborts because it
 *   conflicts with another (40001, or a deadlock, 40P01) runs again from its start, after a
 *   short random pause and behind a lock that only such second runs take, up to a bound
 *   (`TRANSACTION_ATTEMPTS`). A transaction callback
 *   may therefore run more than once: it must only touch the database through its transaction
 *   (and compute from what it reads), which every store here does. A transaction that asks for
 *   an isolation level of its own keeps it (migrations run READ COMMITTED behind their advisory
 *   lock, so they see what the instance that migrated first committed). Read-only transactions
 *   and single statements outside transactions run READ COMMITTED, as before.
 *
 * - Change notices (`PostgresChangeFeed`): LISTEN on one connection of its own per instance,
 *   reconnected with backoff when it drops; NOTIFY through the pool.
 *
 * - Precompiled reads (`preparedStatements`, used by precompile): straight to the pool as named
 *   prepared statements, so neither Kysely's per-query work nor the server's parse and plan
 *   run on every call (about half the client's CPU per point read, and less of the server's);
 *   concurrent identical reads share one query that starts after each call (`ReadCoalescer`).
 *
 * Not here: the embedded engine's shared read transaction, row cache and deferred WAL sync (see
 * precompiled.ts and wal-sync.ts); on PostgreSQL those fall back to plain Kysely queries and
 * transactions.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  CompiledQuery,
  Kysely,
  OperationNodeTransformer,
  TransactionBuilder,
  PostgresAdapter,
  PostgresDriver,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type ColumnDefinitionNode,
  type DatabaseConnection,
  type DataTypeNode,
  type Dialect,
  type KyselyConfig,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type TransactionSettings,
  type UnknownRow,
} from "kysely";
import type { Client, ClientConfig, Pool, PoolConfig } from "pg";
import { ChangeSubscribers, type ChangeFeed } from "./change-feed.ts";

/**
 * Advisory lock keys (two int4s: a namespace, then the lock). The namespace is "cryp" in
 * ASCII, so other software on the same database is unlikely to pick the same pair.
 */
const LOCK_NAMESPACE = 0x63727970;
/** Taken by transactions that run again after a conflict (see SerializableDriver). */
const RETRY_LOCK = 1;
const MIGRATION_LOCK = 2;

const RETRY_LOCK_SQL = `select pg_advisory_lock(${LOCK_NAMESPACE}, ${RETRY_LOCK})`;
const RETRY_UNLOCK_SQL = `select pg_advisory_unlock(${LOCK_NAMESPACE}, ${RETRY_LOCK})`;

/** The statement that makes a transaction wait for the migrations of other instances. */
export const MIGRATION_LOCK_SQL = `select pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${MIGRATION_LOCK})`;

// Type OIDs (pg_type) whose text form we parse ourselves.
const INT8 = 20;
const NUMERIC = 1700;
const BYTEA = 17;

/** Rewrites SQLite column types in CREATE and ALTER TABLE to PostgreSQL's (see the header). */
class PortableSchemaTransformer extends OperationNodeTransformer {
  protected override transformDataType(node: DataTypeNode): DataTypeNode {
    if (node.dataType === "integer") return { ...node, dataType: "bigint" };
    if (node.dataType === "blob") return { ...node, dataType: "bytea" };
    return node;
  }

  protected override transformColumnDefinition(node: ColumnDefinitionNode): ColumnDefinitionNode {
    const out = super.transformColumnDefinition(node);
    if (!out.autoIncrement) return out;
    // PostgreSQL has no AUTOINCREMENT; an identity column hands out increasing values too.
    return { ...out, autoIncrement: undefined, generated: { kind: "GeneratedNode", byDefault: true, identity: true } };
  }
}

export class PortableSchemaPlugin implements KyselyPlugin {
  readonly #transformer = new PortableSchemaTransformer();

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const kind = args.node.kind;
    // Only schema changes carry column types worth rewriting; every other query passes as is.
    if (kind !== "CreateTableNode" && kind !== "AlterTableNode") return args.node;
    return this.#transformer.transformNode(args.node, args.queryId);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}

/**
 * Set while a transaction runs again after a conflict: its BEGIN takes the retry lock (see
 * below). One-shot, so that another transaction the callback might open does not wait for it.
 */
const retryRun = new AsyncLocalStorage<{ lock: boolean }>();

/**
 * PostgresDriver whose read-write transactions run SERIALIZABLE unless they ask for another level.
 * A transaction that runs again after a conflict first takes a session advisory lock (before its
 * BEGIN, so its snapshot postdates the wait), released once it ends: transactions that conflict
 * with each other (many taking the next number of one sequence, say) then queue instead of
 * aborting each other again; first runs never wait for it.
 */
class SerializableDriver extends PostgresDriver {
  readonly #locked = new WeakSet<DatabaseConnection>();

  override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    if (settings.accessMode === "read only" || settings.isolationLevel) return super.beginTransaction(connection, settings);
    const retry = retryRun.getStore();
    if (retry?.lock) {
      retry.lock = false;
      await connection.executeQuery(CompiledQuery.raw(RETRY_LOCK_SQL));
      this.#locked.add(connection);
    }
    try {
      // One round trip: START TRANSACTION ISOLATION LEVEL SERIALIZABLE.
      await super.beginTransaction(connection, { ...settings, isolationLevel: "serializable" });
    } catch (err) {
      await this.#unlock(connection);
      throw err;
    }
  }

  override async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await super.commitTransaction(connection);
    // A failed COMMIT is followed by a ROLLBACK, which unlocks.
    await this.#unlock(connection);
  }

  override async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    try {
      await super.rollbackTransaction(connection);
    } finally {
      await this.#unlock(connection);
    }
  }

  async #unlock(connection: DatabaseConnection): Promise<void> {
    if (!this.#locked.delete(connection)) return;
    // A broken connection has lost its session, and its locks with it.
    await connection.executeQuery(CompiledQuery.raw(RETRY_UNLOCK_SQL)).catch(() => undefined);
  }
}

class SerializableDialect implements Dialect {
  constructor(private readonly pool: Pool) {}
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver() {
    return new SerializableDriver({ pool: this.pool });
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db);
  }
}

export interface PostgresOptions {
  url: string;
  password?: string;
  poolSize: number;
  /** How long a query waits for a free pooled connection (or a new one to connect), in ms. */
  connectTimeoutMs: number;
}

/**
 * Creates the pool and its dialect and checks that the server answers (an unreachable
 * server, an unknown database or a refused password fail here, with the pg error).
 * `pg` is loaded only when PostgreSQL is configured.
 */
export async function openPostgres(o: PostgresOptions): Promise<{ dialect: Dialect; plugin: KyselyPlugin; pool: Pool; changes: PostgresChangeFeed }> {
  const { default: pg } = await import("pg");
  const { parseIntoClientConfig } = await import("pg-connection-string");
  const builtin = pg.types;
  const types = {
    getTypeParser(oid: number, format?: "text" | "binary") {
      if (format === undefined || format === "text") {
        if (oid === INT8 || oid === NUMERIC) return (v: string) => Number(v);
        if (oid === BYTEA) {
          const parse = builtin.getTypeParser(BYTEA, "text") as (v: string) => Uint8Array;
          return (v: string) => new Uint8Array(parse(v));
        }
      }
      return (builtin.getTypeParser as (oid: number, format?: string) => unknown)(oid, format);
    },
  } as PoolConfig["types"];
  // Parsed here rather than passed as `connectionString`: pg lets the url's (empty) password
  // override the one from the password file.
  const clientConfig: ClientConfig = { ...parseIntoClientConfig(o.url), password: o.password, connectionTimeoutMillis: o.connectTimeoutMs, types };
  // Connections once opened stay open (pg's default closes one idle for 10 s): a new one costs
  // a server process fork, SCRAM's key derivation on both ends and its statements prepared
  // again, and when load comes back after a pause every request at once waits for that.
  // Kept-alive TCP finds one that a firewall or a dead server dropped while idle.
  const pool = new pg.Pool({ ...clientConfig, max: o.poolSize, idleTimeoutMillis: 0, keepAlive: true });
  // An idle connection the server drops (restart, failover) is an 'error' event on the pool;
  // unhandled, it would end the process. The pool discards that connection by itself.
  pool.on("error", () => undefined);
  try {
    const client = await pool.connect();
    client.release();
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw err;
  }
  const changes = new PostgresChangeFeed(pool, () => new pg.Client({ ...clientConfig, keepAlive: true }));
  return { dialect: new SerializableDialect(pool), plugin: new PortableSchemaPlugin(), pool, changes };
}

/** A channel name as a quoted identifier (LISTEN takes an identifier, pg_notify a text). */
const quoteIdent = (name: string) => `"${name.replace(/"/g, '""')}"`;
const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 5_000;

/**
 * Change notices over LISTEN/NOTIFY (see change-feed.ts). The listening connection opens at
 * the first subscription; whenever it (re)connects and listens again, every subscriber resyncs,
 * since notices sent while it was down (or not yet listening) are lost.
 */
export class PostgresChangeFeed implements ChangeFeed {
  readonly shared = true;
  readonly #subs = new ChangeSubscribers();
  #client?: Client;
  #connecting = false;
  #closed = false;
  #retryMs = RECONNECT_MIN_MS;
  #timer?: ReturnType<typeof setTimeout>;

  constructor(
    private readonly pool: Pool,
    private readonly newClient: () => Client,
  ) {}

  /** Whether the listening connection is up (for healthz). */
  get listening(): boolean {
    return this.#client !== undefined;
  }

  subscribe(channel: string, onChange: (payload: string) => void, onResync?: () => void): () => void {
    const { isNew, remove } = this.#subs.add(channel, { onChange, onResync });
    const client = this.#client;
    if (isNew && client) {
      client.query(`listen ${quoteIdent(channel)}`).then(
        () => this.#subs.resync([channel]),
        () => this.#drop(client),
      );
    } else if (!client) this.#connect();
    return remove;
  }

  async publish(channel: string, payload = ""): Promise<void> {
    if (this.#closed) return;
    await this.pool.query("select pg_notify($1, $2)", [channel, payload]).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => undefined);
  }

  #connect(): void {
    if (this.#closed || this.#connecting || this.#client) return;
    this.#connecting = true;
    const client = this.newClient();
    // A dropped listening connection is an 'error' (and then 'end') event; unhandled, it would end the process.
    client.on("error", () => this.#drop(client));
    client.on("end", () => this.#drop(client));
    client.on("notification", (m) => this.#subs.deliver(m.channel, m.payload ?? ""));
    (async () => {
      await client.connect();
      for (const channel of this.#subs.byChannel.keys()) await client.query(`listen ${quoteIdent(channel)}`);
    })().then(
      () => {
        this.#connecting = false;
        if (this.#closed) return void client.end().catch(() => undefined);
        this.#client = client;
        this.#retryMs = RECONNECT_MIN_MS;
        this.#subs.resync();
      },
      () => {
        this.#connecting = false;
        client.end().catch(() => undefined);
        this.#retry();
      },
    );
  }

  #drop(client: Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.end().catch(() => undefined);
    this.#retry();
  }

  #retry(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#connect();
    }, this.#retryMs);
    (this.#timer as { unref?: () => void }).unref?.();
    this.#retryMs = Math.min(this.#retryMs * 2, RECONNECT_MAX_MS);
  }
}

/** SQLSTATEs after which a transaction may succeed when run again: serialization failure, deadlock. */
const RETRYABLE = new Set(["40001", "40P01"]);
/** Runs of one transaction at most (the first and its retries) before its conflict is reported. */
export const TRANSACTION_ATTEMPTS = 12;
const BACKOFF_FIRST_MS = 1;
const BACKOFF_MAX_MS = 64;

/** Whether `err` (or an error it wraps as `cause`) is a conflict that a new run may not meet. */
export function isRetryableConflict(err: unknown): boolean {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && RETRYABLE.has(code) && typeof (e as { severity?: unknown }).severity === "string") return true;
  }
  return false;
}

/** Transaction conflicts retried, by outcome (for healthz and the scale benchmark). */
export interface ConflictStats {
  retried: number;
  gaveUp: number;
}

/** Runs `run` until it does not end in a retryable conflict, at most TRANSACTION_ATTEMPTS times. */
async function retryConflicts<T>(run: () => Promise<T>, stats: ConflictStats): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await (attempt === 1 ? run() : retryRun.run({ lock: true }, run));
    } catch (err) {
      if (!isRetryableConflict(err)) throw err;
      if (attempt >= TRANSACTION_ATTEMPTS) {
        stats.gaveUp++;
        throw err;
      }
      stats.retried++;
      // Runs after the second queue on the retry lock; a short random pause (growing) lets the
      // first runs they met finish.
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * cap));
    }
  }
}

/** A transaction builder whose `execute` runs the callback again after a retryable conflict. */
function retrying<DB>(builder: TransactionBuilder<DB>, stats: ConflictStats): TransactionBuilder<DB> {
  const proto = TransactionBuilder.prototype as TransactionBuilder<DB>;
  // Own properties in front of the prototype's methods (which read the builder's private
  // fields, so they run on the builder itself).
  return Object.assign(builder, {
    setAccessMode: (mode: Parameters<TransactionBuilder<DB>["setAccessMode"]>[0]) => retrying(proto.setAccessMode.call(builder, mode), stats),
    setIsolationLevel: (level: Parameters<TransactionBuilder<DB>["setIsolationLevel"]>[0]) => retrying(proto.setIsolationLevel.call(builder, level), stats),
    execute: <T>(callback: Parameters<TransactionBuilder<DB>["execute"]>[0]) => retryConflicts(() => proto.execute.call(builder, callback) as Promise<T>, stats),
  });
}

/**
 * Kysely over PostgreSQL whose `transaction()` retries conflicts (see the header). Instances
 * derived with `withPlugin`, `withSchema` and the like are plain Kysely (none is used here).
 */
export class PostgresKysely<DB> extends Kysely<DB> {
  readonly conflicts: ConflictStats = { retried: 0, gaveUp: 0 };

  constructor(config: KyselyConfig) {
    super(config);
  }

  override transaction(): TransactionBuilder<DB> {
    return retrying(super.transaction(), this.conflicts);
  }
}

/** A precompiled SELECT's rows, by SQL text and parameters. */
export type PreparedReader = (sql: string, params: readonly unknown[]) => Promise<unknown[]>;

/**
 * Concurrent reads of one statement with the same parameters share a query, without ever
 * answering a caller from a snapshot older than its call: one such query runs at a time, and
 * the callers that arrive meanwhile wait for the next one, which starts when it ends and
 * serves them all. Every caller thus gets rows that PostgreSQL read after the call began
 * (READ COMMITTED: each statement sees what was committed before it started), as its own
 * query would have; under load, a hot row (the key every encrypt reads) costs one query per
 * round trip instead of one per request. Each caller gets its own copy of the rows.
 */
export class ReadCoalescer {
  readonly #flights = new Map<string, { ended: Promise<void>; next?: Promise<unknown[]> }>();

  read(key: string, run: () => Promise<unknown[]>): Promise<unknown[]> {
    const flight = this.#flights.get(key);
    if (!flight) return this.#start(key, run);
    flight.next ??= flight.ended.then(() => this.#start(key, run));
    return flight.next.then(copyRows);
  }

  #start(key: string, run: () => Promise<unknown[]>): Promise<unknown[]> {
    const rows = run();
    const ended = rows.then(
      () => undefined,
      () => undefined,
    );
    const flight: { ended: Promise<void>; next?: Promise<unknown[]> } = { ended };
    this.#flights.set(key, flight);
    // Runs before `next`'s start (registered first on the same promise chain): a flight with
    // followers stays in the map until their query replaces it.
    void ended.then(() => {
      if (this.#flights.get(key) === flight && !flight.next) this.#flights.delete(key);
    });
    return rows;
  }
}

const copyRows = (rows: unknown[]) => rows.map((r) => ({ ...(r as object) }));

/** The coalescing key of a statement and its parameters; undefined when a parameter is not a plain scalar. */
function readKey(text: string, params: readonly unknown[]): string | undefined {
  let key = text;
  for (const p of params) {
    // Length-prefixed, so that no two lists of strings make the same key.
    if (typeof p === "string") key += `\0s${p.length}:${p}`;
    else if (typeof p === "number" || typeof p === "bigint") key += `\0n${p}`;
    else if (p === null) key += "\0null";
    else return undefined;
  }
  return key;
}

/** Statements run as named prepared statements on the pool (see `preparedStatements`). */
export interface PreparedStatements {
  /** A SELECT's rows; concurrent identical reads share a query (see ReadCoalescer). */
  read: PreparedReader;
  /** Any statement, each call its own query: its rows and the number of rows it changed. */
  run(sql: string, params: readonly unknown[]): Promise<{ rows: unknown[]; changes: number }>;
}

/**
 * Runs statements of a fixed set (precompiled ones, a handful of INSERT shapes) as named
 * prepared statements on the pool: each connection parses and plans one at its first use
 * only (about half the server's CPU of a batch INSERT, and of a point read). A statement whose
 * result type a migration has changed since (SQLSTATE 0A000, "cached plan must not change
 * result type") runs unprepared from then on.
 */
export function preparedStatements(pool: Pool): PreparedStatements {
  // One name per statement text: the code's set of statements keeps this small.
  const names = new Map<string, string>();
  const unprepared = new Set<string>();
  const coalescer = new ReadCoalescer();
  const query = async (text: string, values: unknown[]) => {
    if (unprepared.has(text)) return pool.query(text, values);
    let name = names.get(text);
    if (!name) names.set(text, (name = `cryptoutil_${names.size + 1}`));
    try {
      return await pool.query({ name, text, values });
    } catch (err) {
      if ((err as { code?: unknown }).code !== "0A000") throw err;
      unprepared.add(text);
      return pool.query(text, values);
    }
  };
  const rowsOf = async (text: string, values: unknown[]) => (await query(text, values)).rows;
  return {
    read: (text, params) => {
      const values = params as unknown[];
      const key = readKey(text, params);
      return key === undefined ? rowsOf(text, values) : coalescer.read(key, () => rowsOf(text, values));
    },
    run: async (text, params) => {
      const r = await query(text, params as unknown[]);
      return { rows: r.rows, changes: r.rowCount ?? 0 };
    },
  };
}
