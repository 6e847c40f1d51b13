/**
 * The one database factory of cryptoutil: Kysely over libSQL, or over PostgreSQL (postgres.ts)
 * for several instances of a service on one database.
 *
 * Local databases (memory, file, replica) get one connection with `foreign_keys = ON`;
 * memory and file databases also a busy timeout, and file databases switch to WAL. A remote
 * database is a libSQL server (sqld), which runs its connections with foreign keys on. An
 * embedded replica syncs once at open (an unreachable primary or a refused token fails the
 * open), reads its local file, and forwards writes and write transactions to the primary.
 * Open one `Database` per file per process: local libSQL calls block the thread, so a second
 * handle in the same process waiting on the busy timeout would stall the first (separate
 * processes share a file safely). Errors from libSQL and PostgreSQL are reported by code
 * only: their messages can carry the URL, and a remote URL or sync URL may carry a token.
 *
 * @example
 *   const store = await openDatabase<MyTables>({ service: "sm-kms", dataDir: "./data" });
 *   await runMigrations(store.db, "sm-kms", migrations);
 *   const health = await ping(store.db);
 *   await store.close();
 */
import { chmod, mkdir } from "node:fs/promises";
import { dirname } from "node:path";
import { createClient, type Client } from "@libsql/client";
import { Kysely, sql } from "kysely";
import { AppError } from "../service/errors.ts";
import {
  DEFAULT_POOL_SIZE,
  describeStorage,
  resolveStorageConfig,
  type ResolvedStorage,
  type StorageConfig,
  type StorageMode,
} from "./config.ts";
import { LocalChangeFeed, type ChangeFeed } from "./change-feed.ts";
import { LibsqlClientDialect } from "./libsql-dialect.ts";
import { openPostgres, PostgresKysely, preparedStatements, type PreparedReader, type PreparedStatements } from "./postgres.ts";
import { credentialsRefused, libsqlCode, mapStorageError } from "./errors.ts";

export { libsqlCode, mapStorageError };
import { openNative, type EmbeddedDatabase } from "./native-dialect.ts";
import { registerWalSyncer, retryWhileBusy, WalSyncer } from "./wal-sync.ts";
import { queryLogSpans, tracedDirect } from "./tracing.ts";
import type { Tracer } from "../telemetry/index.ts";

/** How a database is opened beyond its location: with a tracer, its statements become spans. */
export interface OpenOptions {
  tracer?: Tracer;
}

/** An open database and what the service template needs to manage it. */
export interface Database<DB> {
  /** The query builder; pass it to migrations, stores and `ping`. */
  readonly db: Kysely<DB>;
  readonly mode: StorageMode;
  /** Where the data lives, without credentials (for logs and healthz). */
  readonly location: string;
  /** Local database file (file and replica modes). */
  readonly filePath?: string;
  /** SQLite journal mode of a local database ("wal" for file mode), undefined for remote. */
  readonly journalMode?: string;
  /** Change notices between the instances sharing the database (change-feed.ts). */
  readonly changes: ChangeFeed;
  /** Embedded replica: pull the primary's latest frames now. No-op in other modes. */
  sync(): Promise<void>;
  /** Closes the client; idempotent. */
  close(): Promise<void>;
}

