/** Storage: the database factory, migrations and transactions (see each file's header). */
export {
  resolveStorageConfig,
  describeStorage,
  DEFAULT_BUSY_TIMEOUT_MS,
  DEFAULT_POOL_SIZE,
  type StorageConfig,
  type StorageMode,
  type ResolvedStorage,
} from "./config.ts";
export { openDatabase, ping, mapStorageError, libsqlCode, directStatementOf, type Database, type PingResult } from "./database.ts";
export { LocalChangeFeed, type ChangeFeed } from "./change-feed.ts";
export { commitDeferred, storageLatencyOf } from "./wal-sync.ts";
export { GroupCommit, GroupTransaction, type GroupCommitOptions, type GroupRunOptions } from "./group-commit.ts";
export { runMigrations, ensureMigrationsTable, type Migration, type MigrationReport } from "./migrations.ts";
export { withTransaction, type TransactionOptions } from "./transaction.ts";
export { precompile, precompileStatement, runPrepared, shapedStatements, statementRunner, type StatementHandle, type StatementResult } from "./precompiled.ts";
export { LibsqlClientDialect } from "./libsql-dialect.ts";
export { encodePageToken, decodePageToken, nextSeq } from "./page-token.ts";
export { engineOf, greatest, likeIgnoringCase, type Engine } from "./dialect.ts";
