/**
 * Storage configuration: which database a service opens.
 *
 * Five modes, chosen from the fields given:
 * - `memory`   — `url: ":memory:"`, for tests; gone when closed.
 * - `file`     — an embedded database file; the default is `file:<dataDir>/<service>.db`.
 * - `remote`   — a libSQL server: `libsql://`, `http(s)://` or `ws(s)://` with `authToken`.
 * - `replica`  — an embedded replica: `url: "file:..."` plus `syncUrl` (and `authToken`,
 *                `syncInterval` in seconds); reads are local, writes go to the primary.
 * - `postgres` — a PostgreSQL server: `postgres://` or `postgresql://` (user, host, port,
 *                database; libpq options such as `sslmode` in the query), `password` read by
 *                the caller from a file, a pool of `poolSize` connections.
 *
 * Validation: the service name is restricted to `[a-z0-9-]` so it cannot steer the
 * default path out of `dataDir`; every bad combination raises `AppError("validation_failed")`
 * naming the offending key. The auth token and the password are never part of any message,
 * and a password inside the URL is refused (it would end up in logs and process listings).
 */
import { AppError } from "../service/errors.ts";

/** What the service template passes to `openDatabase`. */
export interface StorageConfig {
  /** Service name, used for the default file name (`<service>.db`). */
  service: string;
  /** Directory for embedded database files; created (mode 0700) if missing. */
  dataDir?: string;
  /** `:memory:`, `file:...`, `libsql://...`, `http(s)://...`, `ws(s)://...`; default: the embedded file. */
  url?: string;
  /** Primary to sync from; makes a `file:` url an embedded replica. */
  syncUrl?: string;
  /** Bearer token for a remote server or a replica's primary. */
  authToken?: string;
  /** Seconds between background syncs of an embedded replica (default: only explicit `sync()`). */
  syncInterval?: number;
  /**
   * How long a local writer waits on a locked database before failing, in ms (default 5000).
   * File and memory modes; an embedded replica keeps libSQL's own (its writes run on the primary).
   */
  busyTimeoutMs?: number;
  /** PostgreSQL: the password (the service template reads it from `database.password_file`). */
  password?: string;
  /** PostgreSQL: connections in this instance's pool (default 10). */
  poolSize?: number;
}

export type StorageMode = "memory" | "file" | "remote" | "replica" | "postgres";

/** A fully resolved configuration: exactly what the factory hands to libSQL. */
export interface ResolvedStorage {
  mode: StorageMode;
  url: string;
  /** Filesystem path of the local database file (file and replica modes). */
  filePath?: string;
  syncUrl?: string;
  authToken?: string;
  syncInterval?: number;
  busyTimeoutMs: number;
  password?: string;
  poolSize?: number;
}

const SERVICE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const REMOTE_SCHEMES = ["libsql:", "http:", "https:", "ws:", "wss:"];
const POSTGRES_SCHEMES = ["postgres:", "postgresql:"];
export const DEFAULT_BUSY_TIMEOUT_MS = 5000;
export const DEFAULT_POOL_SIZE = 10;

function invalid(key: string, message: string): AppError {
  return new AppError("validation_failed", `storage.${key}: ${message}`, { details: { key: `storage.${key}` } });
}

/** Turns a `file:` URL into a filesystem path (accepts `file:rel/path`, `file:/abs`, `file:///abs`). */
function filePathOf(url: string): string {
  let rest = url.slice("file:".length);
  const query = rest.indexOf("?");
  if (query >= 0) rest = rest.slice(0, query);
  if (rest.startsWith("///")) rest = rest.slice(2);
  else if (rest.startsWith("//localhost/")) rest = rest.slice("//localhost".length);
  return decodeURIComponent(rest);
}

/** Builds a `file:` URL for a filesystem path (relative paths stay relative). */
function fileUrlOf(path: string): string {
  const encoded = path.split("/").map(encodeURIComponent).join("/");
  return `file:${encoded}`;
}

function schemeOf(url: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*:)/i.exec(url);
  return m?.[1]?.toLowerCase();
}

/**
 * Resolves a `StorageConfig` into one mode, validating every field.
 *
 * @example
 *   resolveStorageConfig({ service: "sm-kms", dataDir: "./data" })
 *   // { mode: "file", url: "file:./data/sm-kms.db", filePath: "./data/sm-kms.db", ... }
 */