/** Opens (creating if needed) the database a `StorageConfig` describes. */
export async function openDatabase<DB = unknown>(config: StorageConfig | ResolvedStorage, opts: OpenOptions = {}): Promise<Database<DB>> {
  const r: ResolvedStorage = "mode" in config ? config : resolveStorageConfig(config);
  const local = r.mode !== "remote";

  if (r.filePath) {
    // 0700: database files hold wrapped keys and ciphertexts; nobody else needs to list them.
    await mkdir(dirname(r.filePath), { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      throw new AppError("unavailable", "cannot create the database directory", {
        details: { storage: libsqlCode(err) },
        cause: err,
      });
    });
  }

  // Embedded databases run on libSQL's native binding with cached statements; remote and
  // replica modes need @libsql/client's network protocol.
  if (r.mode === "memory" || r.mode === "file") return openEmbedded<DB>(r, opts);
  if (r.mode === "postgres") return openPostgresDatabase<DB>(r, opts);

  let client: Client;
  try {
    client = createClient({
      url: r.url,
      authToken: r.authToken,
      syncUrl: r.syncUrl,
      syncInterval: r.syncInterval,
      // One local connection: PRAGMAs are per connection, and the dialect serializes anyway.
      concurrency: local ? 1 : undefined,
      timeout: local ? r.busyTimeoutMs : undefined,
      intMode: "number",
    });
  } catch (err) {
    // A replica's client contacts the primary already here, even when its file has data.
    const mapped = mapStorageError(err);
    throw new AppError("unavailable", `cannot open the ${r.mode} database: ${mapped.message}`, {
      details: mapped.details,
      cause: err,
    });
  }

  if (r.filePath) {
    // SQLite gives the -wal and -shm files the database file's mode; keep all three private.
    await chmod(r.filePath, 0o600).catch(() => undefined);
  }

  let journalMode: string | undefined;
  if (local) {
    try {
      // Replica writes run on the primary (sqld enforces foreign keys there). A replica
      // refuses `PRAGMA busy_timeout = n` (unsupported statement) and ignores `timeout`: it
      // keeps libSQL's 100 ms, which only its own sync contends with. Until its first sync a
      // replica forwards even these statements, so a refused token or a dead primary fails here.
      await client.execute("PRAGMA foreign_keys = ON");
      // An embedded replica's local file keeps the journal mode the replication protocol needs.
      const rs = await client.execute("PRAGMA journal_mode");
      journalMode = String(rs.rows[0]?.[0] ?? "").toLowerCase();
    } catch (err) {
      client.close();
      const mapped = mapStorageError(err);
      throw new AppError("unavailable", `cannot open the ${r.mode} database: ${mapped.message}`, {
        details: mapped.details,
        cause: err,
      });
    }
  }
  if (r.mode === "replica") {
    // Pull the primary's state before the first local read (a new replica file is empty),
    // and fail the start now if the primary is unreachable or refuses the token.
    try {
      await client.sync();
    } catch (err) {
      client.close();
      const mapped = mapStorageError(err);
      throw new AppError("unavailable", `cannot sync the embedded replica from its primary: ${mapped.message}`, {
        details: mapped.details,
        cause: err,
      });
    }
  }

  let closed = false;
  const dialect = new LibsqlClientDialect(client, { serialize: local, onDestroy: () => (closed = true) });
  const db = new Kysely<DB>({ dialect, log: opts.tracer ? queryLogSpans(opts.tracer, "sqlite") : undefined });

  return {
    db,
    mode: r.mode,
    location: describeStorage(r),
    filePath: r.filePath,
    journalMode,
    changes: new LocalChangeFeed(),
    async sync() {
      if (r.mode !== "replica") return;
      try {
        await client.sync();
      } catch (err) {
        throw mapStorageError(err);
      }
    },
    async close() {
      if (closed) return;
      await db.destroy();
    },
  };
}

/** The direct paths of embedded databases (see native-dialect.ts), by their Kysely instance. */
const directPaths = new WeakMap<Kysely<any>, Pick<EmbeddedDatabase, "readDirect" | "runInTransaction">>();

/** The prepared statements of PostgreSQL databases (see postgres.ts), by their Kysely instance. */
const prepared = new WeakMap<Kysely<any>, PreparedStatements>();

/** How a PostgreSQL database runs precompiled SELECTs, if `db` is one (without a tracer: see openPostgresDatabase). */
export function preparedReaderOf(db: Kysely<any>): PreparedReader | undefined {
  return prepared.get(db)?.read;
}

/** How a PostgreSQL database runs a statement as a prepared one, if `db` is one (without a tracer). */
export function preparedRunnerOf(db: Kysely<any>): PreparedStatements["run"] | undefined {
  return prepared.get(db)?.run;
}

/** The direct read path of an embedded database, if `db` is one. */
export function directReaderOf(db: Kysely<any>) {
  return directPaths.get(db)?.readDirect;
}

/**
 * The direct statement path of an embedded database, if `db` is one: only for use inside the
 * caller's own `db.transaction()` callback (see `runInTransaction` in native-dialect.ts).
 */
export function directStatementOf(db: Kysely<any>) {
  return directPaths.get(db)?.runInTransaction;
}

