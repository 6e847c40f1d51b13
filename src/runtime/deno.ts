/**
 * The Deno implementation of the runtime seam.
 *
 * TLS servers: `Deno.serve` takes a certificate and key but no protocol versions, and its
 * rustls configuration accepts TLS 1.2 too (an `openssl s_client -tls1_2` handshake
 * completes). Deno's `node:http2`/`node:tls` do honour `minVersion: "TLSv1.3"`, so TLS
 * servers here are the node:http2 adapter the mTLS listener already uses (h2 and HTTP/1.1),
 * without a client certificate. Plain HTTP (pki-ca's revocation listener) is `Deno.serve`.
 *
 * fetch: one `Deno.createHttpClient` per CA bundle and client certificate, kept for reuse.
 * SQLite: libSQL's native binding (`libsql`, loaded from node_modules).
 */
import { startMtlsListener } from "../service/mtls-listener.ts";
import { openLibsql } from "./libsql.ts";
import type { FetchTls, HttpServer, Runtime, ServeOptions } from "./types.ts";

/** The part of Deno's API used here (the project's type check runs without Deno's types). */
interface DenoHttpServer {
  finished: Promise<void>;
  shutdown(): Promise<void>;
}
declare const Deno: {
  serve(
    options: { hostname: string; port: number; signal?: AbortSignal; onListen?(addr: { port: number }): void; onError?(e: unknown): Response | Promise<Response> },
    handler: (req: Request, info: { remoteAddr: { hostname: string } }) => Response | Promise<Response>,
  ): DenoHttpServer;
  createHttpClient(options: { caCerts?: string[]; cert?: string; key?: string }): object;
};

async function serveTls(o: ServeOptions & { tls: { cert: string; key: string } }): Promise<HttpServer> {
  const addresses = new WeakMap<Request, string>();
  const listener = await startMtlsListener({
    hostname: o.hostname,
    port: o.port,
    tls: { cert: o.tls.cert, key: o.tls.key },
    maxRequestBodySize: o.maxRequestBodySize,
    handler: async (req, peer) => {
      if (peer.address) addresses.set(req, peer.address);
      return o.fetch(req);
    },
    error: (e) => (o.error ? (o.error(e) as Response) : new Response(null, { status: 500 })),
  });
  return {
    port: listener.port,
    get pendingRequests() {
      return listener.pendingRequests;
    },
    clientAddress: (req) => addresses.get(req),
    stop: (force) => listener.stop(force),
  };
}

async function servePlain(o: ServeOptions): Promise<HttpServer> {
  const addresses = new WeakMap<Request, string>();
  const abort = new AbortController();
  let pending = 0;
  let port = 0;
  const listening = Promise.withResolvers<void>();
  const server = Deno.serve(
    {
      hostname: o.hostname,
      port: o.port,
      signal: abort.signal,
      onListen: (addr) => {
        port = addr.port;
        listening.resolve();
      },
      onError: (e) => (o.error ? o.error(e) : new Response(null, { status: 500 })),
    },
    async (req, info) => {
      pending++;
      try {
        if (Number(req.headers.get("content-length") ?? 0) > o.maxRequestBodySize) return new Response(null, { status: 413 });
        addresses.set(req, info.remoteAddr.hostname);
        return await o.fetch(req);
      } finally {
        pending--;
      }
    },
  );
  await listening.promise;
  return {
    port,
    get pendingRequests() {
      return pending;
    },
    clientAddress: (req) => addresses.get(req),
    async stop(force) {
      if (force) abort.abort();
      else await server.shutdown();
      await server.finished;
    },
  };
}

const clients = new Map<string, object>();

function fetchWith(url: string | URL, init?: RequestInit, tls?: FetchTls): Promise<Response> {
  if (!tls || (!tls.ca && !tls.cert)) return fetch(url, init);
  const key = `${tls.ca ?? ""}\0${tls.cert ?? ""}\0${tls.key ?? ""}`;
  let client = clients.get(key);
  if (!client) {
    // Renewed client certificates make new entries: keep the map small.
    if (clients.size >= 32) clients.clear();
    client = Deno.createHttpClient({ ...(tls.ca ? { caCerts: [tls.ca] } : {}), ...(tls.cert ? { cert: tls.cert, key: tls.key } : {}) });
    clients.set(key, client);
  }
  return fetch(url, { ...init, client } as RequestInit);
}

export const denoRuntime: Runtime = {
  name: "deno",
  serve: (o) => (o.tls ? serveTls(o as ServeOptions & { tls: { cert: string; key: string } }) : servePlain(o)),
  fetch: fetchWith,
  // Deno's HTTP client takes no TLS server name apart from the URL: the name is resolved again.
  fetchAt: (url, _address, init, tls) => fetchWith(url, init, tls),
  pinsAddresses: false,
  openSqlite: openLibsql,
  // Deno exposes a collection only under --v8-flags=--expose-gc.
  collectGarbage: () => (globalThis as { gc?: () => void }).gc?.(),
};
