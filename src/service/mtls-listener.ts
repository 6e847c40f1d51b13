/**
 * The node listener: the one place that knows the runtime's node:http2 server. It serves the
 * mutual-TLS port, the admin port, and the public port when `server.listener` is `node`.
 *
 * `Bun.serve` enforces client certificates but gives its handler no peer certificate, so
 * the mTLS port is a `node:http2` secure server (`allowHTTP1`: h2 and HTTP/1.1 on one port)
 * that requires a client certificate chaining to `ca`, TLS 1.3 only. Each request is turned
 * into a Web `Request` (method, URL, headers, streamed body) and handed, with the client's
 * address and DER certificate, to a `(req) => Promise<Response>` handler: the same pipeline
 * as the public server. The `Response` is written back with its status, headers and
 * streamed body.
 *
 * ALPN: h2 and http/1.1 are offered; a client that offers only other protocols is refused
 * with the `no_application_protocol` alert (the runtime's http2 server does this itself; the
 * listener's test checks it). A client that offers no ALPN at all is served HTTP/1.1.
 *
 * Malformed HTTP/1.1 (a bad request line, headers over the runtime's limit, an unknown HTTP
 * version) never reaches a handler; `malformed` shapes that answer too, so it carries the
 * error model, the security headers and a request id like every other answer.
 */
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { AppError } from "./errors.ts";

/** What the listener knows of a request's connection. */
export interface MtlsPeer {
  /** The client's IP address. */
  address?: string;
  /** The client certificate (DER), verified against `ca` during the handshake. */
  certificate?: Uint8Array;
  /** The TLS connection, stable across the requests it carries (a cache key). */
  connection: object;
}

export interface MtlsTls {
  /** Server certificate chain (leaf first), PEM. */
  cert: string;
  /** Server private key, PEM. */
  key: string;
  /** Certificates that client certificates must chain to, PEM; unset: no client certificate is asked for. */
  ca?: string;
}

/** What was wrong with a request the HTTP/1.1 parser refused. */
export type MalformedKind = "header_too_large" | "http_version_not_supported" | "malformed_request";

export interface MtlsListenerOptions {
  hostname: string;
  /** 0 = any free port. */
  port: number;
  tls: MtlsTls;
  /** Bodies above this many bytes are cut off: the handler's read of the body fails. */
  maxRequestBodySize: number;
  handler(req: Request, peer: MtlsPeer): Promise<Response>;
  /** The answer when the request cannot be turned into a `Request` or the handler throws. */
  error(e: unknown): Response;
  /** The answer to a request the HTTP/1.1 parser refused (the connection closes after it). */
  malformed?(kind: MalformedKind, peer: { address?: string }): Response;
}

export interface MtlsListener {
  readonly port: number;
  /** Requests whose answer is not yet written. */
  readonly pendingRequests: number;
  /** Swaps the server certificate and trusted CAs for new connections; open ones keep theirs. */
  setTls(tls: MtlsTls): void;
  /** Stops taking connections; closes the open ones at once (`force`) or once no request is in flight. */
  stop(force: boolean): Promise<void>;
}

/** Connection-specific headers, which HTTP/2 forbids (RFC 9113 §8.2.2). */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

function secureOptions(tls: MtlsTls) {
  const clientCerts = tls.ca !== undefined;
  return { cert: tls.cert, key: tls.key, ca: tls.ca, minVersion: "TLSv1.3" as const, requestCert: clientCerts, rejectUnauthorized: clientCerts };
}

/** The parser's error code as the kind of refusal it stands for. */
function malformedKind(code: string | undefined): MalformedKind {
  if (code === "HPE_HEADER_OVERFLOW") return "header_too_large";
  if (code === "HPE_INVALID_VERSION") return "http_version_not_supported";
  return "malformed_request";
}

/** A whole HTTP/1.1 answer as bytes, for a socket no request object stands for. */
async function rawAnswer(answer: Response): Promise<Uint8Array> {
  const body = new Uint8Array(await answer.arrayBuffer());
  let head = `HTTP/1.1 ${answer.status} ${answer.statusText || "Error"}\r\n`;
  answer.headers.forEach((value, name) => {
    if (name !== "content-length" && name !== "connection" && !/[\r\n]/.test(value)) head += `${name}: ${value}\r\n`;
  });
  head += `content-length: ${body.byteLength}\r\nconnection: close\r\n\r\n`;
  const headBytes = new TextEncoder().encode(head);
  const out = new Uint8Array(headBytes.byteLength + body.byteLength);
  out.set(headBytes);
  out.set(body, headBytes.byteLength);
  return out;
}