async function openEmbedded<DB>(r: ResolvedStorage, opts: OpenOptions): Promise<Database<DB>> {
  let closed = false;
  let syncer: WalSyncer | undefined;
  let native: Awaited<ReturnType<typeof openNative>>;
  const path = r.mode === "memory" ? ":memory:" : r.filePath!;
  try {
    native = await openNative(path, () => {
      closed = true;
      syncer?.close();
    });
  } catch (err) {
    throw new AppError("unavailable", `cannot open the ${r.mode} database`, { details: { storage: libsqlCode(err) }, cause: err });
  }
  const { dialect } = native;
  let journalMode: string | undefined;
  // Processes opening a new file at once can both hold a shared lock while each needs the
  // exclusive one to switch it to WAL; SQLite then answers SQLITE_BUSY at once instead of
  // calling the busy handler (it would deadlock). The statements are idempotent: try again.
  try {
    await retryWhileBusy(() => {
      native.exec("PRAGMA foreign_keys = ON");
      native.exec(`PRAGMA busy_timeout = ${r.busyTimeoutMs | 0}`);
      journalMode = String(native.scalar(r.mode === "file" ? "PRAGMA journal_mode = WAL" : "PRAGMA journal_mode") ?? "").toLowerCase();
    }, r.busyTimeoutMs);
  } catch (err) {
    native.close();
    throw new AppError("unavailable", `cannot configure the ${r.mode} database`, { details: { storage: libsqlCode(err) }, cause: err });
  }
  if (r.filePath) {
    // SQLite gives the -wal and -shm files the database file's mode; keep all three private.
    await chmod(r.filePath, 0o600).catch(() => undefined);
  }
  const tracer = opts.tracer;
  const db = new Kysely<DB>({ dialect, log: tracer ? queryLogSpans(tracer, "sqlite") : undefined });
  directPaths.set(
    db,
    tracer
      ? { readDirect: tracedDirect(tracer, "sqlite", native.readDirect), runInTransaction: tracedDirect(tracer, "sqlite", native.runInTransaction) }
      : { readDirect: native.readDirect, runInTransaction: native.runInTransaction },
  );
  if (r.mode === "file" && journalMode === "wal") {
    syncer = new WalSyncer(`${r.filePath}-wal`);
    registerWalSyncer(db, { syncer, synchronous: Number(native.scalar("PRAGMA synchronous")), busyTimeoutMs: r.busyTimeoutMs, exec: (text) => native.exec(text) });
  }
  return {
    db,
    mode: r.mode,
    location: describeStorage(r),
    filePath: r.filePath,
    journalMode,
    changes: new LocalChangeFeed(),
    async sync() {},
    async close() {
      if (closed) return;
      await db.destroy();
    },
  };
}

async function openPostgresDatabase<DB>(r: ResolvedStorage, opts: OpenOptions): Promise<Database<DB>> {
  let opened: Awaited<ReturnType<typeof openPostgres>>;
  try {
    opened = await openPostgres({ url: r.url, password: r.password, poolSize: r.poolSize ?? DEFAULT_POOL_SIZE, connectTimeoutMs: Math.max(r.busyTimeoutMs, 1000) });
  } catch (err) {
    const mapped = mapStorageError(err);
    throw new AppError("unavailable", `cannot open the postgres database: ${mapped.message}`, { details: mapped.details, cause: err });
  }
  let closed = false;
  const db = new PostgresKysely<DB>({ dialect: opened.dialect, plugins: [opened.plugin], log: opts.tracer ? queryLogSpans(opts.tracer, "postgresql") : undefined });
  // With a tracer, precompiled reads go through Kysely, whose statements become spans.
  if (!opts.tracer) prepared.set(db, preparedStatements(opened.pool));
  return {
    db,
    mode: r.mode,
    location: describeStorage(r),
    changes: opened.changes,
    async sync() {},
    async close() {
      if (closed) return;
      closed = true;
      await opened.changes.close();
      await db.destroy();
    },
  };
}

/** What readyz/healthz report about the database. */
export type PingResult = { ok: true; latencyMs: number } | { ok: false; error: string; latencyMs: number };

/**
 * Runs `SELECT 1` with a deadline; never throws. The error is a short code ("timeout",
 * "credentials_refused", or the libSQL code), never a message that could carry a URL.
 */
export async function ping(db: Kysely<any>, timeoutMs = 2000): Promise<PingResult> {
  const start = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  try {
    const probe = sql<{ ok: number }>`select 1 as ok`.execute(db).then((r) => r.rows[0]?.ok === 1);
    // A probe that loses the race may still fail later; that is already reported as a timeout.
    probe.catch(() => undefined);
    const outcome = await Promise.race([probe, deadline]);
    const latencyMs = performance.now() - start;
    if (outcome === "timeout") return { ok: false, error: "timeout", latencyMs };
    return outcome ? { ok: true, latencyMs } : { ok: false, error: "unexpected_result", latencyMs };
  } catch (err) {
    const code = libsqlCode(err) ?? "error";
    const error = credentialsRefused(code, err) ? "credentials_refused" : code;
    return { ok: false, error, latencyMs: performance.now() - start };
  } finally {
    clearTimeout(timer);
  }
}
