/**
 * Storage errors to the suite's error model, by driver code only (libSQL/SQLite result codes,
 * PostgreSQL SQLSTATEs, socket errors), never by message text: messages can carry URLs and
 * tokens. Kept apart from the database factory so that the HTTP layer can map errors without
 * loading any database driver.
 */
import { AppError } from "../service/errors.ts";

// SQLite result codes, for errors an embedded replica relays from its primary by number.
const SQLITE_PRIMARY_CODES = [
  "OK", "ERROR", "INTERNAL", "PERM", "ABORT", "BUSY", "LOCKED", "NOMEM", "READONLY", "INTERRUPT",
  "IOERR", "CORRUPT", "NOTFOUND", "FULL", "CANTOPEN", "PROTOCOL", "EMPTY", "SCHEMA", "TOOBIG",
  "CONSTRAINT", "MISMATCH", "MISUSE", "NOLFS", "AUTH", "FORMAT", "RANGE", "NOTADB",
];
const SQLITE_EXTENDED_CODES: Record<number, string> = {
  275: "CONSTRAINT_CHECK",
  787: "CONSTRAINT_FOREIGNKEY",
  1299: "CONSTRAINT_NOTNULL",
  1555: "CONSTRAINT_PRIMARYKEY",
  1811: "CONSTRAINT_TRIGGER",
  2067: "CONSTRAINT_UNIQUE",
  2579: "CONSTRAINT_ROWID",
  3091: "CONSTRAINT_DATATYPE",
  517: "BUSY_SNAPSHOT",
  773: "BUSY_TIMEOUT",
};

function sqliteCodeName(extended: number): string | undefined {
  const name = SQLITE_EXTENDED_CODES[extended] ?? SQLITE_PRIMARY_CODES[extended & 0xff];
  return name ? `SQLITE_${name}` : undefined;
}

/**
 * A code for the errors an embedded replica raises without one: libSQL's native binding
 * reports them as plain `Error`s whose message is a Rust debug form, e.g.
 * `RemoteSqliteFailure(3, 1555, "UNIQUE constraint failed: t.id")` for a write the primary
 * refused. Only the code is derived; the message itself is never passed on.
 */
function replicaCode(message: string): string | undefined {
  const remote = /^RemoteSqliteFailure\(\d+, (\d+),/.exec(message);
  if (remote) return sqliteCodeName(Number(remote[1]));
  const delegated = /^WriteDelegation\(status: (\w+)/.exec(message);
  if (delegated) return `REPLICA_WRITE_${delegated[1]!.toUpperCase()}`;
  if (/^(Replication|Sync)\(|^sync error:/.test(message)) return "REPLICA_SYNC_FAILED";
  if (message.startsWith("Sqlite3UnsupportedStatement")) return "REPLICA_UNSUPPORTED_STATEMENT";
  return undefined;
}

/**
 * A code for the errors `pg` raises without one (derived from the message, which is never
 * passed on: it can name the host or the user).
 */
function pgClientCode(message: string): string | undefined {
  if (/^SASL: |password must be a string/.test(message)) return "PG_CLIENT_AUTH";
  if (/^timeout exceeded when trying to connect|^Connection terminated/.test(message)) return "PG_CONNECTION_LOST";
  if (/^Cannot use a pool after calling end|^driver has already been destroyed/.test(message)) return "CLIENT_CLOSED";
  return undefined;
}

/** A PostgreSQL server error: a five-character SQLSTATE and a severity. */
function isPgServerError(err: object, code: string): boolean {
  return /^[0-9A-Z]{5}$/.test(code) && typeof (err as { severity?: unknown }).severity === "string";
}

/**
 * The storage error code of an error, if it has one (never its message): libSQL's codes,
 * and PostgreSQL's SQLSTATEs as `PG_<sqlstate>` (e.g. `PG_23505`, a unique violation).
 */
export function libsqlCode(err: unknown): string | undefined {
  if (!err || typeof err !== "object") return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && code !== "") return isPgServerError(err, code) ? `PG_${code}` : code;
  const message = (err as { message?: unknown }).message;
  return typeof message === "string" ? (replicaCode(message) ?? pgClientCode(message)) : undefined;
}

/**
 * Whether the server refused the credentials (Hrana over HTTP: 401/403; WebSocket: AUTH_*;
 * replica; PostgreSQL: invalid password or authorization, or none given when one is needed).
 */
export function credentialsRefused(code: string, err: unknown): boolean {
  if (code === "PG_28P01" || code === "PG_28000" || code === "PG_CLIENT_AUTH") return true;
  if (code === "SERVER_ERROR") {
    const status = httpStatusOf(err);
    return status === 401 || status === 403;
  }
  return code.startsWith("AUTH_") || code === "REPLICA_WRITE_UNAUTHENTICATED";
}

/** The HTTP status behind a `SERVER_ERROR` of the Hrana-over-HTTP client (e.g. 401). */
function httpStatusOf(err: unknown): number | undefined {
  const cause = (err as { cause?: unknown }).cause;
  const status = cause && typeof cause === "object" ? (cause as { status?: unknown }).status : undefined;
  return typeof status === "number" ? status : undefined;
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

// PostgreSQL SQLSTATEs of a busy database: serialization failure, deadlock, lock not available.
const PG_BUSY = new Set(["PG_40001", "PG_40P01", "PG_55P03"]);
// Connection exceptions (class 08), the server shutting down (57P0x), too many connections,
// an unknown database: the service cannot use its database, through no fault of the caller.
const PG_UNREACHABLE = /^PG_(08...|57P0[1-3]|53300|3D000|CONNECTION_LOST)$/;

/**
 * Maps a storage error to an `AppError`: constraint violations are `conflict` (409), a
 * locked or unreachable database is `unavailable` (503), anything else `internal`.
 * AppErrors pass through unchanged.
 */
export function mapStorageError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = libsqlCode(err) ?? "";
  // Class 23 is PostgreSQL's integrity constraint violations (unique, foreign key, not null, check).
  if (code.startsWith("SQLITE_CONSTRAINT") || code.startsWith("PG_23")) {
    return new AppError("conflict", "the change conflicts with stored data", { details: { storage: code }, cause: err });
  }
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") || PG_BUSY.has(code)) {
    return new AppError("unavailable", "the database is busy", { details: { storage: code }, cause: err });
  }
  if (credentialsRefused(code, err)) {
    const httpStatus = httpStatusOf(err);
    // A fault of this service's configuration (token missing, expired, read-only or signed
    // by another key), not of the caller: 503 like any other unusable database.
    return new AppError("unavailable", "the database server refused the credentials", {
      details: { storage: code, ...(httpStatus ? { httpStatus } : {}) },
      cause: err,
    });
  }
  if (
    code.startsWith("REPLICA_SYNC") ||
    code === "REPLICA_WRITE_UNAVAILABLE" ||
    code === "REPLICA_WRITE_DEADLINEEXCEEDED" ||
    code.startsWith("HRANA_") ||
    code.startsWith("UND_ERR_") ||
    NETWORK_CODES.has(code) ||
    code === "SERVER_ERROR" ||
    code === "CLIENT_CLOSED" ||
    code.includes("WEBSOCKET") ||
    PG_UNREACHABLE.test(code)
  ) {
    return new AppError("unavailable", "the database is unreachable", { details: { storage: code }, cause: err });
  }
  return new AppError("internal", "storage failure", { details: code ? { storage: code } : undefined, cause: err });
}