type NodeRequest = Http2ServerRequest | IncomingMessage;
type NodeResponse = Http2ServerResponse | ServerResponse;

/**
 * The request body as a Web stream that fails with 413 once more than `limit` bytes arrive;
 * the rest is read and dropped, so the answer can still be written.
 */
function bodyStream(req: NodeRequest, limit: number): ReadableStream<Uint8Array> {
  let seen = 0;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.on("data", (chunk: Buffer) => {
        if (seen > limit) return;
        seen += chunk.length;
        if (seen > limit) {
          controller.error(new AppError("payload_too_large", `request body exceeds ${limit} bytes`));
          req.resume();
          return;
        }
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length));
        if ((controller.desiredSize ?? 1) <= 0) req.pause();
      });
      req.once("end", () => {
        try {
          controller.close();
        } catch {
          // already errored
        }
      });
      req.once("error", (e) => {
        try {
          controller.error(e);
        } catch {
          // already closed
        }
      });
    },
    pull() {
      req.resume();
    },
    cancel() {
      // The reader gave up (the pipeline's own limit): drop the rest rather than reset, so the
      // answer reaches the client.
      discardRest(req);
    },
  }, { highWaterMark: 4 });
}

/** How much of an unwanted request body is read and dropped before the connection is cut. */
const DRAIN_CAP = 1 << 30;

function discardRest(req: NodeRequest): void {
  let dropped = 0;
  req.removeAllListeners("data");
  req.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > DRAIN_CAP) req.destroy();
  });
  req.resume();
}

/** node's request as a Web Request. */
function toRequest(req: NodeRequest, origin: string, limit: number): Request {
  const raw = req.rawHeaders;
  const headers = new Headers();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.charCodeAt(0) === 58 /* ':' */) continue; // HTTP/2 pseudo-headers
    headers.append(name, raw[i + 1]!);
  }
  const authority = req.httpVersionMajor === 2 ? (req.headers[":authority"] as string | undefined) : req.headers.host;
  if (authority !== undefined && !headers.has("host")) headers.set("host", authority);
  // The URL the handler sees names this server as the client addressed it; a Host that is not
  // a host (a path, user info) is ignored rather than trusted into the URL.
  let base = origin;
  if (authority && /^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/.test(authority)) base = `https://${authority}`;
  const url = new URL(req.url ?? "/", base);
  const method = req.method ?? "GET";
  const hasBody = method !== "GET" && method !== "HEAD" && !(req.headers["content-length"] === "0");
  return new Request(url.href, {
    method,
    headers,
    body: hasBody ? bodyStream(req, limit) : undefined,
    // A streamed request body (the Fetch standard's half duplex).
    duplex: "half",
  } as RequestInit);
}

function waitDrain(res: NodeResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** Writes a Web Response to node's response: status, headers, then the body as it streams. */
async function writeResponse(res: NodeResponse, answer: Response, http2Stream: boolean, head: boolean): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  answer.headers.forEach((value, name) => {
    if ((http2Stream && HOP_BY_HOP.has(name)) || name === "set-cookie") return;
    headers[name] = value;
  });
  const cookies = answer.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  if (!answer.body || head) {
    (res as ServerResponse).writeHead(answer.status, headers);
    await answer.body?.cancel();
    res.end();
    return;
  }
  const reader = answer.body.getReader();
  try {
    // A body that comes in one piece (every JSON answer) goes out with a Content-Length
    // instead of chunked, in one write.
    const first = await reader.read();
    const second = first.done ? first : await reader.read();
    if (second.done) {
      const body = first.value ?? new Uint8Array(0);
      headers["content-length"] = String(body.byteLength);
      (res as ServerResponse).writeHead(answer.status, headers);
      res.end(body);
      return;
    }
    (res as ServerResponse).writeHead(answer.status, headers);
    let chunk: Uint8Array | undefined = first.value;
    let queued: Uint8Array | undefined = second.value;
    while (chunk) {
      if (res.destroyed) {
        await reader.cancel();
        return;
      }
      if (!(res as ServerResponse).write(chunk)) await waitDrain(res);
      chunk = queued ?? (await reader.read()).value;
      queued = undefined;
    }
    res.end();
  } catch (e) {
    // The body failed midway: the status may be out, so the only honest signal is a reset.
    (res as ServerResponse).destroy(e as Error);
  }
}

