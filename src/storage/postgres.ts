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
 *   transaction first takes one transaction-scoped advisory lock, so the transactions of all
 *   instances on the database also run one at a time (READ COMMITTED: each statement sees
 *   what committed before it). Single statements outside transactions run concurrently.
 *
 * - Change notices (`PostgresChangeFeed`): LISTEN on one connection of its own per instance,
 *   reconnected with backoff when it drops; NOTIFY through the pool.
 *
 * Not here: the embedded engine's direct reads, row cache and deferred WAL sync (see
 * precompiled.ts and wal-sync.ts); on PostgreSQL those fall back to plain Kysely queries and
 * transactions.
 */
import {
  CompiledQuery,
  OperationNodeTransformer,
  PostgresAdapter,
  PostgresDriver,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type ColumnDefinitionNode,
  type DatabaseConnection,
  type DataTypeNode,
  type Dialect,
  type Kysely,
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
const TRANSACTION_LOCK = 1;
const MIGRATION_LOCK = 2;

/** The statement that makes a transaction wait for the migrations of other instances. */
export const MIGRATION_LOCK_SQL = `select pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${MIGRATION_LOCK})`;
const TRANSACTION_LOCK_SQL = `select pg_advisory_xact_lock(${LOCK_NAMESPACE}, ${TRANSACTION_LOCK})`;

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

/** PostgresDriver whose read-write transactions run one at a time across all instances. */
class SerialTransactionDriver extends PostgresDriver {
  override async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await super.beginTransaction(connection, settings);
    if (settings.accessMode === "read only") return;
    try {
      await connection.executeQuery(CompiledQuery.raw(TRANSACTION_LOCK_SQL));
    } catch (err) {
      // Kysely only rolls back once BEGIN has returned; do not hand back an open transaction.
      await connection.executeQuery(CompiledQuery.raw("rollback")).catch(() => undefined);
      throw err;
    }
  }
}

class SerialTransactionDialect implements Dialect {
  constructor(private readonly pool: Pool) {}
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver() {
    return new SerialTransactionDriver({ pool: this.pool });
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
  const pool = new pg.Pool({ ...clientConfig, max: o.poolSize });
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
  return { dialect: new SerialTransactionDialect(pool), plugin: new PortableSchemaPlugin(), pool, changes };
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
