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
import type { Pool, PoolConfig } from "pg";

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
export async function openPostgres(o: PostgresOptions): Promise<{ dialect: Dialect; plugin: KyselyPlugin; pool: Pool }> {
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
  const pool = new pg.Pool({
    ...parseIntoClientConfig(o.url),
    password: o.password,
    max: o.poolSize,
    connectionTimeoutMillis: o.connectTimeoutMs,
    types,
  });
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
  return { dialect: new SerialTransactionDialect(pool), plugin: new PortableSchemaPlugin(), pool };
}