export function resolveStorageConfig(cfg: StorageConfig): ResolvedStorage {
  if (typeof cfg.service !== "string" || !SERVICE_NAME.test(cfg.service)) {
    throw invalid("service", "must be 1-63 characters of a-z, 0-9 and '-'");
  }
  const busyTimeoutMs = cfg.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (!Number.isInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 600_000) {
    throw invalid("busyTimeoutMs", "must be an integer between 0 and 600000");
  }
  if (cfg.syncInterval !== undefined && (!Number.isFinite(cfg.syncInterval) || cfg.syncInterval <= 0)) {
    throw invalid("syncInterval", "must be a positive number of seconds");
  }
  if (cfg.authToken !== undefined && (typeof cfg.authToken !== "string" || cfg.authToken === "")) {
    throw invalid("authToken", "must be a non-empty string when set");
  }
  if (cfg.password !== undefined && (typeof cfg.password !== "string" || cfg.password === "")) {
    throw invalid("password", "must be a non-empty string when set");
  }
  if (cfg.poolSize !== undefined && (!Number.isInteger(cfg.poolSize) || cfg.poolSize < 1 || cfg.poolSize > 1000)) {
    throw invalid("poolSize", "must be an integer between 1 and 1000");
  }
  const urlScheme = cfg.url ? schemeOf(cfg.url) : undefined;
  if (urlScheme && POSTGRES_SCHEMES.includes(urlScheme)) return resolvePostgres(cfg, cfg.url!, busyTimeoutMs);
  if (cfg.password !== undefined) throw invalid("password", "only applies to a postgres:// url");
  if (cfg.poolSize !== undefined) throw invalid("poolSize", "only applies to a postgres:// url");

  let url = cfg.url;
  if (url === undefined || url === "") {
    if (!cfg.dataDir) throw invalid("dataDir", "is required when no url is given");
    const dir = cfg.dataDir.replace(/\/+$/, "") || "/";
    url = fileUrlOf(`${dir === "/" ? "" : dir}/${cfg.service}.db`);
  }

  if (url === ":memory:" || url === "file::memory:") {
    if (cfg.syncUrl) throw invalid("syncUrl", "an embedded replica needs a file url, not :memory:");
    return { mode: "memory", url: ":memory:", busyTimeoutMs };
  }

  const scheme = schemeOf(url);
  if (scheme === "file:") {
    const filePath = filePathOf(url);
    if (filePath === "" || filePath.endsWith("/")) throw invalid("url", "file url must name a database file");
    if (cfg.syncUrl !== undefined) {
      const syncScheme = schemeOf(cfg.syncUrl);
      if (!syncScheme || !REMOTE_SCHEMES.includes(syncScheme)) {
        throw invalid("syncUrl", "must be a libsql://, http(s):// or ws(s):// url");
      }
      return {
        mode: "replica",
        url,
        filePath,
        syncUrl: cfg.syncUrl,
        authToken: cfg.authToken,
        syncInterval: cfg.syncInterval,
        busyTimeoutMs,
      };
    }
    if (cfg.syncInterval !== undefined) throw invalid("syncInterval", "only applies to an embedded replica");
    return { mode: "file", url, filePath, busyTimeoutMs };
  }

  if (scheme && REMOTE_SCHEMES.includes(scheme)) {
    if (cfg.syncUrl !== undefined) throw invalid("syncUrl", "only applies to a file url (embedded replica)");
    if (cfg.syncInterval !== undefined) throw invalid("syncInterval", "only applies to an embedded replica");
    return { mode: "remote", url, authToken: cfg.authToken, busyTimeoutMs };
  }
  throw invalid("url", "must be :memory:, file:, libsql:, http(s):, ws(s): or postgres(ql):");
}

function resolvePostgres(cfg: StorageConfig, url: string, busyTimeoutMs: number): ResolvedStorage {
  if (cfg.syncUrl !== undefined) throw invalid("syncUrl", "only applies to a file url (embedded replica)");
  if (cfg.syncInterval !== undefined) throw invalid("syncInterval", "only applies to an embedded replica");
  if (cfg.authToken !== undefined) throw invalid("authToken", "does not apply to PostgreSQL; use the password file");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid("url", "is not a valid postgres:// url");
  }
  if (parsed.password !== "" || parsed.searchParams.has("password")) {
    throw invalid("url", "must not contain the password; put it in database.password_file");
  }
  if (parsed.hostname === "" && !parsed.searchParams.has("host")) throw invalid("url", "must name the PostgreSQL host");
  if (parsed.pathname.replace(/^\//, "") === "") throw invalid("url", "must name the database (postgres://user@host:port/database)");
  return { mode: "postgres", url, password: cfg.password, poolSize: cfg.poolSize ?? DEFAULT_POOL_SIZE, busyTimeoutMs };
}

/** The database location without credentials, safe to log or show in healthz. */
export function describeStorage(r: ResolvedStorage): string {
  if (r.mode === "memory") return ":memory:";
  if (r.mode === "file") return r.url;
  const strip = (u: string) => {
    try {
      const parsed = new URL(u);
      // A PostgreSQL user name says which role the service runs as; a libSQL one may be a token.
      if (r.mode !== "postgres") parsed.username = "";
      parsed.password = "";
      parsed.search = "";
      return parsed.toString();
    } catch {
      return "<invalid url>";
    }
  };
  return r.mode === "remote" || r.mode === "postgres" ? strip(r.url) : `${r.url} <- ${strip(r.syncUrl ?? "")}`;
}
