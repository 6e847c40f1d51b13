/**
 * The Bun implementation of the runtime seam: `Bun.serve` (TLS 1.3 only through OpenSSL
 * options), Bun's per-request fetch TLS options, and Bun's built-in SQLite engine. Why Bun's
 * engine on Bun: under HTTP load, libSQL's binding spent about 40% of the process's CPU in
 * its per-call row machinery (profiled with `bun --cpu-prof` under `npm run bench -- learn-ps`).
 */
import type { Server } from "bun";
import { TLS13_ONLY } from "./tls.ts";
import type { FetchTls, HttpServer, Runtime, ServeOptions, SqliteEngine } from "./types.ts";

async function serve(o: ServeOptions): Promise<HttpServer> {
  const server: Server<undefined> = Bun.serve({
    hostname: o.hostname,
    port: o.port,
    ...(o.tls ? { tls: { cert: o.tls.cert, key: o.tls.key, secureOptions: TLS13_ONLY } } : {}),
    maxRequestBodySize: o.maxRequestBodySize,
    fetch: o.fetch,
    ...(o.error ? { error: o.error } : {}),
  });
  return {
    port: server.port!,
    get pendingRequests() {
      return server.pendingRequests;
    },
    clientAddress: (req) => server.requestIP(req)?.address,
    stop: (force) => server.stop(force),
  };
}

function fetchWith(url: string | URL, init?: RequestInit, tls?: FetchTls): Promise<Response> {
  if (!tls || (!tls.ca && !tls.cert)) return fetch(url, init);
  // Bun's fetch takes the CA bundle and client certificate per request.
  return fetch(url, { ...init, tls: { ...(tls.ca ? { ca: tls.ca } : {}), ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) } } as RequestInit);
}

/** Bun's fetch takes the TLS server name per request: the URL names the address, the name stays the name. */
function fetchAt(url: URL, address: string, init?: RequestInit, tls?: FetchTls): Promise<Response> {
  const at = new URL(url);
  at.hostname = address.includes(":") ? `[${address}]` : address;
  const headers = new Headers(init?.headers);
  headers.set("host", url.host);
  const options = { ...(tls?.ca ? { ca: tls.ca } : {}), ...(tls?.cert ? { cert: tls.cert, key: tls.key } : {}), serverName: url.hostname.replace(/^\[|\]$/g, "") };
  return fetch(at, { ...init, headers, tls: options } as RequestInit);
}

async function openSqlite(path: string): Promise<SqliteEngine> {
  const { Database } = await import("bun:sqlite");
  const db = new Database(path, { create: true, readwrite: true });
  return {
    prepare(sql) {
      const s = db.prepare(sql);
      const reader = s.columnNames.length > 0;
      return {
        reader,
        all: (params) => s.all(...(params as never[])) as unknown[],
        run: (params) => {
          const r = s.run(...(params as never[]));
          return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
        },
        iterate: (params) => s.iterate(...(params as never[])) as IterableIterator<unknown>,
      };
    },
    exec: (sql) => void db.exec(sql),
    scalar: (sql) => (db.prepare(sql).values()[0] as unknown[] | undefined)?.[0],
    close: () => db.close(),
  };
}

export const bunRuntime: Runtime = { name: "bun", serve, fetch: fetchWith, fetchAt, pinsAddresses: true, openSqlite, collectGarbage: () => Bun.gc(true) };