/**
 * Starts the mTLS listener; resolves once it listens.
 *
 * @example
 *   const mtls = await startMtlsListener({ hostname: "127.0.0.1", port: 0, tls: { cert, key, ca },
 *     maxRequestBodySize: 2 << 20, handler: (req, peer) => pipeline(req), error: (e) => errorResponse(e, "unknown") });
 */
export async function startMtlsListener(opts: MtlsListenerOptions): Promise<MtlsListener> {
  const sockets = new Set<Socket>();
  let pending = 0;
  const server = http2.createSecureServer({ ...secureOptions(opts.tls), allowHTTP1: true });
  let origin = "";
  // The certificate cannot change within a connection (TLS 1.3 has no renegotiation), and
  // asking the runtime for it costs more than the rest of the adapter: once per connection.
  const certificates = new WeakMap<object, Uint8Array | null>();
  const certificateOf = (connection: object, socket: TLSSocket) => {
    let der = certificates.get(connection);
    if (der === undefined) {
      const raw = socket.getPeerCertificate?.()?.raw;
      der = raw ? new Uint8Array(raw.buffer, raw.byteOffset, raw.length) : null;
      certificates.set(connection, der);
    }
    return der ?? undefined;
  };

  const onRequest = async (req: NodeRequest, res: NodeResponse) => {
    pending++;
    try {
      const socket = req.socket as TLSSocket;
      const http2Stream = req.httpVersionMajor === 2;
      // For h2, `req.socket` stands in for the session's TLS socket; it is the same object for
      // every stream of the connection only through the session.
      const connection: object = http2Stream ? ((req as Http2ServerRequest).stream.session ?? socket) : socket;
      let answer: Response;
      try {
        const request = toRequest(req, origin, opts.maxRequestBodySize);
        answer = await opts.handler(request, {
          address: socket.remoteAddress,
          certificate: certificateOf(connection, socket),
          connection,
        });
      } catch (e) {
        answer = opts.error(e);
      }
      await writeResponse(res, answer, http2Stream, req.method === "HEAD");
      // An answer given before the body was read (413, 401): the rest of the body is read and
      // dropped, so the client, still sending, reads the answer instead of a reset; a body past
      // the drain cap ends the connection.
      if (!req.complete) discardRest(req);
    } catch {
      if (!res.destroyed) (res as ServerResponse).destroy();
    } finally {
      pending--;
    }
  };
  server.on("request", (req, res) => void onRequest(req, res));
  server.on("secureConnection", (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  // A refused handshake (no certificate, a foreign CA, no common ALPN protocol) is the
  // client's failure: nothing to log or answer.
  server.on("tlsClientError", () => undefined);
  // A request the HTTP/1.1 parser refused: answered in the service's own form, then closed.
  server.on("clientError", (e: Error & { code?: string }, socket: Socket) => {
    const kind = malformedKind(e.code);
    if (!opts.malformed || !socket.writable || e.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    void rawAnswer(opts.malformed(kind, { address: socket.remoteAddress }))
      .then((bytes) => socket.end(bytes))
      .catch(() => socket.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : opts.port;
  const host = opts.hostname === "0.0.0.0" || opts.hostname === "::" ? "127.0.0.1" : opts.hostname.includes(":") ? `[${opts.hostname}]` : opts.hostname;
  origin = `https://${host}:${port}`;

  return {
    port,
    get pendingRequests() {
      return pending;
    },
    setTls(tls) {
      server.setSecureContext(secureOptions(tls));
    },
    async stop(force) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Kept-alive connections would hold close() open: once nothing is in flight they go.
      while (!force && pending > 0) await new Promise((r) => setTimeout(r, 20));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
