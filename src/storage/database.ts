/**
 * The one database factory of cryptoutil: Kysely over libSQL.
 *
 * Local databases (memory, file, replica) get one connection with `foreign_keys = ON` and a
 * busy timeout; file databases switch to WAL. Open one `Database` per file per process: local
 * libSQL calls block the thread, so a second handle in the same process waiting on the busy
 * timeout would stall the first (separate processes share a file safely). Errors from libSQL are reported by code only:
 * their messages can carry the URL, and a remote URL or sync URL may carry a token.
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
  describeStorage,
  resolveStorageConfig,
  type ResolvedStorage,
  type StorageConfig,
  type StorageMode,
} from "./config.ts";
import { LibsqlClientDialect } from "./libsql-dialect.ts";
import { openNative } from "./native-dialect.ts";

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
  /** Embedded replica: pull the primary's latest frames now. No-op in other modes. */
  sync(): Promise<void>;
  /** Closes the client; idempotent. */
  close(): Promise<void>;
}

/** The libSQL error code of an error, if it has one (never its message). */
export function libsqlCode(err: unknown): string | undefined {
  if (err && typeof err === "object" && "code" in err && typeof (err as { code: unknown }).code === "string") {
    return (err as { code: string }).code;
  }
  return undefined;
}

// Socket-level failures reaching a remote server (Node/Bun/Deno spellings).
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
  "ConnectionRefused",
  "ConnectionClosed",
]);

/**
 * Maps a storage error to an `AppError`: constraint violations are `conflict` (409), a
 * locked or unreachable database is `unavailable` (503), anything else `internal`.
 * AppErrors pass through unchanged.
 */
export function mapStorageError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = libsqlCode(err) ?? "";
  if (code.startsWith("SQLITE_CONSTRAINT")) {
    return new AppError("conflict", "the change conflicts with stored data", { details: { storage: code }, cause: err });
  }
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) {
    return new AppError("unavailable", "the database is busy", { details: { storage: code }, cause: err });
  }
  if (
    code.startsWith("HRANA_") ||
    code.startsWith("UND_ERR_") ||
    NETWORK_CODES.has(code) ||
    code === "SERVER_ERROR" ||
    code === "CLIENT_CLOSED" ||
    code.includes("WEBSOCKET")
  ) {
    return new AppError("unavailable", "the database is unreachable", { details: { storage: code }, cause: err });
  }
  return new AppError("internal", "storage failure", { details: code ? { storage: code } : undefined, cause: err });
}

/** Opens (creating if needed) the database a `StorageConfig` describes. */
export async function openDatabase<DB = unknown>(config: StorageConfig | ResolvedStorage): Promise<Database<DB>> {
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
  if (r.mode === "memory" || r.mode === "file") return openEmbedded<DB>(r);

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
    throw new AppError("unavailable", `cannot open the ${r.mode} database`, {
      details: { storage: libsqlCode(err) },
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
      await client.execute("PRAGMA foreign_keys = ON");
      await client.execute(`PRAGMA busy_timeout = ${r.busyTimeoutMs | 0}`);
      // An embedded replica's local file keeps the journal mode the replication protocol needs.
      const rs = await client.execute("PRAGMA journal_mode");
      journalMode = String(rs.rows[0]?.[0] ?? "").toLowerCase();
    } catch (err) {
      client.close();
      throw new AppError("unavailable", `cannot configure the ${r.mode} database`, {
        details: { storage: libsqlCode(err) },
        cause: err,
      });
    }
  }

  let closed = false;
  const dialect = new LibsqlClientDialect(client, { serialize: local, onDestroy: () => (closed = true) });
  const db = new Kysely<DB>({ dialect });

  return {
    db,
    mode: r.mode,
    location: describeStorage(r),
    filePath: r.filePath,
    journalMode,
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

const directReaders = new WeakMap<Kysely<any>, (sql: string, params: readonly unknown[]) => unknown[] | undefined>();

/** The direct read path of an embedded database (see native-dialect.ts), if `db` is one. */
export function directReaderOf(db: Kysely<any>) {
  return directReaders.get(db);
}

async function openEmbedded<DB>(r: ResolvedStorage): Promise<Database<DB>> {
  let closed = false;
  let native: Awaited<ReturnType<typeof openNative>>;
  const path = r.mode === "memory" ? ":memory:" : r.filePath!;
  try {
    native = await openNative(path, () => (closed = true));
  } catch (err) {
    throw new AppError("unavailable", `cannot open the ${r.mode} database`, { details: { storage: libsqlCode(err) }, cause: err });
  }
  const { dialect } = native;
  let journalMode: string | undefined;
  try {
    native.exec("PRAGMA foreign_keys = ON");
    native.exec(`PRAGMA busy_timeout = ${r.busyTimeoutMs | 0}`);
    journalMode = String(native.scalar(r.mode === "file" ? "PRAGMA journal_mode = WAL" : "PRAGMA journal_mode") ?? "").toLowerCase();
  } catch (err) {
    native.close();
    throw new AppError("unavailable", `cannot configure the ${r.mode} database`, { details: { storage: libsqlCode(err) }, cause: err });
  }
  if (r.filePath) {
    // SQLite gives the -wal and -shm files the database file's mode; keep all three private.
    await chmod(r.filePath, 0o600).catch(() => undefined);
  }
  const db = new Kysely<DB>({ dialect });
  directReaders.set(db, native.readDirect);
  return {
    db,
    mode: r.mode,
    location: describeStorage(r),
    filePath: r.filePath,
    journalMode,
    async sync() {},
    async close() {
      if (closed) return;
      await db.destroy();
    },
  };
}

/** What readyz/healthz report about the database. */
export type PingResult = { ok: true; latencyMs: number } | { ok: false; error: string; latencyMs: number };

/**
 * Runs `SELECT 1` with a deadline; never throws. The error is a short code
 * ("timeout", or the libSQL code), never a message that could carry a URL.
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
    return { ok: false, error: libsqlCode(err) ?? "error", latencyMs: performance.now() - start };
  } finally {
    clearTimeout(timer);
  }
}
