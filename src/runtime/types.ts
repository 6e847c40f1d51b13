/**
 * The runtime seam: the few things a cryptoutil service needs that Web standards do not
 * give it, one interface with an implementation per runtime (bun.ts, deno.ts). Everything
 * else in src/ and apps/ is Web-standard or `node:*` and names no runtime.
 *
 * Guarantees every implementation keeps: `serve` with `tls` answers TLS 1.3 only (older
 * versions are refused at the handshake); bodies above `maxRequestBodySize` never reach the
 * handler whole; `fetch` verifies the server against `tls.ca` when given, else the runtime's
 * trust store; `openSqlite` returns BLOBs as `Uint8Array`.
 */
import type { SqliteStatement } from "kysely";

export interface ServeOptions {
  hostname: string;
  /** 0 = any free port. */
  port: number;
  /** Server certificate chain (leaf first) and key, PEM: TLS 1.3 only. Absent: plain HTTP. */
  tls?: { cert: string; key: string };
  /** Bodies above this many bytes are refused (413) or cut off (the handler's read fails). */
  maxRequestBodySize: number;
  fetch(req: Request): Response | Promise<Response>;
  /** The answer when the handler throws. */
  error?(e: unknown): Response | Promise<Response>;
}

export interface HttpServer {
  readonly port: number;
  /** Requests whose answer is not yet written. */
  readonly pendingRequests: number;
  /** The client's IP address, for a request this server is handling. */
  clientAddress(req: Request): string | undefined;
  /** Stops taking connections; closes open ones at once (`force`) or once they are idle. */
  stop(force: boolean): Promise<void>;
}

/** What `fetch` verifies the server with and presents as client certificate (PEM). */
export interface FetchTls {
  ca?: string;
  cert?: string;
  key?: string;
}

/** The little the embedded-database driver needs from a SQLite engine. */
export interface SqliteEngine {
  prepare(sql: string): SqliteStatement;
  exec(sql: string): void;
  /** First column of the first row of a query. */
  scalar(sql: string): unknown;
  close(): void;
}

export interface Runtime {
  readonly name: "bun" | "deno";
  /** Starts an HTTP server; resolves once it listens. */
  serve(opts: ServeOptions): Promise<HttpServer>;
  /** `fetch`, verifying the server with `tls.ca` and presenting `tls.cert`/`tls.key` when asked. */
  fetch(url: string | URL, init?: RequestInit, tls?: FetchTls): Promise<Response>;
  /**
   * `fetch` of an https `url` over a connection to `address`, an IP the caller resolved and
   * checked, with the URL's host name as TLS server name, certificate name and Host header: a
   * second DNS answer cannot send the request elsewhere. `pinsAddresses` says whether this
   * runtime does so; where it is false, the runtime resolves the name once more.
   */
  fetchAt(url: URL, address: string, init?: RequestInit, tls?: FetchTls): Promise<Response>;
  readonly pinsAddresses: boolean;
  /** Opens an embedded SQLite-format database file (or ":memory:"). */
  openSqlite(path: string): Promise<SqliteEngine>;
  /**
   * A full garbage collection now, where the runtime offers one (Bun); else nothing. Called once
   * a service is up, so what starting allocated is not counted in its idle memory.
   */
  collectGarbage(): void;
}
